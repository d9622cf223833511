-- kfsmtp.test() in a loop, with the contract of the other bench clients:
--   lua kfsmtp_loop.lua --host H --port P --mode plain|starttls|implicit --n N
--       [--ca FILE] [--user U --password-file F] [--from A] [--to A]
--       [--token-url URL --client-id ID --client-secret-file F --scope S]
--       [--rss]
-- prints each test's latency in microseconds; with --rss, the resident
-- size after 100 tests and at the end on stderr. With --token-url the
-- profile is RelayAuthenticationType 3 (OAuth client credentials).
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. build .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local socket = require "socket"

local a = {}
local i = 1
while i <= #arg do
  local k = arg[i]:match("^%-%-(.+)$")
  if k == "rss" then a.rss = true; i = i + 1 else a[k] = arg[i + 1]; i = i + 2 end
end
-- Reads the whole file and closes it: returning from inside io.lines()
-- would leave the file open until a collection, and skew the fd count.
local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("*a")
  f:close()
  return tonumber(status:match("VmRSS:%s+(%d+)"))
end

local req = { Host = a.host, Port = tonumber(a.port), SenderAccount = a.from or "kf@example.com",
  TestRecipient = a.to or "ops@example.com", SenderName = "Keyfactor Command",
  UseSSL = a.mode ~= "plain" }
local function first_line(path)
  local f = assert(io.open(path))
  local line = f:read("*l")
  f:close()
  return line
end
if a["token-url"] then
  req.RelayAuthenticationType = 3
  req.RelayUsername = a.user or req.SenderAccount
  req.TokenEndpoint, req.ClientId, req.Scope = a["token-url"], a["client-id"], a.scope or "bench"
  req.ClientSecret = first_line(a["client-secret-file"])
elseif a.user then
  req.RelayAuthenticationType = 2
  req.RelayUsername = a.user
  req.RelayPassword = first_line(a["password-file"])
end
local opts = { ca_file = a.ca, tls_mode = a.mode == "implicit" and "implicit" or nil }
local store = kfsmtp.open(os.tmpname())
-- Each latency as soon as it is known: bench/latency.py reads the relay's
-- round-trip count at each line.
local n = tonumber(a.n)
for k = 1, n do
  local t0 = socket.gettime()
  local ok, err = store:test(req, opts)
  if not ok then io.stderr:write(tostring(err), "\n") os.exit(1) end
  io.write(math.floor((socket.gettime() - t0) * 1e6), "\n")
  io.stdout:flush()
  if a.rss and k == 100 then io.stderr:write("rss_after_100 ", rss_kib(), "\n") end
end
if a.rss then collectgarbage() io.stderr:write("rss_at_end ", rss_kib(), "\n") end
