-- The options of get, update and test (the second argument), the module
-- defaults that kfsmtp.configure changes, and where the store is. The
-- defaults themselves come from the C core (core.DEFAULTS), which holds
-- them once for both sides.
local core = require "kfsmtp.core"
local secrets = require "kfsmtp.secrets"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error

local _M = {}

local OPTION_KINDS = {
  store = "string", connect_timeout_ms = "number", timeout_ms = "number",
  tls_verify = "boolean", ca_file = "string", helo = "string",
  pinned_pubkey = "string", tls_mode = "string", transcript = "boolean",
  quit_after = "string", api_version = "number", auth_mechanism = "string",
  secret_providers = "table", key_file = "string",
}

-- A list of names as a set, and as the words an error message offers.
local function names(list)
  local set, quoted = {}, {}
  for i, name in ipairs(list) do
    set[name] = true
    quoted[i] = ("%q"):format(name)
  end
  return set, table.concat(quoted, ", ", 1, #quoted - 1) .. " or " .. quoted[#quoted]
end

local TLS_MODES, TLS_MODE_WORDS = names(core.TLS_MODES)
local QUIT_STAGES, QUIT_STAGE_WORDS = names(core.QUIT_STAGES)
local MECHANISMS, MECHANISM_WORDS = names(core.SASL_MECHANISMS)
_M.MECHANISM_WORDS = MECHANISM_WORDS
-- quit_stage(v) --> the quit_after stage v names (any letter case) | nil;
-- for the CLI and the HTTP API, which report a bad one in their own way.
function _M.quit_stage(v)
  if type(v) ~= "string" then return nil end
  v = v:lower()
  return QUIT_STAGES[v] and v or nil
end
_M.QUIT_STAGE_WORDS = QUIT_STAGE_WORDS

local defaults = {
  connect_timeout_ms = core.DEFAULTS.connect_timeout_ms,
  timeout_ms = core.DEFAULTS.timeout_ms,
  tls_verify = core.DEFAULTS.tls_verify,
}

-- check(opts, fname) --> opts (a table); programmer errors raise, naming
-- the option (level 3: the caller's call).
function _M.check(opts, fname)
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
    error(("kfsmtp.%s: tls_mode must be %s, not %q"):format(fname, TLS_MODE_WORDS, opts.tls_mode), 3)
  end
  if opts.quit_after and not QUIT_STAGES[opts.quit_after] then
    error(("kfsmtp.%s: quit_after must be %s, not %q"):format(fname, QUIT_STAGE_WORDS, opts.quit_after), 3)
  end
  if opts.auth_mechanism and not MECHANISMS[opts.auth_mechanism] then
    error(("kfsmtp.%s: auth_mechanism must be %s, not %q"):format(fname, MECHANISM_WORDS, opts.auth_mechanism), 3)
  end
  if opts.api_version and opts.api_version ~= 1 and opts.api_version ~= 2 then
    error(("kfsmtp.%s: api_version must be 1 or 2, not %s"):format(fname, tostring(opts.api_version)), 3)
  end
  if opts.key_file == "" then
    error(("kfsmtp.%s: key_file must be the path of a key file (kfsmtp keygen FILE makes one)"):format(fname), 3)
  end
  local providers_why = opts.secret_providers and secrets.check_providers(opts.secret_providers)
  if providers_why then error(("kfsmtp.%s: secret_providers: %s"):format(fname, providers_why), 3) end
  for _, k in ipairs { "connect_timeout_ms", "timeout_ms" } do
    local ms = opts[k]
    if ms and not (ms > 0 and ms <= core.DEFAULTS.max_timeout_ms and ms % 1 == 0) then
      error(("kfsmtp.%s: %s must be a whole, positive number of milliseconds (at most a day)"):format(fname, k), 3)
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

-- mechanism(v) --> the SASL mechanism v names (any letter case) | nil.
function _M.mechanism(v)
  if type(v) ~= "string" then return nil end
  v = v:upper()
  return MECHANISMS[v] and v or nil
end

-- configure(opts): module defaults for every later call. Called as a
-- tail call, so that level 2 is the caller of kfsmtp.configure.
function _M.configure(opts)
  if type(opts) ~= "table" then
    error(("kfsmtp.configure: opts must be a table, not a %s"):format(type(opts)), 2)
  end
  _M.check(opts, "configure")
  if opts.transcript ~= nil or opts.quit_after ~= nil then
    error("kfsmtp.configure: transcript and quit_after are per-call options of test()", 2)
  end
  for k, v in pairs(opts) do defaults[k] = v end
end

-- get(opts, key) --> the call's option, else the module default.
function _M.get(opts, key)
  local v = opts[key]
  if v == nil then v = defaults[key] end
  return v
end

local default_helo
function _M.helo(opts)
  local h = _M.get(opts, "helo")
  if h then return h end
  if not default_helo then
    local name = core.hostname()
    if not name or core.check_host(name) or name:find(":", 1, true) then name = "localhost" end
    default_helo = name
  end
  return default_helo
end

-- The TLS mode of a test: the option, else UseSSL's meaning on this port.
function _M.tls_mode(opts, t)
  local mode = _M.get(opts, "tls_mode")
  if mode then return mode end
  if not t.UseSSL then return "none" end
  return t.Port == core.DEFAULTS.implicit_tls_port and "implicit" or "starttls"
end

-- configure{store=}, else KFSMTP_STORE, else ./kfsmtp-store.json.
function _M.store_path()
  return defaults.store or os.getenv("KFSMTP_STORE") or "kfsmtp-store.json"
end

-- The key file that seals stored secrets: the call's option, else
-- configure{key_file=}, else KFSMTP_KEY_FILE; nil when there is none (the
-- secrets are then stored as they were entered).
function _M.key_file(opts)
  local path = _M.get(opts, "key_file")
  if path then return path end
  path = os.getenv("KFSMTP_KEY_FILE")
  if path and path ~= "" then return path end
  return nil
end

return _M
