-- The HTTP API's callers: a JSON users file holding, per user name, a
-- salted PBKDF2 hash of the password and the permissions granted.
--
--   { "users": { "CORP\\alice": { "password": "pbkdf2-sha256$100000$<salt>$<hash>",
--                                 "permissions": ["/system_settings/read/"] } } }
--
-- User names match case-insensitively, as Windows account names do.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local file = require "kfsmtp.file"
local json = require "kfsmtp.json"

local _M = {}

_M.READ = "/system_settings/read/"
_M.MODIFY = "/system_settings/modify/"
local SHORT = { read = _M.READ, modify = _M.MODIFY }

-- The users file is read through kfsmtp.file's change cache: a user added
-- with `kfsmtp user-add` counts at once, an edit by hand within about a
-- second, and an unchanged file costs a request no system call.
local files = {} -- path --> kfsmtp.file object

-- { doc = the file's JSON, users = lower-cased name --> entry } | nil, message
local function parse(path, doc)
  if type(doc) ~= "table" or type(doc.users) ~= "table" then return nil end
  local users = {}
  for name, entry in pairs(doc.users) do
    if type(name) ~= "string" or type(entry) ~= "table" or type(entry.password) ~= "string" then
      return nil, ("users file %s: user %s needs a \"password\" hash"):format(path, tostring(name))
    end
    local perms = {}
    for _, p in ipairs(type(entry.permissions) == "table" and entry.permissions or {}) do
      perms[p] = true
    end
    users[name:lower()] = { name = name, hash = entry.password, permissions = perms }
  end
  return { doc = doc, users = users }
end

local function decode(self, content)
  if not content then return parse(self.path, { users = {} }) end
  local doc, err = cjson.decode(content)
  local parsed, why = parse(self.path, doc)
  if parsed then return parsed end
  return nil, why or ("users file %s is not a JSON object with a \"users\" object (%s)"):format(self.path, err or "wrong shape")
end

local function users_file(path)
  local f = files[path]
  if not f then
    f = file.new(path, decode)
    files[path] = f
  end
  return f
end

-- load(path) --> users (lower-cased name --> entry) | nil, message
function _M.load(path)
  local parsed, why = users_file(path):current()
  if not parsed then return nil, why end
  return parsed.users
end

-- verify(password, hash) --> true | false; for ngx.run_worker_thread, since
-- PBKDF2 is deliberately slow.
function _M.verify(password, hash)
  return core.password_verify(password, hash) == true
end

-- Expands "read", "modify" and "all" to the claim names; keeps full names.
function _M.permissions(list)
  local out = {}
  for _, p in ipairs(list) do
    if p == "all" then
      out[#out + 1] = _M.READ
      out[#out + 1] = _M.MODIFY
    else
      out[#out + 1] = SHORT[p] or p
    end
  end
  return out
end

-- add(path, name, password, permissions) --> true | nil, message.
-- Creates the file if needed; replaces an existing user of that name.
function _M.add(path, name, password, permissions)
  if type(name) ~= "string" or name == "" or name:find("[:%c]") then
    return nil, "a user name must be non-empty, without ':' or control characters"
  end
  if type(password) ~= "string" or #password < 8 then
    return nil, "a caller's password must have at least 8 characters"
  end
  local f = users_file(path)
  return f:with_lock(function()
    local current, why = f:read()
    if not current then
      return nil, ("%s; fix or move it first"):format(why)
    end
    local doc = current.doc
    for existing in pairs(doc.users) do
      if existing:lower() == name:lower() then doc.users[existing] = nil end
    end
    doc.users[name] = { password = core.password_hash(password), permissions = json.array(_M.permissions(permissions)) }
    local ok
    ok, why = f:write(json.encode(doc, true) .. "\n", parse(path, doc))
    if not ok then return nil, why end
    return true
  end)
end

return _M
