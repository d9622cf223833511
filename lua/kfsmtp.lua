-- kfsmtp: the SMTP profile of Keyfactor Command's API (GET /SMTP,
-- PUT /SMTP, POST /SMTP/Test) as a Lua module. This file composes the
-- public API; kfsmtp.core (C) validates strings, composes the message,
-- delivers it through libcurl and does the store's file work.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local json = require "kfsmtp.json"
local errors = require "kfsmtp.errors"

local _M = { _VERSION = "kfsmtp " .. core.version }

local type, pairs, tostring, error, setmetatable = type, pairs, tostring, error, setmetatable
local floor = math.floor

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
-- Input rules (SPEC §2).

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

local AUTH_ANONYMOUS, AUTH_PASSWORD, AUTH_OAUTH = 0, 2, 3
local SUPPORTED_AUTH = "0 (anonymous), 2 (username and password) and 3 (OAuth 2.0 client credentials)"

local function describe(v)
  if v == cjson.null then return "null" end
  return type(v)
end

local function coerce(name, v)
  local kind = FIELD_KINDS[name]
  if kind == "secret" then
    -- Version 2 of the API sends secrets as {"SecretValue": "..."}.
    if type(v) == "table" then
      local inner
      for k, x in pairs(v) do
        if type(k) == "string" and k:lower() == "secretvalue" then inner = x end
      end
      if type(inner) ~= "string" and inner ~= nil and inner ~= cjson.null then
        return nil, errors.field(name, ("%s.SecretValue must be a string."):format(name))
      end
      if inner == nil or inner == cjson.null then return nil end
      v = inner
    end
    kind = "string"
  end
  if kind == "string" then
    if type(v) ~= "string" then
      return nil, errors.field(name, ("%s must be a string, not a %s."):format(name, describe(v)))
    end
    local why = core.check_text(v)
    if why then return nil, errors.field(name, ("%s %s."):format(name, why)) end
    return v
  elseif kind == "whole" then
    local n = to_whole(v)
    if n == nil then
      return nil, errors.field(name, ("%s must be a whole number, not %s."):format(name,
        type(v) == "string" and "the text given" or ("a " .. describe(v))))
    end
    return n
  else
    if type(v) == "boolean" then return v end
    if type(v) == "string" then
      local l = v:lower()
      if l == "true" then return true elseif l == "false" then return false end
    end
    return nil, errors.field(name, ("%s must be true or false, not %s."):format(name,
      type(v) == "string" and "the text given" or ("a " .. describe(v))))
  end
end

-- normalize(req) --> fields keyed by canonical name | nil, err
-- Keys match case-insensitively; unknown keys are ignored; JSON null is
-- the same as absent.
local function normalize(req)
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
        local value, err = coerce(name, v)
        if err then return nil, err end
        out[name] = value
      end
    end
  end
  return out
end

local function require_mailbox(t, name, label)
  local v = t[name]
  if v == nil or v == "" then
    return errors.field(name, ("%s is required: give %s such as jsmith@example.com."):format(name, label))
  end
  local why = core.check_mailbox(v)
  if why then return errors.field(name, ("%s %s."):format(name, why)) end
end

-- check_settings(t, for_test) --> err | nil, and fills defaults into t.
local function check_settings(t, for_test)
  if t.Id ~= nil and t.Id ~= 1 then
    return errors.new("unknown_id", { field = "Id", stage = "validate",
      Message = ("There is no SMTP profile with Id %s: only profile 1 exists (omit Id or send 1)."):format(tostring(t.Id)) })
  end
  t.Id = 1
  if t.Host == nil or t.Host == "" then
    return errors.field("Host", "Host is required: give the SMTP server's host name or IP address, e.g. mail.example.com.")
  end
  local why = core.check_host(t.Host)
  if why then return errors.field("Host", "Host " .. why .. ".") end
  if t.Port == nil then
    if for_test then
      return errors.field("Port", "Port is required: give the SMTP port, e.g. 25, 587 or 465.")
    end
    t.Port = 25
  end
  if t.Port < 1 or t.Port > 65535 then
    return errors.field("Port", "Port must be from 1 to 65535 (25, 587 and 465 are usual).")
  end
  t.RelayAuthenticationType = t.RelayAuthenticationType or AUTH_ANONYMOUS
  local auth = t.RelayAuthenticationType
  if auth ~= AUTH_ANONYMOUS and auth ~= AUTH_PASSWORD and auth ~= AUTH_OAUTH then
    return errors.field("RelayAuthenticationType",
      ("RelayAuthenticationType %s is not supported: the supported values are %s."):format(tostring(auth), SUPPORTED_AUTH))
  end
  t.RelayUsername = t.RelayUsername or ""
  if auth == AUTH_OAUTH then
    -- The OAuth fields are checked once stored values have filled the gaps.
  elseif auth == AUTH_PASSWORD and t.RelayUsername == "" then
    return errors.field("RelayUsername", "RelayUsername is required when RelayAuthenticationType is 2: give the account (DOMAIN\\user or an address) that logs in to the relay.")
  end
  if (t.SenderAccount == nil or t.SenderAccount == "") and t.SenderAddress and t.SenderAddress ~= "" then
    local err = require_mailbox(t, "SenderAddress", "the sender's address")
    if err then return err end
    t.SenderAccount = t.SenderAddress
  end
  local err = require_mailbox(t, "SenderAccount", "the sender's address")
  if err then return err end
  t.SenderAddress = nil
  t.SenderName = t.SenderName or ""
  why = core.check_display_name(t.SenderName)
  if why then return errors.field("SenderName", "SenderName " .. why .. ".") end
  if t.UseSSL == nil then t.UseSSL = false end
  if for_test then
    err = require_mailbox(t, "TestRecipient", "one recipient address")
    if err then return err end
  end
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

local function check_oauth(t)
  for _, name in ipairs { "ClientId", "TokenEndpoint", "Scope" } do
    if t[name] == nil or t[name] == "" then
      return errors.field(name, ("%s is required when RelayAuthenticationType is 3 (OAuth 2.0 client credentials)."):format(name))
    end
  end
  local why = endpoint_problem(t.TokenEndpoint)
  if why then return errors.field("TokenEndpoint", "TokenEndpoint " .. why .. ".") end
end

local function missing_client_secret()
  return errors.field("ClientSecret", "ClientSecret is required when RelayAuthenticationType is 3 (the stored one is reused only while ClientId and TokenEndpoint stay as stored).")
end

-- Fills absent OAuth fields from the stored record: the non-secret ones
-- always, the secret only for the same client at the same endpoint.
local function oauth_from_stored(t, stored)
  for _, name in ipairs { "ClientId", "TokenEndpoint", "Scope", "Audience" } do
    if t[name] == nil then t[name] = stored[name] end
  end
  if (t.ClientSecret == nil or t.ClientSecret == "") and stored.ClientSecret and stored.ClientSecret ~= ""
      and stored.ClientId == t.ClientId and stored.TokenEndpoint == t.TokenEndpoint then
    t.ClientSecret = stored.ClientSecret
  end
end

local function missing_password()
  return errors.field("RelayPassword", "RelayPassword is required when RelayAuthenticationType is 2 (the stored password is reused only while Host and RelayUsername stay as stored).")
end

---------------------------------------------------------------------------
-- Output shapes: every documented field, always, with its type.

-- Version 2 of the API (x-keyfactor-api-version: 2) adds the OAuth fields;
-- ClientSecret, like RelayPassword, is never among them.
local OAUTH_OUT = { "ClientId", "TokenEndpoint", "Scope", "Audience" }

local function profile_out(r, api_version)
  local p = {
    Host = r.Host or "",
    Id = 1,
    Port = r.Port or 25,
    RelayAuthenticationType = r.RelayAuthenticationType or AUTH_ANONYMOUS,
    RelayUsername = r.RelayUsername or "",
    SenderAccount = r.SenderAccount or "",
    SenderAddress = r.SenderAccount or "",
    SenderName = r.SenderName or "",
    UseSSL = r.UseSSL or false,
  }
  if api_version == 2 then
    for _, name in ipairs(OAUTH_OUT) do p[name] = r[name] or "" end
  end
  return p
end

local function test_out(t)
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

-- The stored record: the profile plus its password.
local function record_of(t)
  local oauth = t.RelayAuthenticationType == AUTH_OAUTH
  return {
    ClientId = oauth and t.ClientId or nil, ClientSecret = oauth and t.ClientSecret or nil,
    TokenEndpoint = oauth and t.TokenEndpoint or nil, Scope = oauth and t.Scope or nil,
    Audience = oauth and t.Audience or nil,
    Host = t.Host, Id = 1, Port = t.Port,
    RelayAuthenticationType = t.RelayAuthenticationType,
    RelayUsername = t.RelayUsername,
    RelayPassword = t.RelayPassword,
    SenderAccount = t.SenderAccount,
    SenderName = t.SenderName,
    UseSSL = t.UseSSL,
  }
end

---------------------------------------------------------------------------
-- Options and module defaults.

local OPTION_KINDS = {
  store = "string", connect_timeout_ms = "number", timeout_ms = "number",
  tls_verify = "boolean", ca_file = "string", helo = "string",
  pinned_pubkey = "string", tls_mode = "string", transcript = "boolean",
  quit_after = "string", api_version = "number",
}
local TLS_MODES = { none = true, starttls = true, implicit = true }
local QUIT_STAGES = { connect = true, tls = true, auth = true, rcpt = true }
_M.QUIT_STAGES = QUIT_STAGES

local defaults = {
  connect_timeout_ms = 10000,
  timeout_ms = 30000,
  tls_verify = true,
}

-- Programmer errors raise, naming the option (level 3: the caller's call).
local function check_options(opts, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("kfsmtp.%s: opts must be a table, not a %s"):format(fname, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    local kind = OPTION_KINDS[k]
    if not kind then
      error(("kfsmtp.%s: unknown option %s"):format(fname, tostring(k)), 3)
    end
    if type(v) ~= kind then
      error(("kfsmtp.%s: option %s must be a %s, not a %s"):format(fname, k, kind, type(v)), 3)
    end
  end
  if opts.tls_mode and not TLS_MODES[opts.tls_mode] then
    error(("kfsmtp.%s: tls_mode must be \"implicit\", \"starttls\" or \"none\", not %q"):format(fname, opts.tls_mode), 3)
  end
  if opts.quit_after and not QUIT_STAGES[opts.quit_after] then
    error(("kfsmtp.%s: quit_after must be \"connect\", \"tls\", \"auth\" or \"rcpt\", not %q"):format(fname, opts.quit_after), 3)
  end
  if opts.api_version and opts.api_version ~= 1 and opts.api_version ~= 2 then
    error(("kfsmtp.%s: api_version must be 1 or 2, not %s"):format(fname, tostring(opts.api_version)), 3)
  end
  for _, k in ipairs { "connect_timeout_ms", "timeout_ms" } do
    if opts[k] and not (opts[k] > 0 and opts[k] <= 86400000) then
      error(("kfsmtp.%s: %s must be a positive number of milliseconds"):format(fname, k), 3)
    end
  end
  if opts.helo then
    local why = core.check_host(opts.helo)
    if why or opts.helo:find(":", 1, true) then
      error(("kfsmtp.%s: helo must be a host name or IPv4 address (%s)"):format(fname, why or "IPv6 is not supported here"), 3)
    end
  end
  return opts
end

local function option(opts, key)
  local v = opts[key]
  if v == nil then v = defaults[key] end
  return v
end

local default_helo
local function helo_name(opts)
  local h = option(opts, "helo")
  if h then return h end
  if not default_helo then
    local name = core.hostname()
    if not name or core.check_host(name) or name:find(":", 1, true) then name = "localhost" end
    default_helo = name
  end
  return default_helo
end

local function default_store_path()
  return defaults.store or os.getenv("KFSMTP_STORE") or "kfsmtp-store.json"
end
_M.default_store_path = default_store_path

---------------------------------------------------------------------------
-- The store.

local Store = {}
Store.__index = Store

local function store_error(self, kind, message)
  return errors.new(kind, { stage = "store", path = self.path, Message = message })
end

-- Decodes and checks a stored record. Never repairs: a bad file is the
-- person's to inspect.
local function decode_record(self, content)
  local doc, why = cjson.decode(content)
  if type(doc) ~= "table" then
    return nil, store_error(self, "store_corrupt", ("The store %s is not a JSON object (%s): fix or remove it; kfsmtp will not overwrite it."):format(
      self.path, why or ("found a " .. type(doc))))
  end
  local t, err = normalize(doc)
  if not t then
    return nil, store_error(self, "store_corrupt", ("The store %s holds a bad value (%s): fix or remove it; kfsmtp will not overwrite it."):format(
      self.path, err.Message))
  end
  return t
end

-- The store reader on text alone, for fuzz/fuzz_store.c:
-- record | nil, err; never raises.
function _M._decode_store(content)
  return decode_record({ path = "(fuzz input)" }, content)
end

-- Reads the file (no cache): record | nil, err. A missing file is the
-- default empty profile.
function Store:_read()
  local content, sig = core.store_read(self.path)
  self.reads = self.reads + 1
  if content == nil then
    return nil, store_error(self, "store_io", ("%s (%s): check the path and its permissions."):format(sig, self.path))
  end
  local record = {}
  -- An empty file (as `touch` makes it, to set owner and mode ahead of
  -- time) is the empty profile; kfsmtp's own writes never leave one.
  if content and content ~= "" then
    local err
    record, err = decode_record(self, content)
    if not record then return nil, err end
  end
  self.sig, self.record = sig, record
  return record
end

-- How often a reader re-checks the file itself, for edits made without
-- kfsmtp (by hand, by a restore): at most about this many seconds late.
local FOREIGN_EDIT_CHECK_S = 1
-- Reading the clock costs more than the rest of a cached get(): look at
-- it on every 16th call only.
local CLOCK_EVERY = 16

local function open_generation(self)
  local gen, read = core.store_generation(self.path)
  self.gen, self.read_generation = gen or false, gen and read or false
end

-- The cached record while the store is unchanged. Every kfsmtp writer bumps
-- a counter shared through the lock file, so a change by any process is
-- seen at once and an unchanged store costs no system call; the file's
-- signature is still compared about once a second.
function Store:_load()
  if self.gen == nil then open_generation(self) end
  local read = self.read_generation
  local generation = read and read()
  if self.sig and read and generation == self.generation then
    local countdown = self.countdown - 1
    if countdown > 0 then
      self.countdown = countdown
      return self.record
    end
    self.countdown = CLOCK_EVERY
    if os.time() < self.next_stat then return self.record end
  end
  local sig, why = core.store_stat(self.path)
  if not sig then
    return nil, store_error(self, "store_io", ("%s (%s): check the path and its permissions."):format(why, self.path))
  end
  -- The counter was read before the file: a write racing this call bumps
  -- it again, and the next call looks.
  self.generation, self.next_stat, self.countdown = generation, os.time() + FOREIGN_EDIT_CHECK_S, CLOCK_EVERY
  if sig == self.sig then return self.record end
  return self:_read()
end

function Store:get(opts)
  opts = check_options(opts, "get")
  local record, err = self:_load()
  if not record then return nil, err end
  return profile_out(record, option(opts, "api_version"))
end

function Store:update(req, opts)
  if type(req) ~= "table" then
    error(("kfsmtp update: req must be a table, not a %s"):format(type(req)), 2)
  end
  opts = check_options(opts, "update")
  local t, err = normalize(req)
  if not t then return nil, err end
  err = check_settings(t, false)
  if err then return nil, err end
  if t.RelayAuthenticationType ~= AUTH_PASSWORD then
    -- Only the scheme in use keeps a secret.
    t.RelayPassword = nil
  end

  local lock, why = core.store_lock(self.path)
  if not lock then
    return nil, store_error(self, "store_io", ("%s (%s.lock): check the folder's permissions."):format(why, self.path))
  end
  local current
  current, err = self:_read()
  if not current then lock:release(); return nil, err end
  if t.RelayAuthenticationType == AUTH_OAUTH then
    oauth_from_stored(t, current)
    err = check_oauth(t)
    if not err and (t.ClientSecret == nil or t.ClientSecret == "") then err = missing_client_secret() end
    if err then lock:release(); return nil, err end
  end
  if t.RelayAuthenticationType == AUTH_PASSWORD and (t.RelayPassword == nil or t.RelayPassword == "") then
    if current.RelayUsername == t.RelayUsername and current.RelayPassword and current.RelayPassword ~= "" then
      t.RelayPassword = current.RelayPassword
    else
      lock:release()
      return nil, missing_password()
    end
  end
  local record = record_of(t)
  -- Under the lock no live writer owns a temporary file: any left is a
  -- killed writer's.
  core.store_sweep(self.path)
  local ok
  ok, why = core.store_write(self.path, json.encode(record, true) .. "\n")
  if not ok then
    lock:release()
    return nil, store_error(self, "store_io", ("%s (%s): the stored profile was not changed."):format(why, self.path))
  end
  self.sig = core.store_stat(self.path)
  self.record = record
  if self.gen == nil then open_generation(self) end
  if self.gen then self.gen:bump() end
  lock:release()
  return profile_out(record, option(opts, "api_version"))
end

local forget_token, oauth_token

-- Access tokens, per (endpoint, client, secret, scope, audience), until a
-- minute before they expire. Memory only; never stored or returned.
local tokens = {}
local TOKEN_MARGIN_S = 60

local function token_key(o)
  return table.concat({ o.endpoint, o.client_id, o.client_secret, o.scope, o.audience or "" }, "\0")
end

forget_token = function(o)
  tokens[token_key(o)] = nil
end

-- oauth_token(o, opts) --> token, from_cache | nil, nil, err (stage "token")
oauth_token = function(o, opts)
  local key = token_key(o)
  local cached = tokens[key]
  if cached and os.time() < cached.expires then return cached.token, true end
  local r = core.fetch_token {
    endpoint = o.endpoint, client_id = o.client_id, client_secret = o.client_secret,
    scope = o.scope, audience = o.audience,
    ca_file = option(opts, "ca_file"), tls_verify = option(opts, "tls_verify"),
    connect_timeout_ms = option(opts, "connect_timeout_ms"), timeout_ms = option(opts, "timeout_ms"),
  }
  local doc = r.body ~= "" and cjson.decode(r.body) or nil
  if type(doc) ~= "table" then doc = {} end
  local err_text = type(doc.error) == "string" and doc.error or nil
  local description = type(doc.error_description) == "string" and doc.error_description:gsub("[%c]", " ") or nil
  if not r.ok then
    local timed_out = r.curl_code == 28
    return nil, nil, errors.new(timed_out and "token_timeout" or "token", { stage = "token",
      Message = ("The token endpoint %s could not be reached (%s): check TokenEndpoint and the network path to it."):format(
        o.endpoint, r.curl_error), detail = r.curl_error })
  end
  if r.http_status ~= 200 or type(doc.access_token) ~= "string" or doc.access_token == "" then
    local what = err_text and (err_text .. (description and (": " .. description) or "")) or
      ("no access_token in the answer")
    local hint = (err_text == "invalid_client" or r.http_status == 401)
      and " Check ClientId and ClientSecret (an expired client secret looks the same)."
      or (err_text == "invalid_scope") and " Check Scope (for Microsoft 365: https://outlook.office365.com/.default)."
      or ""
    return nil, nil, errors.new("token", { stage = "token", http_status = r.http_status, error = err_text,
      error_description = description,
      Message = ("The token endpoint refused the client credentials (HTTP %d, %s).%s Nothing was sent to the SMTP server."):format(
        r.http_status, what, hint) })
  end
  local lifetime = tonumber(doc.expires_in) or 3600
  tokens[key] = { token = doc.access_token, expires = os.time() + math.max(0, lifetime - TOKEN_MARGIN_S) }
  return doc.access_token, false
end

local function queue_id_of(reply)
  if not reply then return nil end
  return reply:match("[Qq]ueued as ([%w%.%-_]+)") or reply:match("[Ii]nternal[Ii]d=(%d+)")
    or reply:match(" id=([%w%-]+)")
end

function Store:test(req, opts)
  if type(req) ~= "table" then
    error(("kfsmtp test: req must be a table, not a %s"):format(type(req)), 2)
  end
  opts = check_options(opts, "test")
  local t, err = normalize(req)
  if not t then return nil, err end
  err = check_settings(t, true)
  if err then return nil, err end

  local password, oauth
  if t.RelayAuthenticationType == AUTH_OAUTH then
    local stored
    stored, err = self:_load()
    if not stored then return nil, err end
    oauth_from_stored(t, stored)
    err = check_oauth(t)
    if not err and (t.ClientSecret == nil or t.ClientSecret == "") then err = missing_client_secret() end
    if err then return nil, err end
    oauth = { endpoint = t.TokenEndpoint, client_id = t.ClientId, client_secret = t.ClientSecret,
      scope = t.Scope, audience = t.Audience,
      mailbox = t.RelayUsername ~= "" and t.RelayUsername or t.SenderAccount }
  elseif t.RelayAuthenticationType == AUTH_PASSWORD then
    password = t.RelayPassword
    if password == nil or password == "" then
      local stored
      stored, err = self:_load()
      if not stored then return nil, err end
      if stored.Host == t.Host and stored.RelayUsername == t.RelayUsername
          and stored.RelayPassword and stored.RelayPassword ~= "" then
        password = stored.RelayPassword
      else
        return nil, missing_password()
      end
    end
  end

  local tls_mode = option(opts, "tls_mode")
    or (t.UseSSL and (t.Port == 465 and "implicit" or "starttls") or "none")
  local tls_verify = option(opts, "tls_verify")
  local message, message_id = core.compose {
    sender_name = t.SenderName, sender_account = t.SenderAccount,
    recipient = t.TestRecipient, host = t.Host, port = t.Port, tls_mode = tls_mode,
  }
  local connect_timeout_ms = option(opts, "connect_timeout_ms")
  local timeout_ms = option(opts, "timeout_ms")
  local want_transcript = opts.transcript == true
  local token, token_cached
  if oauth then
    token, token_cached, err = oauth_token(oauth, opts)
    if not token then
      err.transcript = want_transcript and json.array() or nil
      return nil, err
    end
  end
  local delivery = {
    host = t.Host, port = t.Port, tls_mode = tls_mode,
    username = oauth and oauth.mailbox or (password and t.RelayUsername) or nil, password = password,
    bearer = token,
    mail_from = "<" .. t.SenderAccount .. ">", rcpt_to = "<" .. t.TestRecipient .. ">",
    message = message, helo = helo_name(opts),
    ca_file = option(opts, "ca_file"), tls_verify = tls_verify,
    pinned_pubkey = option(opts, "pinned_pubkey"),
    connect_timeout_ms = connect_timeout_ms, timeout_ms = timeout_ms,
    transcript = want_transcript,
    quit_after = opts.quit_after,
  }
  local r = core.deliver(delivery)
  if oauth and not r.ok and r.stage == "auth" and r.auth_sent and token_cached then
    -- The relay refused a cached token (revoked, or expired early): fetch
    -- a new one and try once more.
    forget_token(oauth)
    token, token_cached, err = oauth_token(oauth, opts)
    if not token then return nil, err end
    delivery.bearer = token
    r = core.deliver(delivery)
  end
  password, token, delivery = nil, nil, nil

  local transcript = want_transcript and json.array(r.transcript) or nil
  if not r.ok then
    err = errors.from_delivery(r, {
      host = t.Host, port = t.Port, tls_mode = tls_mode,
      sender = t.SenderAccount, recipient = t.TestRecipient, oauth = oauth ~= nil,
      connect_timeout_ms = connect_timeout_ms, timeout_ms = timeout_ms,
    })
    err.transcript = transcript
    return nil, err
  end

  local warnings = json.array()
  if r.auth_sent and tls_mode == "none" then
    warnings[#warnings + 1] = "The credentials were sent without TLS (UseSSL is false): anyone on the network path could read them. Set UseSSL to true if the relay supports it."
  end
  if tls_mode ~= "none" and not tls_verify then
    warnings[#warnings + 1] = "Certificate verification is off (tls_verify = false): the server's identity was not checked."
  end
  local tls = { mode = tls_mode, version = "", verified = false }
  if r.tls then
    tls.version, tls.verified = r.tls.version, r.tls.verified
    local cert = r.tls.cert
    cert.names = json.array(cert.names)
    tls.cert = cert
  end
  -- What the server said it can do, from its (last) EHLO reply.
  local capabilities, mechanisms = json.array(), json.array()
  for i, line in ipairs(r.ehlo or {}) do
    local text = line:match("^%d%d%d[ -](.*)$")
    if text and i > 1 then
      capabilities[#capabilities + 1] = text
      local offered = text:match("^[Aa][Uu][Tt][Hh][ =](.*)$")
      if offered then
        for mech in offered:gmatch("%S+") do mechanisms[#mechanisms + 1] = mech:upper() end
      end
    end
  end
  if opts.quit_after then
    warnings[#warnings + 1] = ("quit_after = %q: the dialog stopped there as asked; no message was sent."):format(opts.quit_after)
  end
  local info = {
    quit_after = opts.quit_after,
    capabilities = capabilities,
    auth_mechanisms_offered = mechanisms,
    timings = r.timings,
    tls = tls,
    auth_mechanism = r.auth_mechanism ~= "" and r.auth_mechanism or "none",
    greeting = r.greeting,
    reply = opts.quit_after and errors.last_line(r.reply) or r.final_reply,
    queue_id = not opts.quit_after and queue_id_of(r.final_reply) or nil,
    message_id = not opts.quit_after and message_id or nil,
    warnings = warnings,
    transcript = transcript,
  }
  return test_out(t), info
end

local stores = setmetatable({}, { __mode = "v" })

-- open(path) --> store; one object per path, so the get() cache is shared.
function _M.open(path)
  if type(path) ~= "string" or path == "" then
    error(("kfsmtp.open: path must be a non-empty string, not %s"):format(
      type(path) == "string" and "an empty one" or ("a " .. type(path))), 2)
  end
  local s = stores[path]
  if not s then
    s = setmetatable({ path = path, reads = 0 }, Store)
    stores[path] = s
  end
  return s
end

---------------------------------------------------------------------------
-- Module functions: the store named by opts.store, configure{store=},
-- KFSMTP_STORE, or ./kfsmtp-store.json, in that order.

function _M.configure(opts)
  if type(opts) ~= "table" then
    error(("kfsmtp.configure: opts must be a table, not a %s"):format(type(opts)), 2)
  end
  check_options(opts, "configure")
  if opts.transcript ~= nil or opts.quit_after ~= nil then
    error("kfsmtp.configure: transcript and quit_after are per-call options of test()", 2)
  end
  for k, v in pairs(opts) do defaults[k] = v end
end

local function store_for(opts)
  return _M.open(opts and opts.store or default_store_path())
end

function _M.get(opts)
  opts = check_options(opts, "get")
  return store_for(opts):get(opts)
end

function _M.update(req, opts)
  opts = check_options(opts, "update")
  return store_for(opts):update(req, opts)
end

function _M.test(req, opts)
  opts = check_options(opts, "test")
  return store_for(opts):test(req, opts)
end

_M.errors = errors
_M.json = json

return _M
