-- Freshness of the PostgreSQL store between two processes, each with its
-- own store object (its own connections), for bench/bench.py:
--   lua5.4 bench/fresh_loop.lua read URI N    asks get() every 0.1 ms until it
--       has seen "change N"; prints "ready" once it listens, then
--       "<SenderName>\t<time>" for each SenderName it sees
--   lua5.4 bench/fresh_loop.lua write URI N   N updates, 5 ms apart; prints
--       "<SenderName>\t<time>" as each returns (committed)
-- Times are socket.gettime() seconds, the same clock in both processes.
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. build .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local socket = require "socket"

local mode, uri, n = arg[1], arg[2], tonumber(arg[3])
assert((mode == "read" or mode == "write") and uri and n, "usage: fresh_loop.lua read|write URI N")
local store = kfsmtp.open(uri)
local profile = { Host = "mail.example.com", Port = 587, UseSSL = true, SenderAccount = "kf@example.com" }

if mode == "write" then
  for i = 1, n do
    profile.SenderName = "change " .. i
    assert(store:update(profile))
    io.write(profile.SenderName, "\t", ("%.6f"):format(socket.gettime()), "\n")
    io.flush()
    socket.sleep(0.005)
  end
  os.exit(0)
end

local last = assert(store:get()).SenderName
io.write("ready\n")
io.flush()
local deadline = socket.gettime() + 60
local final = "change " .. n
while last ~= final do
  local p = assert(store:get())
  if p.SenderName ~= last then
    last = p.SenderName
    io.write(last, "\t", ("%.6f"):format(socket.gettime()), "\n")
    io.flush()
  end
  assert(socket.gettime() < deadline, "the last change was not seen within 60 s")
  socket.sleep(0.0001)
end
