-- The HTTP API's callers: a JSON users file holding, per user name, a
-- salted PBKDF2 hash of the password and the permissions granted.
--
--   { "users": { "CORP\\alice": { "password": "pbkdf2-sha256$100000$<salt>$<hash>",
--                                 "permissions": ["/system_settings/read/"] } } }
--
-- User names match case-insensitively, as Windows account names do.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local json = require "kfsmtp.json"

local _M = {}

_M.READ = "/system_settings/read/"
_M.MODIFY = "/system_settings/modify/"
local SHORT = { read = _M.READ, modify = _M.MODIFY }

local cache = {} -- path --> { sig = , users = , checked = }

-- A changed users file (a user added or removed) takes effect within this
-- many seconds; in between, requests cost no stat.
local RECHECK_S = 1

-- load(path) --> users (lower-cased name --> entry) | nil, message
function _M.load(path)
  local c = cache[path]
  local now = os.time()
  if c and c.checked == now then return c.users end
  local sig, why = core.store_stat(path)
  if not sig then return nil, why end
  if c and c.sig == sig then
    c.checked = now - 1 + RECHECK_S
    return c.users
  end
  local content, sig2 = core.store_read(path)
  if content == nil then return nil, sig2 end
  local users = {}
  if content then
    local doc, err = cjson.decode(content)
    if type(doc) ~= "table" or type(doc.users) ~= "table" then
      return nil, ("users file %s is not a JSON object with a \"users\" object (%s)"):format(path, err or "wrong shape")
    end
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
  end
  cache[path] = { sig = sig2, users = users, checked = now - 1 + RECHECK_S }
  return users
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
  local lock, why = core.store_lock(path)
  if not lock then return nil, why end
  local content, err = core.store_read(path)
  local doc = { users = {} }
  if content == nil then lock:release(); return nil, err end
  if content then
    doc = cjson.decode(content)
    if type(doc) ~= "table" or type(doc.users) ~= "table" then
      lock:release()
      return nil, ("users file %s is not in the expected form; fix or move it first"):format(path)
    end
  end
  for existing in pairs(doc.users) do
    if existing:lower() == name:lower() then doc.users[existing] = nil end
  end
  doc.users[name] = { password = core.password_hash(password), permissions = json.array(_M.permissions(permissions)) }
  local ok
  ok, why = core.store_write(path, json.encode(doc, true) .. "\n")
  lock:release()
  if not ok then return nil, why end
  return true
end

return _M
