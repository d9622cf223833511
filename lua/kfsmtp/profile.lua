-- The SMTP profile as data: its fields and their kinds, how a request is
-- read (SPEC §2: case-insensitive names, coercion, the input rules), which
-- stored secret a request may reuse, and the shapes kfsmtp answers with.
-- Pure functions over tables; the C core checks the strings.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local floor = math.floor

local DEFAULTS = core.DEFAULTS

local _M = {}

-- RelayAuthenticationType values.
local AUTH_ANONYMOUS, AUTH_PASSWORD, AUTH_OAUTH = 0, 2, 3
_M.AUTH_ANONYMOUS, _M.AUTH_PASSWORD, _M.AUTH_OAUTH = AUTH_ANONYMOUS, AUTH_PASSWORD, AUTH_OAUTH
local SUPPORTED_AUTH = "0 (anonymous), 2 (username and password) and 3 (OAuth 2.0 client credentials)"

---------------------------------------------------------------------------
-- Numbers: Lua 5.4 integers, LuaJIT doubles holding whole values.

local tointeger = math.tointeger or function(x)
  if type(x) == "number" and x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 then return x end
  return nil
end

local function to_whole(v)
  if type(v) == "number" then return tointeger(v) end
  if type(v) == "string" and v:match("^[+-]?%d+$") and #v <= 15 then
    return tointeger(tonumber(v))
  end
  return nil
end

---------------------------------------------------------------------------
-- Fields and coercion.

-- Canonical field name --> kind of value.
local FIELD_KINDS = {
  Host = "string", Id = "whole", Port = "whole", RelayAuthenticationType = "whole",
  RelayUsername = "string", RelayPassword = "secret", SenderAccount = "string",
  SenderAddress = "string", SenderName = "string", TestRecipient = "string",
  UseSSL = "boolean",
  -- RelayAuthenticationType 3, OAuth 2.0 client credentials.
  ClientId = "string", ClientSecret = "secret", TokenEndpoint = "string",
  Scope = "string", Audience = "string",
}
local CANONICAL = {}
for name in pairs(FIELD_KINDS) do CANONICAL[name:lower()] = name end

local function describe(v)
  if v == cjson.null then return "null" end
  return type(v)
end

-- The text a message shows for a value that is not what was asked.
local function given(v)
  return type(v) == "string" and "the text given" or ("a " .. describe(v))
end

-- Version 2 of the API sends secrets as {"SecretValue": "..."}:
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
    local n = to_whole(v)
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
}
COERCE.secret = function(name, v)
  local inner, err = unwrap_secret(name, v)
  if inner == nil then return nil, err end
  return COERCE.string(name, inner)
end

-- normalize(req) --> fields keyed by canonical name | nil, err
-- Keys match case-insensitively; unknown keys are ignored; JSON null is
-- the same as absent.
function _M.normalize(req)
  local out, seen = {}, {}
  for k, v in pairs(req) do
    local name = type(k) == "string" and CANONICAL[k:lower()]
    if name then
      if seen[name] then
        return nil, errors.field(name, ("%s is given twice (as %q and %q): send it once."):format(
          name, seen[name], k), "ambiguous_field")
      end
      seen[name] = k
      if v ~= cjson.null then
        local value, err = COERCE[FIELD_KINDS[name]](name, v)
        if err then return nil, err end
        out[name] = value
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

-- read(req, for_test) --> the request's fields, checked and with their
-- defaults | nil, err.
function _M.read(req, for_test)
  local t, err = _M.normalize(req)
  if not t then return nil, err end
  err = _M.check(t, for_test)
  if err then return nil, err end
  return t
end

-- TokenEndpoint: https, or http to a loopback host (a local test server).
local function endpoint_problem(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return "must be the token endpoint's https:// URL" end
  scheme = scheme:lower()
  local authority = rest:match("^([^/?#]*)")
  if authority:find("@", 1, true) then return "must not carry a user or password" end
  local host = authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
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

local function same(a, b)
  return (a or "") == (b or "")
end

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

-- Version 2 of the API (x-keyfactor-api-version: 2) adds the OAuth fields;
-- ClientSecret, like RelayPassword, is never among them.
function _M.profile_out(r, api_version)
  local p = {
    Host = r.Host or "",
    Id = 1,
    Port = r.Port or DEFAULTS.port,
    RelayAuthenticationType = r.RelayAuthenticationType or AUTH_ANONYMOUS,
    RelayUsername = r.RelayUsername or "",
    SenderAccount = r.SenderAccount or "",
    SenderAddress = r.SenderAccount or "",
    SenderName = r.SenderName or "",
    UseSSL = r.UseSSL or false,
  }
  if api_version == 2 then
    for _, name in ipairs(OAUTH_FIELDS) do p[name] = r[name] or "" end
  end
  return p
end

function _M.test_out(t)
  return {
    Host = t.Host,
    Id = 1,
    Port = t.Port,
    RelayAuthenticationType = t.RelayAuthenticationType,
    RelayUsername = t.RelayUsername,
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
  local t, err = _M.normalize(doc)
  if not t then return nil, ("holds a bad value (%s)"):format(err.Message) end
  return t
end

-- The stored record: the profile plus the secret of the scheme in use.
function _M.record(t)
  local record = {
    Host = t.Host, Id = 1, Port = t.Port,
    RelayAuthenticationType = t.RelayAuthenticationType,
    RelayUsername = t.RelayUsername,
    RelayPassword = t.RelayAuthenticationType == AUTH_PASSWORD and t.RelayPassword or nil,
    SenderAccount = t.SenderAccount,
    SenderName = t.SenderName,
    UseSSL = t.UseSSL,
  }
  if t.RelayAuthenticationType == AUTH_OAUTH then
    for _, name in ipairs(OAUTH_FIELDS) do record[name] = t[name] end
    record.ClientSecret = t.ClientSecret
  end
  return record
end

return _M
