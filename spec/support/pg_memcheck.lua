-- Run by spec/pgstore_spec.lua under valgrind (#memcheck): every path of
-- the PostgreSQL store's C layer against a live server, a few times, so
-- that a leak per call would show as definitely lost: connections made,
-- refused (password, URI, database, closed port) and collected unclosed;
-- the table, reads, locked writes and their notifications, rollbacks; a
-- lock wait past its deadline; a connection the server ends.
-- usage: lua5.4 pg_memcheck.lua URI WRONG_PASSWORD_URI CLOSED_PORT
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local core = require "kfsmtp.core"
local uri, wrong, closed = arg[1], arg[2], tonumber(arg[3])
for i = 1, 3 do
  local a = assert(core.pg_connect { uri = uri, application_name = "kfsmtp-memcheck" })
  local b = assert(core.pg_connect { uri = uri })
  assert(a:ensure_table())
  assert(b:listen())
  local text, version = a:begin_locked()
  assert(text ~= nil, version)
  assert(a:commit_write(("profile %d "):format(i) .. ("x"):rep(60 * 1024)) == version + 1)
  local notified
  for _ = 1, 2000 do
    notified = b:poll()
    if notified then break end
  end
  assert(notified, "no notification")
  assert(#b:load() > 60 * 1024)
  assert(a:begin_locked())
  a:rollback()
  -- b waits for a's lock past its deadline: closed, kind unreachable.
  assert(a:begin_locked())
  local none, _, kind = b:begin_locked(200)
  assert(none == nil and kind == "unreachable", kind)
  assert(select(2, b:poll()) == false)
  a:rollback()
  assert(a:info().host)
  for _, bad in ipairs { wrong, "mysql://x", "postgresql://[::1", uri:gsub("/kfsmtp%?", "/absent?"),
      ("postgresql://kfsmtp@127.0.0.1:%d/kfsmtp"):format(closed), uri .. "&sslmode=bogus" } do
    local conn, message, k = core.pg_connect { uri = bad, connect_timeout_ms = 2000 }
    assert(conn == nil and type(message) == "string" and k ~= nil, bad)
  end
  -- Left for the collector, open.
  local _ = core.pg_connect { uri = uri }
  a:close()
  collectgarbage()
end
collectgarbage()
print("pg memcheck script done")
