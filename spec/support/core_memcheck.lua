-- Run by spec/core_spec.lua under valgrind (#memcheck): every misuse and
-- every taken value of spec/support/core_misuse.lua, and the tables whose
-- fields are made on access, in a plain Lua 5.4.
-- usage: lua5.4 core_memcheck.lua EMPTY_FOLDER CLOSED_PORT [PG_URI]
-- With PG_URI (spec/pgstore_spec.lua), a connection's methods too.
package.path = "spec/support/?.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local core = require "kfsmtp.core"
local misuse = require "core_misuse"
local ctx = { dir = arg[1], closed = tonumber(arg[2]), pg_uri = arg[3] }
local calls, wrong = 0, 0
misuse.each(core, ctx, function(case)
  calls = calls + 1
  local why = misuse.verdict(case, case.run())
  if why then
    wrong = wrong + 1
    print(why:sub(1, 300))
  end
end)
local message, id, r = misuse.proxied(core, ctx)
assert(message:find(id, 1, true) and r.ok == false and r.stage == "connect")
collectgarbage()
print(("core misuse done: %d calls, %d wrong"):format(calls, wrong))
