-- A throwaway PostgreSQL for bench/bench.py (spec/support/pg.lua), driven
-- over stdin and stdout, one line each way. Run from the repository root:
--   lua5.4 bench/pg_server.lua
-- Once the server runs it prints {"uri": ..., "port": ..., "dir": ...,
-- "version": ...} as one JSON line, then answers each command:
--   stall             SIGSTOP to the postmaster and every backend --> "ok N" (N processes)
--   resume            SIGCONT to them --> "ok"
--   psql SQL          SQL as the superuser --> its output, as one JSON string
--   quit              (or the end of input) the server is stopped and removed
-- pg.lua's watchdog removes it too if this process dies first.
--
-- The settings are a benchmark's, not the specs': commits are durable
-- (fsync and synchronous_commit on, as the file store fsyncs every
-- update), statements are not logged, and there is room for the
-- connections of several nginx nodes (each Lua VM of a node's worker
-- threads keeps two).
package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
local cjson = require "cjson"
local pg = require "pg"

local server = pg.start { conf = {
  max_connections = 300, fsync = "on", synchronous_commit = "on", full_page_writes = "on",
  log_statement = "none", log_min_duration_statement = -1,
} }
local ok, err = pcall(function()
  io.write(cjson.encode { uri = server.uri, port = server.port, dir = server.dir,
    version = (server:psql("SHOW server_version")):match("^(%S+)") }, "\n")
  io.flush()
  for line in io.lines() do
    local cmd, rest = line:match("^(%S+)%s*(.*)$")
    if cmd == "quit" then break end
    if cmd == "stall" then
      server:stall()
      io.write(("ok %d\n"):format(#server:pids()))
    elseif cmd == "resume" then
      server:resume()
      io.write("ok\n")
    elseif cmd == "psql" then
      io.write(cjson.encode(server:psql(rest)), "\n")
    else
      io.write(cjson.encode("unknown command: " .. tostring(cmd)), "\n")
    end
    io.flush()
  end
end)
server:destroy()
if not ok then
  io.stderr:write("pg_server.lua: ", tostring(err), "\n")
  os.exit(1)
end
