-- The SMTP profile as data: its fields and their kinds, how a request is
-- read (SPEC §2: case-insensitive names, coercion, the input rules), which
-- stored secret a request may reuse, and the shapes kfsmtp answers with.
-- Pure functions over tables; the C core checks the strings.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"
local request_headers = require "kfsmtp.request_headers"
local secrets = require "kfsmtp.secrets"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local DEFAULTS = core.DEFAULTS

local _M = {}

-- RelayAuthenticationType values.
local AUTH_ANONYMOUS, AUTH_PASSWORD, AUTH_OAUTH = 0, 2, 3
_M.AUTH_ANONYMOUS, _M.AUTH_PASSWORD, _M.AUTH_OAUTH = AUTH_ANONYMOUS, AUTH_PASSWORD, AUTH_OAUTH
local SUPPORTED_AUTH = "0 (anonymous), 2 (username and password) and 3 (OAuth 2.0 client credentials)"

---------------------------------------------------------------------------
-- Fields and coercion.

-- Canonical field name --> kind of value, for each shape a request or the
-- store comes in. Version 1 (Keyfactor's GET /SMTP and POST /SMTP/Test):
local V1_KINDS = {
  Host = "string", Id = "whole", Port = "whole", RelayAuthenticationType = "whole",
  RelayUsername = "string", RelayPassword = "secret", SenderAccount = "string",
  SenderAddress = "string", SenderName = "string", TestRecipient = "string",
  UseSSL = "boolean",
  -- RelayAuthenticationType 3, OAuth 2.0 client credentials.
  ClientId = "string", ClientSecret = "secret", TokenEndpoint = "string",
  Scope = "string", Audience = "string",
}
-- Version 2 (SMTPSMTPRequest, SMTPSMTPTestRequest): the four credentials
-- are secret objects, RequestHeaders is new; no Id, no SenderAddress.
local V2_KINDS = {
  Host = "string", Port = "whole", RelayAuthenticationType = "whole",
  RelayUsername = "secret_object", RelayPassword = "secret_object", SenderAccount = "string",
  SenderName = "string", TestRecipient = "string", UseSSL = "boolean",
  ClientId = "secret_object", ClientSecret = "secret_object", TokenEndpoint = "string",
  Scope = "string", Audience = "string", RequestHeaders = "headers",
}
-- The store holds version 2's forms (a secret is a value or a reference),
-- and may hold the two secrets sealed (kfsmtp.sealing).
local STORED_KINDS = {}
for name, kind in pairs(V2_KINDS) do STORED_KINDS[name] = kind end
STORED_KINDS.Id = "whole"
STORED_KINDS.RelayPassword, STORED_KINDS.ClientSecret = "stored_secret", "stored_secret"
local KINDS = { v1 = V1_KINDS, v2 = V2_KINDS, stored = STORED_KINDS }

-- Version 2's models say where null is no value: these fields are plain
-- int32 and bool, and a test request requires these others.
local V2_NOT_NULL = { Port = true, RelayAuthenticationType = true, UseSSL = true }
local V2_TEST_REQUIRED = { "Host", "Port", "RelayAuthenticationType", "SenderAccount", "SenderName", "TestRecipient" }
local V2_TEST_NOT_NULL = {}
for _, name in ipairs(V2_TEST_REQUIRED) do V2_TEST_NOT_NULL[name] = true end

local CANONICAL = {}
for name in pairs(V1_KINDS) do CANONICAL[name:lower()] = name end
CANONICAL.requestheaders = "RequestHeaders"

-- The credentials version 2 shows as secret objects.
local CREDENTIAL_FIELDS = { "RelayUsername", "RelayPassword", "ClientId", "ClientSecret" }
_M.CREDENTIAL_FIELDS = CREDENTIAL_FIELDS

local function describe(v)
  if v == cjson.null then return "null" end
  return type(v)
end

-- The text a message shows for a value that is not what was asked.
local function given(v)
  return type(v) == "string" and "the text given" or ("a " .. describe(v))
end

-- Version 1 takes a secret as a string or as {"SecretValue": "..."}:
-- the string inside | nil (absent) | nil, err.
local function unwrap_secret(name, v)
  if type(v) ~= "table" then return v end
  local inner
  for k, x in pairs(v) do
    if type(k) == "string" and k:lower() == "secretvalue" then inner = x end
  end
  if type(inner) ~= "string" and inner ~= nil and inner ~= cjson.null then
    return nil, errors.field(name, ("%s.SecretValue must be a string."):format(name))
  end
  if inner == cjson.null then return nil end
  return inner
end

local COERCE = {
  string = function(name, v)
    if type(v) ~= "string" then
      return nil, errors.field(name, ("%s must be a string, not a %s."):format(name, describe(v)))
    end
    local why = core.check_text(v)
    if why then return nil, errors.field(name, ("%s %s."):format(name, why)) end
    return v
  end,
  whole = function(name, v)
    local n = json.whole(v)
    if n == nil then
      return nil, errors.field(name, ("%s must be a whole number, not %s."):format(name, given(v)))
    end
    return n
  end,
  boolean = function(name, v)
    if type(v) == "boolean" then return v end
    if type(v) == "string" then
      local l = v:lower()
      if l == "true" then return true elseif l == "false" then return false end
    end
    return nil, errors.field(name, ("%s must be true or false, not %s."):format(name, given(v)))
  end,
  headers = function(_, v) return request_headers.read(v) end,
}
COERCE.secret = function(name, v)
  local inner, err = unwrap_secret(name, v)
  if inner == nil then return nil, err end
  return COERCE.string(name, inner)
end
-- A value (string) or a reference { Provider, Parameters }.
COERCE.secret_object = function(name, v)
  local secret, err = secrets.read(name, v)
  if type(secret) == "string" then return COERCE.string(name, secret) end
  return secret, err
end
-- The same, or a sealed value { Sealed, KeyId, Cipher }: the store's alone.
COERCE.stored_secret = function(name, v)
  local secret, err = secrets.read(name, v, true)
  if type(secret) == "string" then return COERCE.string(name, secret) end
  return secret, err
end

local NULL_KIND_WORDS = { whole = "a whole number", boolean = "true or false", string = "a string" }

-- normalize(req [, shape [, for_test]]) --> fields keyed by canonical name
-- | nil, err. shape is "v1" (the default), "v2" or "stored". Keys match
-- case-insensitively; unknown keys are ignored; JSON null is the same as
-- absent, except where version 2's models have no null.
function _M.normalize(req, shape, for_test)
  local kinds = KINDS[shape or "v1"]
  local out, seen = {}, {}
  for k, v in pairs(req) do
    local name = type(k) == "string" and CANONICAL[k:lower()]
    local kind = name and kinds[name]
    if kind then
      if seen[name] then
        return nil, errors.field(name, ("%s is given twice (as %q and %q): send it once."):format(
          name, seen[name], k), "ambiguous_field")
      end
      seen[name] = k
      if v ~= cjson.null then
        local value, err = COERCE[kind](name, v)
        if err then return nil, err end
        out[name] = value
      elseif shape == "v2" and (V2_NOT_NULL[name] or for_test and V2_TEST_NOT_NULL[name]) then
        return nil, errors.field(name, ("%s must be %s, not null: version 2 has no null here (leave it out instead)."):format(
          name, NULL_KIND_WORDS[kind]))
      end
    end
  end
  return out
end

---------------------------------------------------------------------------
-- Input rules (SPEC §2).

local function require_mailbox(t, name, label)
  local v = t[name]
  if v == nil or v == "" then
    return errors.field(name, ("%s is required: give %s such as jsmith@example.com."):format(name, label))
  end
  local why = core.check_mailbox(v)
  if why then return errors.field(name, ("%s %s."):format(name, why)) end
end

local function check_host_and_port(t, for_test)
  if t.Host == nil or t.Host == "" then
    return errors.field("Host", "Host is required: give the SMTP server's host name or IP address, e.g. mail.example.com.")
  end
  local why = core.check_host(t.Host)
  if why then return errors.field("Host", "Host " .. why .. ".") end
  if t.Port == nil then
    if for_test then
      return errors.field("Port", "Port is required: give the SMTP port, e.g. 25, 587 or 465.")
    end
    t.Port = DEFAULTS.port
  end
  if t.Port < 1 or t.Port > 65535 then
    return errors.field("Port", "Port must be from 1 to 65535 (25, 587 and 465 are usual).")
  end
end

local function check_authentication(t)
  t.RelayAuthenticationType = t.RelayAuthenticationType or AUTH_ANONYMOUS
  local auth = t.RelayAuthenticationType
  if auth ~= AUTH_ANONYMOUS and auth ~= AUTH_PASSWORD and auth ~= AUTH_OAUTH then
    return errors.field("RelayAuthenticationType",
      ("RelayAuthenticationType %s is not supported: the supported values are %s."):format(tostring(auth), SUPPORTED_AUTH))
  end
  t.RelayUsername = t.RelayUsername or ""
  -- The OAuth fields are checked once stored values have filled the gaps
  -- (check_oauth).
  if auth == AUTH_PASSWORD and t.RelayUsername == "" then
    return errors.field("RelayUsername", "RelayUsername is required when RelayAuthenticationType is 2: give the account (DOMAIN\\user or an address) that logs in to the relay.")
  end
end

local function check_sender(t)
  if (t.SenderAccount == nil or t.SenderAccount == "") and t.SenderAddress and t.SenderAddress ~= "" then
    local err = require_mailbox(t, "SenderAddress", "the sender's address")
    if err then return err end
    t.SenderAccount = t.SenderAddress
  end
  local err = require_mailbox(t, "SenderAccount", "the sender's address")
  if err then return err end
  t.SenderAddress = nil
  t.SenderName = t.SenderName or ""
  local why = core.check_display_name(t.SenderName)
  if why then return errors.field("SenderName", "SenderName " .. why .. ".") end
end

-- check(t, for_test) --> err | nil, and fills defaults into t.
function _M.check(t, for_test)
  if t.Id ~= nil and t.Id ~= 1 then
    return errors.new("unknown_id", { field = "Id", stage = "validate",
      Message = ("There is no SMTP profile with Id %s: only profile 1 exists (omit Id or send 1)."):format(tostring(t.Id)) })
  end
  t.Id = 1
  local err = check_host_and_port(t, for_test) or check_authentication(t) or check_sender(t)
  if err then return err end
  if t.UseSSL == nil then t.UseSSL = false end
  if for_test then return require_mailbox(t, "TestRecipient", "one recipient address") end
end

-- A URL's scheme (lower case), authority and host | nil.
local function url_parts(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  local authority = rest:match("^([^/?#]*)")
  return scheme:lower(), authority, authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
end

-- Where a credential goes: the OAuth client's to the token endpoint, the
-- others to the SMTP Host. A host name | false (not known yet).
function _M.destination(t, name)
  if name == "ClientId" or name == "ClientSecret" then
    return t.TokenEndpoint and select(3, url_parts(t.TokenEndpoint)) or false
  end
  return t.Host or false
end

-- Version 2's references: each must name a provider the operator
-- configured, with a parameter it allows (kfsmtp.secrets). err | nil.
local function check_references(t, providers)
  for _, name in ipairs(CREDENTIAL_FIELDS) do
    if secrets.is_reference(t[name]) then
      local ref, err = secrets.check_reference(name, t[name], providers, _M.destination(t, name))
      if not ref then return err end
      t[name] = ref
    end
  end
end

-- Keyfactor's SMTPSMTPTestRequest requires these keys (null is refused by
-- normalize).
local function check_v2_test_keys(t)
  for _, name in ipairs(V2_TEST_REQUIRED) do
    if t[name] == nil then
      return errors.field(name, ("%s is required in a version 2 test request (SMTPSMTPTestRequest): send it%s."):format(
        name, name == "SenderName" and ", \"\" for none" or ""))
    end
  end
end

-- read(req, for_test [, api_version [, providers]]) --> the request's
-- fields, checked and with their defaults | nil, err.
function _M.read(req, for_test, api_version, providers)
  local v2 = api_version == 2
  local t, err = _M.normalize(req, v2 and "v2" or "v1", for_test)
  if not t then return nil, err end
  if v2 then
    err = check_references(t, providers) or (for_test and check_v2_test_keys(t))
    if err then return nil, err end
  end
  err = _M.check(t, for_test)
  if err then return nil, err end
  return t
end

-- TokenEndpoint: https, or http to a loopback host (a local test server).
local function endpoint_problem(url)
  local scheme, authority, host = url_parts(url)
  if not scheme then return "must be the token endpoint's https:// URL" end
  if authority:find("@", 1, true) then return "must not carry a user or password" end
  if not host or host == "" then return "has no host" end
  if url:find("%s") then return "contains whitespace" end
  if scheme == "https" then return nil end
  if scheme == "http" and (host:lower() == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") or host == "::1") then
    return nil
  end
  return "must use https (plain http is accepted only for a loopback host such as 127.0.0.1)"
end

local OAUTH_FIELDS = { "ClientId", "TokenEndpoint", "Scope", "Audience" }

---------------------------------------------------------------------------
-- Stored secrets: used only where they were entered (SPEC §2). A caller
-- who may change the profile but is never shown its secrets must not be
-- able to send them anywhere else: to another host or port, over weaker
-- TLS, or (OAuth) to another endpoint, client, scope or audience.

local same = secrets.same

-- The first thing in t that differs from where the stored secret was
-- entered: a field name, or nil. tls_mode is the test's option, if any.
local function moved_from(t, stored, fields, tls_mode)
  for _, name in ipairs(fields) do
    if not same(t[name], stored[name]) then return name end
  end
  if stored.UseSSL then
    if tls_mode == "none" then return "tls_mode" end
    if not t.UseSSL then return "UseSSL" end
  end
end

local function enter_again(secret, what, moved, fields)
  local where = table.concat(fields, ", ") .. " and TLS"
  return errors.field(secret, ("%s must be entered again: %s differs from the stored profile, and the stored %s is used only with the %s it was entered for."):format(
    secret, moved == "tls_mode" and "tls_mode \"none\"" or moved, what, where))
end

local PASSWORD_PLACE = { "Host", "Port", "RelayUsername" }
local OAUTH_PLACE = { "ClientId", "TokenEndpoint", "Scope", "Audience", "Host", "Port" }

-- Fills absent OAuth fields from the stored record, then the secret where
-- the stored one may be used, and checks them: err | nil.
function _M.resolve_oauth(t, stored, tls_mode)
  for _, name in ipairs(OAUTH_FIELDS) do
    if t[name] == nil then t[name] = stored[name] end
  end
  for _, name in ipairs { "ClientId", "TokenEndpoint", "Scope" } do
    if t[name] == nil or t[name] == "" then
      return errors.field(name, ("%s is required when RelayAuthenticationType is 3 (OAuth 2.0 client credentials)."):format(name))
    end
  end
  local why = endpoint_problem(t.TokenEndpoint)
  if why then return errors.field("TokenEndpoint", "TokenEndpoint " .. why .. ".") end
  if t.ClientSecret and t.ClientSecret ~= "" then return nil end
  if not stored.ClientSecret or stored.ClientSecret == "" then
    return errors.field("ClientSecret", "ClientSecret is required when RelayAuthenticationType is 3 (OAuth 2.0 client credentials).")
  end
  local moved = moved_from(t, stored, OAUTH_PLACE, tls_mode)
  if moved then return enter_again("ClientSecret", "client secret", moved, OAUTH_PLACE) end
  t.ClientSecret = stored.ClientSecret
end

-- Mechanisms that carry the password itself.
local CLEAR_MECHANISMS = { PLAIN = true, LOGIN = true }

-- The password of a request of type 2: its own, or the stored one where
-- that may be used. tls_mode and mechanism are the test's options (nil for
-- an update). password | nil, err.
function _M.stored_password(t, stored, tls_mode, mechanism)
  if t.RelayPassword and t.RelayPassword ~= "" then return t.RelayPassword end
  if not stored.RelayPassword or stored.RelayPassword == "" then
    return nil, errors.field("RelayPassword", "RelayPassword is required when RelayAuthenticationType is 2.")
  end
  local moved = moved_from(t, stored, PASSWORD_PLACE, tls_mode)
  if moved then return nil, enter_again("RelayPassword", "password", moved, PASSWORD_PLACE) end
  -- Without TLS, forcing a mechanism that carries the password would send
  -- it in clear where libcurl might have chosen a challenge-response one.
  local plain = tls_mode == "none" or (not tls_mode and not t.UseSSL)
  if plain and CLEAR_MECHANISMS[mechanism] then
    return nil, errors.field("RelayPassword", ("RelayPassword must be entered again: auth_mechanism %s would send the stored password in clear (no TLS)."):format(mechanism))
  end
  return stored.RelayPassword
end

---------------------------------------------------------------------------
-- Output shapes: every documented field, always, with its type.

-- Version 1 has no references: a credential kept as one shows as "".
local function v1_text(v)
  return type(v) == "string" and v or ""
end

-- Version 2 (SMTPSMTPResponse): the credentials as secret objects, which
-- show RelayUsername's and ClientId's values and never a password's or a
-- client secret's; a reference shows where it points (kfsmtp.secrets).
local function v2_profile(r)
  return {
    Host = r.Host or "",
    Id = 1,
    Port = r.Port or DEFAULTS.port,
    RelayAuthenticationType = r.RelayAuthenticationType or AUTH_ANONYMOUS,
    RelayUsername = secrets.out(r.RelayUsername, true),
    RelayPassword = secrets.out(r.RelayPassword, false),
    SenderAccount = r.SenderAccount or "",
    SenderName = r.SenderName or "",
    UseSSL = r.UseSSL or false,
    ClientId = secrets.out(r.ClientId, true),
    ClientSecret = secrets.out(r.ClientSecret, false),
    TokenEndpoint = r.TokenEndpoint or "",
    Scope = r.Scope or "",
    Audience = r.Audience or "",
    RequestHeaders = request_headers.out(r.RequestHeaders),
  }
end

function _M.profile_out(r, api_version)
  if api_version == 2 then return v2_profile(r) end
  return {
    Host = r.Host or "",
    Id = 1,
    Port = r.Port or DEFAULTS.port,
    RelayAuthenticationType = r.RelayAuthenticationType or AUTH_ANONYMOUS,
    RelayUsername = v1_text(r.RelayUsername),
    SenderAccount = r.SenderAccount or "",
    SenderAddress = r.SenderAccount or "",
    SenderName = r.SenderName or "",
    UseSSL = r.UseSSL or false,
  }
end

-- The settings tested. Version 2's HTTP answer has no body; its Lua result
-- is the test request's fields (SMTPSMTPTestRequest) in version 2's forms.
function _M.test_out(t, api_version)
  if api_version == 2 then
    local p = v2_profile(t)
    p.Id, p.TestRecipient = nil, t.TestRecipient
    return p
  end
  return {
    Host = t.Host,
    Id = 1,
    Port = t.Port,
    RelayAuthenticationType = t.RelayAuthenticationType,
    RelayUsername = v1_text(t.RelayUsername),
    SenderAccount = t.SenderAccount,
    SenderName = t.SenderName,
    TestRecipient = t.TestRecipient,
    UseSSL = t.UseSSL,
  }
end

-- The stored form: a record as the store file's text, and back.
function _M.stored_text(record)
  return json.encode(record, true) .. "\n"
end

-- from_stored_text(text) --> record | nil, why (for a person: the file is
-- not a JSON object, or holds a bad value). Never raises.
function _M.from_stored_text(text)
  local doc, why = cjson.decode(text)
  -- lua-cjson gives a table for an array too: [1,2,3] is no profile.
  if type(doc) ~= "table" or not text:match("^%s*{") then
    return nil, ("is not a JSON object (%s)"):format(why or
      ("found " .. (type(doc) == "table" and "an array" or doc == cjson.null and "null" or "a " .. type(doc))))
  end
  local t, err = _M.normalize(doc, "stored")
  if not t then return nil, ("holds a bad value (%s)"):format(err.Message) end
  return t
end

-- The stored record: the profile plus the secret of the scheme in use (a
-- value, or a reference to a provider).
function _M.record(t)
  local record = {
    Host = t.Host, Id = 1, Port = t.Port,
    RelayAuthenticationType = t.RelayAuthenticationType,
    RelayUsername = t.RelayUsername,
    RelayPassword = t.RelayAuthenticationType == AUTH_PASSWORD and t.RelayPassword or nil,
    SenderAccount = t.SenderAccount,
    SenderName = t.SenderName,
    UseSSL = t.UseSSL,
    RequestHeaders = t.RequestHeaders and #t.RequestHeaders > 0 and t.RequestHeaders or nil,
  }
  if t.RelayAuthenticationType == AUTH_OAUTH then
    for _, name in ipairs(OAUTH_FIELDS) do record[name] = t[name] end
    record.ClientSecret = t.ClientSecret
  end
  return record
end

return _M
