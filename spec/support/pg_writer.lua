-- A second writer in a process of its own, for spec/pgstore_spec.lua:
-- connects, says when it starts waiting for the writers' lock, when it got
-- it and what it read, then writes TEXT and says the new version. Times
-- are core.clock_ms() (CLOCK_MONOTONIC, the same in every process).
-- usage: LUA pg_writer.lua BUILD_DIR URI TEXT
package.cpath = arg[1] .. "/?.so;" .. package.cpath
local core = require "kfsmtp.core"
local conn = assert(core.pg_connect { uri = arg[2], application_name = "kfsmtp-writer" })
local function say(...)
  io.write(table.concat({ ... }, " "), "\n")
  io.flush()
end
say("waiting", ("%.3f"):format(core.clock_ms()))
local text, version = conn:begin_locked(20000)
assert(text ~= nil, version)
say("locked", ("%.3f"):format(core.clock_ms()), tostring(version), tostring(text))
say("wrote", tostring(assert(conn:commit_write(arg[3]))))
conn:close()
