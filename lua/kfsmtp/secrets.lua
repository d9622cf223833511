-- Version 2's secret objects ({"SecretValue", "Parameters", "Provider"})
-- and the secret providers an operator configures for them. A secret is a
-- value kfsmtp keeps itself, or a reference to a provider: a reference is
-- stored as such (never the value it points to) and read each time the
-- secret is needed. Providers come from the operator's configuration only;
-- a caller can name one, never invent one, and only where it allows. A
-- value kfsmtp keeps may be sealed under a key file ({"Sealed", "KeyId",
-- "Cipher"}, kfsmtp.sealing): that form is the store's alone.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"

local type, pairs, ipairs, tostring, os_getenv = type, pairs, ipairs, tostring, os.getenv

local _M = {}

-- The one parameter each provider type takes: where the secret lives in it.
local PARAMETER = { file = "Path", env = "Name" }
_M.PARAMETER = PARAMETER
-- Provider is an int32 in Keyfactor's model.
local MAX_PROVIDER_ID = 2147483647
-- A password or client secret, with room to spare; a bigger file is not
-- what the operator meant to hand over.
local MAX_SECRET_BYTES = 16384
local ENV_NAME = "^[%a_][%w_]*$"

local function describe(v)
  if v == cjson.null then return "null" end
  return type(v)
end

---------------------------------------------------------------------------
-- The operator's configuration: { [id] = { type = "file", dir = "/run/secrets" },
-- [id] = { type = "env", names = { "SMTP_PASSWORD" } } }.

local function provider_problem(id, p)
  if json.whole(id) ~= id or id < 1 or id > MAX_PROVIDER_ID then
    return ("ids must be whole numbers from 1 to %d, not %s"):format(MAX_PROVIDER_ID, tostring(id))
  end
  if type(p) ~= "table" then return ("provider %s must be a table"):format(tostring(id)) end
  for k in pairs(p) do
    if k ~= "type" and k ~= "dir" and k ~= "names" and k ~= "hosts" then
      return ("provider %s: unknown key %s (a provider has type, dir or names, and hosts)"):format(tostring(id), tostring(k))
    end
  end
  if p.hosts ~= nil then
    if type(p.hosts) ~= "table" or #p.hosts == 0 then
      return ("provider %s: hosts must list the SMTP hosts its secrets may go to"):format(tostring(id))
    end
    for _, h in ipairs(p.hosts) do
      if type(h) ~= "string" or core.check_host(h) then
        return ("provider %s: %s is not a host name"):format(tostring(id), tostring(h))
      end
    end
  end
  if p.type == "file" then
    if type(p.dir) ~= "string" or p.dir:sub(1, 1) ~= "/" or core.check_text(p.dir) then
      return ("provider %s (file): dir must be an absolute folder path"):format(tostring(id))
    end
  elseif p.type == "env" then
    if type(p.names) ~= "table" or #p.names == 0 then
      return ("provider %s (env): names must list the variables secrets may come from"):format(tostring(id))
    end
    for _, name in ipairs(p.names) do
      if type(name) ~= "string" or not name:match(ENV_NAME) then
        return ("provider %s (env): %s is not an environment variable name"):format(tostring(id), tostring(name))
      end
    end
  else
    return ("provider %s: type must be \"file\" or \"env\", not %s"):format(tostring(id), tostring(p.type))
  end
end

-- check_providers(providers) --> nil | why (for the programmer's error).
function _M.check_providers(providers)
  for id, p in pairs(providers) do
    local why = provider_problem(id, p)
    if why then return why end
  end
end

-- "1 (file), 2 (env)", for a caller who named another.
local function provider_list(providers)
  local ids = {}
  for id in pairs(providers or {}) do ids[#ids + 1] = id end
  table.sort(ids)
  for i, id in ipairs(ids) do ids[i] = ("%d (%s)"):format(id, providers[id].type) end
  return #ids == 0 and "this server has none configured" or "this server has " .. table.concat(ids, ", ")
end

-- The providers a page may offer: { { Id, Type, Parameter } }, no folder
-- or variable names.
function _M.summary(providers)
  local list = {}
  for id, p in pairs(providers or {}) do
    list[#list + 1] = { Id = id, Type = p.type, Parameter = PARAMETER[p.type] }
  end
  table.sort(list, function(a, b) return a.Id < b.Id end)
  return json.array(list)
end

---------------------------------------------------------------------------
-- Secret objects.

local OBJECT_KEYS = { secretvalue = "SecretValue", parameters = "Parameters", provider = "Provider" }

local function read_parameters(name, v)
  if type(v) ~= "table" then
    return nil, errors.field(name, ("%s.Parameters must be an object of names and texts, not a %s."):format(name, describe(v)))
  end
  local out, seen = {}, {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "string" then
      return nil, errors.field(name, ("%s.Parameters must map names to texts, not to a %s."):format(name, describe(x)))
    end
    -- A refused name is not quoted: it may hold the very line break refused.
    local why = core.check_text(k) or core.check_text(x)
    if why then return nil, errors.field(name, ("%s.Parameters: a name or value %s."):format(name, why)) end
    if seen[k:lower()] then
      return nil, errors.field(name, ("%s.Parameters.%s is given twice (in another letter case): send it once."):format(name, k),
        "ambiguous_field")
    end
    seen[k:lower()] = true
    out[k] = x
  end
  return out
end

-- The one cipher kfsmtp seals with, as the stored form names it.
_M.SEALED_CIPHER = "AES-256-GCM"
local SEALED_KEYS = { sealed = "Sealed", keyid = "KeyId", cipher = "Cipher" }

local function has_sealed_key(v)
  for k in pairs(v) do
    if type(k) == "string" and k:lower() == "sealed" then return true end
  end
  return false
end

-- A sealed value of the store: { Sealed, KeyId, Cipher } | nil, err. Its
-- text is checked here for form only; whether it opens is the key's say.
local function read_sealed(name, v)
  local parts = {}
  for k, x in pairs(v) do
    local key = type(k) == "string" and SEALED_KEYS[k:lower()]
    if not key then
      return nil, errors.field(name, ("%s: a sealed secret has Sealed, KeyId and Cipher, and nothing else."):format(name))
    end
    if parts[key] ~= nil then
      return nil, errors.field(name, ("%s.%s is given twice: send it once."):format(name, key), "ambiguous_field")
    end
    parts[key] = x
  end
  if type(parts.Sealed) ~= "string" or not parts.Sealed:match("^[%w+/]+=?=?$") then
    return nil, errors.field(name, ("%s.Sealed must be base64 text."):format(name))
  end
  if type(parts.KeyId) ~= "string" or #parts.KeyId ~= 16 or not parts.KeyId:match("^[0-9a-f]+$") then
    return nil, errors.field(name, ("%s.KeyId must be a key id (16 lower-case hex digits)."):format(name))
  end
  if parts.Cipher ~= _M.SEALED_CIPHER then
    return nil, errors.field(name, ("%s.Cipher must be %q, the one cipher kfsmtp seals with."):format(name, _M.SEALED_CIPHER))
  end
  return { Sealed = parts.Sealed, KeyId = parts.KeyId, Cipher = parts.Cipher }
end

-- read(name, v [, stored]) --> a value (string) | a reference { Provider,
-- Parameters } | a sealed value { Sealed, KeyId, Cipher } (stored only)
-- | nil (no secret given) | nil, err. v is a secret object, or a bare
-- string (taken as its SecretValue). A request may not send the sealed
-- form: a sealed value is bound to its field and profile, not to the
-- server it was entered for, so one taken from a copy of the store and
-- sent back with another Host would go there.
function _M.read(name, v, stored)
  if type(v) == "string" then return v end
  if type(v) ~= "table" then
    return nil, errors.field(name, ("%s must be a secret object such as {\"SecretValue\": \"...\"}, not a %s."):format(
      name, describe(v)))
  end
  if has_sealed_key(v) then
    if stored then return read_sealed(name, v) end
    return nil, errors.field(name, ("%s.Sealed is the form kfsmtp stores a sealed secret in, not one a request may send: give SecretValue, or Provider and Parameters."):format(name))
  end
  local parts, seen = {}, {}
  for k, x in pairs(v) do
    local key = type(k) == "string" and OBJECT_KEYS[k:lower()]
    if key then
      if seen[key] then
        return nil, errors.field(name, ("%s.%s is given twice: send it once."):format(name, key), "ambiguous_field")
      end
      seen[key] = true
      if x ~= cjson.null then parts[key] = x end
    end
  end
  local value, provider, parameters = parts.SecretValue, parts.Provider, parts.Parameters
  if value ~= nil and type(value) ~= "string" then
    return nil, errors.field(name, ("%s.SecretValue must be a string, not a %s."):format(name, describe(value)))
  end
  if provider == nil then
    if parameters ~= nil then
      return nil, errors.field(name, ("%s.Parameters needs %s.Provider: name the secret provider they belong to."):format(name, name))
    end
    return value
  end
  local id = json.whole(provider)
  if not id or id < 1 or id > MAX_PROVIDER_ID then
    return nil, errors.field(name, ("%s.Provider must be a secret provider's id (a whole number), not %s."):format(
      name, type(provider) == "string" and "the text given" or "a " .. describe(provider)))
  end
  if value ~= nil then
    return nil, errors.field(name, ("%s gives both SecretValue and Provider: give the value, or a provider and its Parameters, not both."):format(name))
  end
  local err
  parameters, err = read_parameters(name, parameters or {})
  if not parameters then return nil, err end
  return { Provider = id, Parameters = parameters }
end

-- A reference names its provider; a sealed value is a table too.
function _M.is_reference(v)
  return type(v) == "table" and v.Provider ~= nil
end

function _M.is_sealed(v)
  return type(v) == "table" and v.Sealed ~= nil
end

-- Whether two stored forms name the same secret: equal values, the same
-- sealed text, or the same provider and parameters. nil and "" are both
-- "none".
function _M.same(a, b)
  if _M.is_sealed(a) or _M.is_sealed(b) then
    return _M.is_sealed(a) and _M.is_sealed(b) and a.Sealed == b.Sealed and a.KeyId == b.KeyId
  end
  if type(a) == "table" and type(b) == "table" then
    if a.Provider ~= b.Provider then return false end
    for k, x in pairs(a.Parameters) do
      if b.Parameters[k] ~= x then return false end
    end
    for k in pairs(b.Parameters) do
      if a.Parameters[k] == nil then return false end
    end
    return true
  end
  if type(a) == "table" or type(b) == "table" then return false end
  return (a or "") == (b or "")
end

-- The path given, made relative to the provider's folder: rel | nil, why.
-- Lexical only; the real path, after links, is checked when the file is
-- read (core.read_secret_file).
local function inside(dir, path)
  dir = dir:gsub("/+$", "")
  if path:sub(1, 1) == "/" then
    if path:sub(1, #dir + 1) ~= dir .. "/" then return nil, "is outside the provider's folder" end
    path = path:sub(#dir + 2)
  end
  if path == "" then return nil, "names no file" end
  for part in (path .. "/"):gmatch("([^/]*)/") do
    if part == ".." then return nil, "leaves the provider's folder (..)" end
    if part == "" or part == "." then return nil, "is not a plain path (empty or . parts)" end
  end
  return path
end

local function names_set(p)
  local set = {}
  for _, n in ipairs(p.names) do set[n] = true end
  return set
end

-- A provider with hosts gives its secrets to those hosts only (the SMTP
-- Host, or the token endpoint's for an OAuth client): a caller who may
-- change the profile can name any secret a provider holds, so this is
-- what keeps them from testing it against a server of their own. host
-- false: not known yet (checked again when the secret is read). nil | why.
local function host_refused(p, id, host)
  if not p.hosts or host == false then return nil end
  host = (host or ""):lower():gsub("%.$", "")
  for _, h in ipairs(p.hosts) do
    if h:lower():gsub("%.$", "") == host then return nil end
  end
  return ("provider %d gives its secrets only to the hosts the operator listed for it, and %q is not one"):format(
    id, host)
end

-- check_reference(name, ref, providers, host) --> the reference with its
-- one parameter under its canonical name | nil, err naming the field. The
-- file is not read here: it may appear later (test time tells).
function _M.check_reference(name, ref, providers, host)
  local p = providers and providers[ref.Provider]
  if not p then
    return nil, errors.field(name, ("%s.Provider %d is not a secret provider of this server (%s): use one of those, or SecretValue."):format(
      name, ref.Provider, provider_list(providers)))
  end
  local refused = host_refused(p, ref.Provider, host)
  if refused then return nil, errors.field(name, ("%s cannot come from there: %s."):format(name, refused)) end
  local want = PARAMETER[p.type]
  local value
  for k, x in pairs(ref.Parameters) do
    if k:lower() ~= want:lower() then
      return nil, errors.field(name, ("%s.Parameters.%s is not a parameter of provider %d (%s): give %s alone."):format(
        name, k, ref.Provider, p.type, want))
    end
    value = x
  end
  if value == nil or value == "" then
    return nil, errors.field(name, ("%s.Parameters.%s is required for provider %d (%s): give %s."):format(
      name, want, ref.Provider, p.type, p.type == "file" and "the file's path inside the provider's folder"
        or "the environment variable's name"))
  end
  if p.type == "file" then
    local rel, why = inside(p.dir, value)
    if not rel then
      return nil, errors.field(name, ("%s.Parameters.Path %s: give a file inside the folder of provider %d, relative to it (e.g. smtp_password)."):format(
        name, why, ref.Provider))
    end
    value = rel
  elseif not names_set(p)[value] then
    return nil, errors.field(name, ("%s.Parameters.Name %q is not a variable provider %d may read: the operator lists those."):format(
      name, value, ref.Provider))
  end
  return { Provider = ref.Provider, Parameters = { [want] = value } }
end

---------------------------------------------------------------------------
-- Resolution: the value a reference points to, read when it is needed.

local function where(name, ref, p)
  local param = p and PARAMETER[p.type]
  local shown = param and ref.Parameters[param]
  return ("%s (provider %d%s%s)"):format(name, ref.Provider, p and (", " .. p.type) or "",
    shown and (", %s %q"):format(param, shown) or "")
end

local function unavailable(name, ref, p, why, fix)
  return errors.new("secret", { stage = "secret", field = name, provider = ref.Provider,
    Message = ("%s could not be read: %s. %s Nothing was sent to the SMTP server."):format(where(name, ref, p), why, fix) })
end

-- What went wrong with a file, by core.read_secret_file's kind, and the
-- fix. The core's own message names the provider's folder, which is the
-- operator's business, not a caller's: it is not passed on.
local FILE_PROBLEMS = {
  missing = { "the file does not exist", "Put the secret in that file, or point the reference at the right one." },
  outside = { "the file lies outside the provider's folder (through .. or a symbolic link)",
    "Keep the file, and every link it follows, inside the folder." },
  not_regular = { "it is not a regular file", "Put the secret in a regular file." },
  owner = { "the file belongs to another user", "Give it to the user the server runs as, or to root (chown)." },
  permissions = { "the file is open to other users", "Take their permissions away (chmod o-rwx)." },
  too_large = { ("the file is longer than %d bytes"):format(MAX_SECRET_BYTES), "Keep only the secret in it." },
  unreadable = { "the file cannot be opened", "Let the user the server runs as read it." },
}

-- resolve(name, v, providers, host) --> the secret's value | nil, err
-- (stage "secret"). A value is itself; a reference is read from its
-- provider, for an SMTP host the provider allows.
function _M.resolve(name, v, providers, host)
  if type(v) ~= "table" then return v end
  -- Opening one takes the key file: kfsmtp.sealing.open's, not this.
  if _M.is_sealed(v) then error("kfsmtp.secrets.resolve: " .. name .. " is sealed: open it with kfsmtp.sealing.open", 2) end
  local p = providers and providers[v.Provider]
  local param = p and PARAMETER[p.type]
  local key = param and v.Parameters[param]
  if not key then
    return nil, unavailable(name, v, p, "no such provider is configured now",
      "Configure it again, or enter the secret anew.")
  end
  local refused = host_refused(p, v.Provider, host)
  if refused then return nil, unavailable(name, v, p, refused, "Use a provider meant for this host.") end
  local value, kind, _
  if p.type == "file" then
    local rel = inside(p.dir, key)
    if rel then
      value, _, kind = core.read_secret_file { dir = p.dir, path = rel, max = MAX_SECRET_BYTES }
    else
      kind = "outside"
    end
    if not value then
      local problem = FILE_PROBLEMS[kind] or FILE_PROBLEMS.unreadable
      return nil, unavailable(name, v, p, problem[1], problem[2])
    end
  else
    value = names_set(p)[key] and os_getenv(key) or nil
    if not value or value == "" then
      return nil, unavailable(name, v, p, "the variable is not set in the server's environment",
        "Set it for the server (under nginx, name it in an env directive too).")
    end
  end
  local why = core.check_text(value)
  if why then
    return nil, unavailable(name, v, p, "the value " .. why, "Store the secret alone, on one line.")
  end
  return value
end

---------------------------------------------------------------------------
-- Output: a secret object as version 2 shows it. A value is shown only
-- when it is no secret (RelayUsername, ClientId), and a sealed one never;
-- a reference always shows where it points, never what it points to.

function _M.out(v, show_value)
  if _M.is_sealed(v) then v, show_value = nil, false end
  if type(v) == "table" then
    local parameters = {}
    for k, x in pairs(v.Parameters) do parameters[k] = x end
    return { SecretValue = cjson.null, Parameters = parameters, Provider = v.Provider }
  end
  return { SecretValue = show_value and (v or "") or cjson.null, Parameters = cjson.null, Provider = cjson.null }
end

return _M
