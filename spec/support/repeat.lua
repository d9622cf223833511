-- 1,000 failing and 1,000 successful tests in one process; prints the
-- open descriptors and resident memory after a warm-up and at the end.
-- usage: lua repeat.lua PORT CLOSED_PORT COUNT
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;" .. package.path
package.cpath = (os.getenv("KFSMTP_BUILD") or ("build/" .. build)) .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local port, closed, count = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])

local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
local function fds()
  local n = 0
  local p = io.popen("ls /proc/" .. pid .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end
-- Reads the whole file and closes it: returning from inside io.lines()
-- would leave the file open until a collection, and skew the fd count.
local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("*a")
  f:close()
  return tonumber(status:match("VmRSS:%s+(%d+)"))
end

local store = kfsmtp.open(os.tmpname())
local good = { Host = "127.0.0.1", Port = port, SenderAccount = "kf@example.com",
  SenderName = "Zertifikatsstelle Köln", TestRecipient = "ops@example.com" }
local bad = { Host = "127.0.0.1", Port = closed, SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" }
local function round(n)
  for _ = 1, n do
    assert(not store:test(bad, { transcript = true }))
    assert(store:test(good, { transcript = true }))
  end
end
round(100)
collectgarbage() collectgarbage()
local fd0, rss0 = fds(), rss_kib()
round(count)
collectgarbage() collectgarbage()
local fd1, rss1 = fds(), rss_kib()
print(("fds %d %d rss %d %d"):format(fd0, fd1, rss0, rss1))
