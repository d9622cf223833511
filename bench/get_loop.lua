-- get() on an unchanged store against reading and decoding the file with
-- lua-cjson on every call. usage: lua get_loop.lua N
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. build .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local socket = require "socket"
local n = tonumber(arg[1]) or 200000
local path = os.tmpname()
local store = kfsmtp.open(path)
assert(store:update { Host = "mail.example.com", Port = 587, UseSSL = true, SenderAccount = "kf@example.com",
  SenderName = "Keyfactor Command", RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "pw" })
-- A store changed in the last second or two is read on every call (file
-- times are only as fine as the kernel's tick): measure a settled one.
socket.sleep(2.1)
local function rate(fn)
  local t0 = socket.gettime()
  for _ = 1, n do fn() end
  return n / (socket.gettime() - t0)
end
local cached = rate(function() return store:get() end)
local reread = rate(function()
  local f = io.open(path, "rb")
  local doc = cjson.decode(f:read("*a"))
  f:close()
  return doc
end)
print(("get %.0f reread %.0f"):format(cached, reread))
os.remove(path)
os.remove(path .. ".lock")
