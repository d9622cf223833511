-- The PostgreSQL store's C layer (core.pg_connect and its connection)
-- against a real PostgreSQL, started for this file by spec/support/pg.lua
-- in a throwaway folder: connecting and its refusals, the table, the row
-- and its version, the writers' lock across connections and processes,
-- notifications and what poll costs the server, a stalled, stopped and
-- restarted server, values that must come back byte for byte, the door of
-- every method, and valgrind (#memcheck, Lua 5.4 only).
local core = require "kfsmtp.core"
local H = require "helpers"
local misuse = require "core_misuse"
local pg = require "pg"

describe("the PostgreSQL store's C layer #postgres", function()
  local server
  -- A password of its own, with characters a URI must escape.
  local WRONG = "Wr0ng:Pg@Secret/4711"
  local WRONG_IN_URI = "Wr0ng%3APg%40Secret%2F4711"

  setup(function()
    server = pg.start()
    print(("\n  PostgreSQL started in %.0f ms on port %d (%s)"):format(server.start_ms, server.port, server.dir))
  end)

  teardown(function()
    if server then server:destroy() end
  end)

  -- Every string a call returned holds no password, neither the suite's
  -- (from the passfile) nor the wrong one of the URI, plain or escaped.
  local function no_secret(...)
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      -- Its pieces too: a URI that does not escape it splits it.
      for _, secret in ipairs { server.password, WRONG, WRONG_IN_URI, "Wr0ng", "Secret", "4711" } do
        assert.is_false(H.mentions(v, secret), ("returned value #%d holds a password: %s"):format(i, tostring(v)))
      end
    end
    return ...
  end

  -- Every connection a test opens is closed after it, whatever its end:
  -- one left in a transaction would hold the writers' lock.
  local opened = {}
  after_each(function()
    for _, conn in ipairs(opened) do conn:close() end
    opened = {}
  end)

  local function connect(over)
    local t = H.with({ uri = server.uri }, over)
    local conn, message, kind = no_secret(core.pg_connect(t))
    if conn then opened[#opened + 1] = conn end
    return conn, message, kind
  end

  -- The row's id 1 gone, so that a test starts with no profile.
  local function no_row()
    server:psql("DELETE FROM kfsmtp_profile")
  end

  -- A connection with the table and a profile in it, whatever ran before.
  local function with_row(over)
    local conn = assert(connect(over))
    assert(conn:ensure_table())
    if not conn:load() then
      local text, version = conn:begin_locked()
      assert(text == false, version)
      assert(conn:commit_write('{"Host":"first"}'))
    end
    return conn
  end

  it("connects and says where, never with the password", function()
    local conn, why = connect { application_name = "kfsmtp-info" }
    assert.is_userdata(conn, why)
    local info = no_secret(conn:info())
    assert.are.same({ host = "127.0.0.1", port = server.port, database = "kfsmtp", user = "kfsmtp" }, info)
    assert.are.equal("kfsmtp-info", server:psql("SELECT application_name FROM pg_stat_activity WHERE application_name = 'kfsmtp-info'"))
    conn:close()
    conn:close()
    assert.are.same(info, conn:info())
  end)

  it("a wrong password is kind auth, names host, port and database, and never holds the password", function()
    local conn, message, kind = connect { uri = ("postgresql://kfsmtp:%s@127.0.0.1:%d/kfsmtp"):format(WRONG_IN_URI, server.port) }
    assert.is_nil(conn)
    assert.are.equal("auth", kind)
    assert.truthy(message:find('host "127.0.0.1", port "' .. server.port .. '", database "kfsmtp", user "kfsmtp"', 1, true), message)
    assert.truthy(message:find("password authentication failed", 1, true), message)
    assert.truthy(message:find("SQLSTATE 28P01", 1, true), message)
    -- No password at all: the server asks for one.
    conn, message, kind = connect { uri = server.plain_uri }
    assert.is_nil(conn)
    assert.are.equal("auth", kind)
    assert.truthy(message:find("none was given", 1, true), message)
  end)

  it("a closed port is kind unreachable within connect_timeout_ms + 1 s", function()
    local port = H.closed_port()
    local t0 = H.now_ms()
    local conn, message, kind = connect { uri = ("postgresql://kfsmtp:%s@127.0.0.1:%d/kfsmtp"):format(WRONG_IN_URI, port), connect_timeout_ms = 500 }
    local took = H.now_ms() - t0
    assert.is_nil(conn)
    assert.are.equal("unreachable", kind)
    assert.is_true(took < 1500, took)
    assert.truthy(message:find('host "127.0.0.1", port "' .. port .. '", database "kfsmtp"', 1, true), message)
    assert.truthy(message:find("connection refused", 1, true), message)
  end)

  it("a bad URI, a parameter libpq refuses and a missing database are kind config", function()
    local base = ("postgresql://kfsmtp:%s@127.0.0.1:%d/"):format(WRONG_IN_URI, server.port)
    for _, uri in ipairs { "mysql://kfsmtp:" .. WRONG .. "@127.0.0.1/kfsmtp", "kfsmtp:" .. WRONG,
        "postgresql://kfsmtp:" .. WRONG .. "@[::1]/kfsmtp", "postgresql://kfsmtp:" .. WRONG .. "@127.0.0.1:5432/kfsmtp",
        "postgresql://kfsmtp:" .. WRONG_IN_URI .. "@[::1/kfsmtp", base .. "kfsmtp?nonsense=1",
        base .. "kfsmtp?sslmode=bogus", ("postgresql://kfsmtp:%s@127.0.0.1:port/kfsmtp"):format(WRONG_IN_URI), "" } do
      local conn, message, kind = connect { uri = uri }
      assert.is_nil(conn, uri)
      assert.are.equal("config", kind, message)
      assert.is_string(message)
    end
    -- With the right password (the passfile's), a database that is not there.
    server:psql(("CREATE ROLE kfsmtp_elsewhere LOGIN PASSWORD '%s'"):format(server.password), "postgres", true)
    local conn, message, kind = connect { uri = ("postgresql://kfsmtp_elsewhere:%s@127.0.0.1:%d/absent"):format(server.password, server.port) }
    assert.is_nil(conn)
    assert.are.equal("config", kind, message)
    assert.truthy(message:find('database "absent"', 1, true) and message:find("does not exist", 1, true), message)
  end)

  it("ensure_table creates the table once and is true again after", function()
    local conn = assert(connect())
    assert.is_true(conn:ensure_table())
    assert.is_true(conn:ensure_table())
    assert.are.equal("id|integer|NO\nversion|bigint|NO\nprofile|text|NO\nupdated_at|timestamp with time zone|NO",
      server:psql("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'kfsmtp_profile' ORDER BY ordinal_position"))
    assert.is_true(assert(connect()):ensure_table())
    conn:close()
  end)

  it("ensure_table is true for a user who may use the table but not create tables; without the table that user gets kind auth", function()
    local owner = with_row()
    server:psql(("CREATE ROLE kfsmtp_app LOGIN PASSWORD '%s'"):format(server.password), "postgres", true)
    server:psql("GRANT SELECT, INSERT, UPDATE ON kfsmtp_profile TO kfsmtp_app")
    local app_uri = ("postgresql://kfsmtp_app:%s@127.0.0.1:%d/kfsmtp"):format(server.password, server.port)
    local app = assert(connect { uri = app_uri })
    assert.is_true(app:ensure_table())
    local _, version = assert(app:begin_locked())
    assert.are.equal(version + 1, app:commit_write('{"Host":"by the app"}'))
    assert.are.same({ '{"Host":"by the app"}', version + 1 }, { owner:load() })
    -- Without the table, creating it is refused: the privilege is missing.
    local saved = server:psql("SELECT version || '|' || profile FROM kfsmtp_profile WHERE id = 1")
    server:psql("DROP TABLE kfsmtp_profile")
    local none, message, kind = no_secret(app:ensure_table())
    assert.is_nil(none)
    assert.are.equal("auth", kind)
    assert.truthy(message:find("permission denied for schema public (SQLSTATE 42501)", 1, true), message)
    -- A missing table is kind config for a read.
    none, message, kind = no_secret(app:load())
    assert.is_nil(none)
    assert.are.equal("config", kind)
    assert.truthy(message:find('relation "kfsmtp_profile" does not exist (SQLSTATE 42P01)', 1, true), message)
    assert.is_true(owner:ensure_table())
    local v, text = saved:match("^(%d+)|(.*)$")
    assert.are.same({ false, 0 }, { owner:begin_locked() })
    assert(owner:commit_write(text))
    server:psql("UPDATE kfsmtp_profile SET version = " .. v)
  end)

  it("load without a row is false; begin_locked without one is false, 0 and creates none", function()
    local conn = assert(connect())
    assert(conn:ensure_table())
    no_row()
    assert.are.same({ false }, { conn:load() })
    assert.are.same({ false, 0 }, { conn:begin_locked() })
    assert.is_true(conn:rollback())
    assert.are.same({ false }, { conn:load() })
    assert.are.equal("0", server:psql("SELECT count(*) FROM kfsmtp_profile"))
    assert.is_true(conn:rollback()) -- nothing to roll back
  end)

  it("begin_locked + commit_write bump the version; a listener hears it within 100 ms, and polling costs the server nothing", function()
    local writer = assert(connect { application_name = "kfsmtp-writer-1" })
    local listener = assert(connect { application_name = "kfsmtp-listener" })
    assert(writer:ensure_table())
    no_row()
    assert.is_true(listener:listen())
    local text, version = writer:begin_locked()
    assert.are.same({ false, 0 }, { text, version })
    assert.are.equal(1, writer:commit_write('{"Host":"one"}'))
    assert.are.same({ '{"Host":"one"}', 1 }, { writer:load() })
    -- The first write reached the listener; take it.
    local deadline = H.now_ms() + 2000
    while not listener:poll() do
      assert.is_true(H.now_ms() < deadline, "no notification of the first write")
      H.sleep(0.001)
    end

    -- Nothing changes: poll is false and the listener's session runs no
    -- statement, however often it polls.
    local before = server:statements("kfsmtp-listener")
    local t0 = H.now_ms()
    for _ = 1, 10000 do
      local notified, alive = listener:poll()
      assert(notified == false and alive == true)
    end
    local per_poll_us = (H.now_ms() - t0) * 1000 / 10000
    -- A statement of the writer's after the polls, seen in the log: the
    -- log has caught up with anything the listener's session would have
    -- logged before it.
    local writer_before = server:statements("kfsmtp-writer-1")
    writer:load()
    deadline = H.now_ms() + 5000
    repeat H.sleep(0.02) until server:statements("kfsmtp-writer-1") > writer_before or H.now_ms() > deadline
    assert.is_true(server:statements("kfsmtp-writer-1") > writer_before)
    assert.are.equal(before, server:statements("kfsmtp-listener"))

    -- A write: version + 1, and the listener sees it.
    text, version = writer:begin_locked()
    assert.are.same({ '{"Host":"one"}', 1 }, { text, version })
    local t_write = H.now_ms()
    assert.are.equal(2, writer:commit_write('{"Host":"two"}'))
    local t_committed = H.now_ms()
    local t_seen
    while not t_seen do
      if listener:poll() then t_seen = H.now_ms() end
      assert.is_true(H.now_ms() - t_committed < 1000, "no notification within 1 s")
      if not t_seen then H.sleep(0.001) end
    end
    print(("\n  notification: seen %.2f ms after commit_write returned (%.2f ms after it was called); poll() without news: %.2f us"):format(
      t_seen - t_committed, t_seen - t_write, per_poll_us))
    assert.is_true(t_seen - t_committed < 100, t_seen - t_committed)
    assert.are.same({ false, true }, { listener:poll() })
    assert.are.same({ '{"Host":"two"}', 2 }, { listener:load() })
    -- A writer that listens hears of its own writes too.
    assert.is_true(writer:listen())
    assert(writer:begin_locked())
    assert.are.equal(3, writer:commit_write('{"Host":"three"}'))
    deadline = H.now_ms() + 2000
    while not writer:poll() do
      assert.is_true(H.now_ms() < deadline, "the writer heard nothing of its own write")
      H.sleep(0.001)
    end
    assert.are.same({ false, true }, { writer:poll() })
    deadline = H.now_ms() + 2000
    while not listener:poll() do
      assert.is_true(H.now_ms() < deadline, "no notification of the third write")
      H.sleep(0.001)
    end
    assert.are.equal("3|{\"Host\":\"three\"}", server:psql("SELECT version, profile FROM kfsmtp_profile WHERE id = 1"))
    writer:close()
    listener:close()
  end)

  it("a failed commit_write rolls back and keeps the version", function()
    local conn = with_row()
    local _, version = assert(conn:begin_locked())
    -- Invalid UTF-8 is refused by the server (the door lets bytes through).
    local none, message, kind = no_secret(conn:commit_write("\255\254 not UTF-8"))
    assert.is_nil(none)
    assert.are.equal("other", kind)
    assert.truthy(message:find("SQLSTATE 22021", 1, true), message)
    assert.are.equal(version, select(2, conn:load()))
    -- The transaction is over: another can begin.
    assert(conn:begin_locked())
    assert.are.equal(version + 1, conn:commit_write("{}"))
  end)

  it("begin_locked, ensure_table and commit_write raise when called in the wrong state", function()
    local conn = with_row()
    local ok, err = pcall(conn.commit_write, conn, "{}")
    assert.is_false(ok)
    assert.truthy(err:find("kfsmtp.core.pg:commit_write: no transaction", 1, true), err)
    assert(conn:begin_locked())
    ok, err = pcall(conn.begin_locked, conn)
    assert.is_false(ok)
    assert.truthy(err:find("kfsmtp.core.pg:begin_locked: already in a transaction", 1, true), err)
    ok, err = pcall(conn.ensure_table, conn)
    assert.is_false(ok)
    assert.truthy(err:find("kfsmtp.core.pg:ensure_table: inside a transaction", 1, true), err)
    conn:rollback()
  end)

  it("two writers serialise: the second waits for the first's commit (in this process, then in another)", function()
    local a = with_row()
    local b = assert(connect())
    -- b cannot take the lock while a holds it: past its deadline it is
    -- closed, kind unreachable.
    local _, version = assert(a:begin_locked())
    local t0 = H.now_ms()
    local none, message, kind = no_secret(b:begin_locked(300))
    local waited = H.now_ms() - t0
    assert.is_nil(none)
    assert.are.equal("unreachable", kind)
    assert.is_true(waited >= 290 and waited < 1300, waited)
    assert.truthy(message:find("no answer within 300 ms", 1, true), message)
    assert.are.same({ false, false }, { b:poll() })
    assert.are.equal("unreachable", select(3, b:load()))
    -- Another process waits for the lock, which a still holds...
    local child = assert(io.popen(("%s spec/support/pg_writer.lua %s %s %s 2>&1"):format(
      H.lua_run, H.q(H.build), H.q(server.uri), H.q("from the other process"))))
    local deadline = H.now_ms() + 10000
    while server:psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") ~= "1" do
      assert.is_true(H.now_ms() < deadline, "the other process never waited for the lock")
      H.sleep(0.02)
    end
    H.sleep(0.3)
    -- ...until a commits.
    local t_commit = core.clock_ms()
    assert.are.equal(version + 1, a:commit_write("from this process"))
    local out = child:read("*a")
    child:close()
    local waiting = tonumber(out:match("waiting ([%d.]+)"))
    local locked, read_version, read_text = out:match("locked ([%d.]+) (%d+) ([^\n]*)")
    assert.truthy(waiting and locked, out)
    assert.is_true(waiting < t_commit, out)
    assert.is_true(tonumber(locked) >= t_commit, out)
    assert.are.equal(tostring(version + 1), read_version)
    assert.are.equal("from this process", read_text)
    assert.are.equal(tostring(version + 2), out:match("wrote (%d+)"))
    assert.are.same({ "from the other process", version + 2 }, { a:load() })
  end)

  it("a stalled server: load(300) is unreachable within 1.3 s, connecting too; after resume a new connection works", function()
    local conn = with_row()
    local _, version = assert(conn:load())
    server:stall()
    finally(function() server:resume() end)
    local t0 = H.now_ms()
    local none, message, kind = no_secret(conn:load(300))
    local load_took = H.now_ms() - t0
    assert.is_nil(none)
    assert.are.equal("unreachable", kind)
    assert.is_true(load_took >= 290 and load_took < 1300, load_took)
    assert.truthy(message:find('host "127.0.0.1", port "' .. server.port .. '", database "kfsmtp"', 1, true), message)
    -- The late connection is closed: nothing more is tried on it.
    assert.are.same({ false, false }, { conn:poll() })
    none, message, kind = conn:load(300)
    assert.is_nil(none)
    assert.are.equal("unreachable", kind)
    assert.truthy(message:find("lost earlier", 1, true), message)
    t0 = H.now_ms()
    local other
    other, message, kind = connect { connect_timeout_ms = 300 }
    local took = H.now_ms() - t0
    assert.is_nil(other)
    assert.are.equal("unreachable", kind)
    assert.is_true(took >= 290 and took < 1300, took)
    assert.truthy(message:find("no answer within 300 ms", 1, true), message)
    print(("\n  stalled server: load(300) gave up after %.0f ms, connect_timeout_ms = 300 after %.0f ms"):format(load_took, took))
    server:resume()
    local fresh = assert(connect())
    assert.are.equal(version, select(2, fresh:load()))
  end)

  it("a stopped server: poll sees the connection end, connecting is unreachable; after a restart it works", function()
    local conn = with_row()
    local text, version = assert(conn:load())
    assert(conn:listen())
    server:stop()
    finally(function() if not server:postmaster() then server:restart() end end)
    local deadline = H.now_ms() + 2000
    local notified, alive = conn:poll()
    while alive and H.now_ms() < deadline do
      H.sleep(0.01)
      notified, alive = conn:poll()
    end
    assert.is_false(notified)
    assert.is_false(alive)
    assert.are.equal("unreachable", select(3, conn:load()))
    local none, message, kind = connect { connect_timeout_ms = 1000 }
    assert.is_nil(none)
    assert.are.equal("unreachable", kind)
    assert.truthy(message:find("connection refused", 1, true), message)
    server:restart()
    conn = assert(connect())
    assert.are.same({ text, version }, { conn:load() })
    -- Killed outright (postmaster and backends): the socket closes.
    assert(conn:listen())
    server:kill9()
    assert.are.same({ false, false }, { conn:poll() })
    server:restart()
    assert.are.same({ text, version }, { assert(connect()):load() })
  end)

  it("quotes, backslashes, UTF-8, SQL and 60 KiB come back byte for byte", function()
    local conn = with_row()
    local values = {
      [[{"SenderName":"O'Brien \"quoted\"","Path":"C:\\temp\\x","Dollar":"$1 $$ $2"}]],
      "'); DROP TABLE kfsmtp_profile; --",
      "Zertifikatsstelle Köln — ✉ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ü\t\r\n\\0",
      "",
      ("0123456789abcdef\"'\\ü"):rep(3 * 1024):sub(1, 60 * 1024),
    }
    for _, value in ipairs(values) do
      local _, version = assert(conn:begin_locked())
      assert.are.equal(version + 1, conn:commit_write(value))
      local text, v = conn:load()
      assert.are.equal(#value, #text)
      assert.is_true(text == value)
      assert.are.equal(version + 1, v)
      assert.are.equal(tostring(#value), server:psql("SELECT octet_length(profile) FROM kfsmtp_profile WHERE id = 1"))
    end
    assert.are.equal("1", server:psql("SELECT count(*) FROM kfsmtp_profile"))
  end)

  it("each method refuses a wrong object or timeout, naming itself and the argument", function()
    local ctx = { dir = H.tmpdir(), closed = H.closed_port(), pg_uri = server.uri }
    local by_fn, order = {}, {}
    for _, c in ipairs(misuse.pg_calls(core, ctx)) do
      by_fn[c.fn] = {}
      order[#order + 1] = c.fn
    end
    misuse.each(core, ctx, function(case)
      if by_fn[case.fn] then table.insert(by_fn[case.fn], case) end
    end)
    for _, fn in ipairs(order) do
      local wrong, raised = {}, 0
      for _, case in ipairs(by_fn[fn]) do
        local ok, err = case.run()
        wrong[#wrong + 1] = misuse.verdict(case, ok, err)
        if not ok then raised = raised + 1 end
      end
      assert.are.same({}, wrong)
      assert.is_true(raised > 0, fn)
    end
    local conn = assert(connect())
    local err = select(2, pcall(conn.load, conn, 0))
    assert.are.equal("kfsmtp.core.pg:load: argument #2 'timeout_ms' must be an integer from 1 to 86400000", err)
    err = select(2, pcall(conn.load, {}))
    assert.are.equal("kfsmtp.core.pg:load: argument #1 'self' must be a kfsmtp.pg, not a table", err)
    err = select(2, pcall(conn.commit_write, conn, "a\0b"))
    assert.are.equal("kfsmtp.core.pg:commit_write: argument #2 'text' must be a string without NUL bytes", err)
    err = select(2, pcall(core.pg_connect, { uri = server.uri, application_name = ("a"):rep(64) }))
    assert.are.equal("kfsmtp.core.pg_connect: field 'application_name' must be a string of at most 63 bytes", err)
  end)

  it("under valgrind: no invalid access, nothing lost #memcheck", function()
    local wrong = ("postgresql://kfsmtp:%s@127.0.0.1:%d/kfsmtp"):format(WRONG_IN_URI, server.port)
    local out, problem = H.memcheck(("spec/support/pg_memcheck.lua %s %s %d"):format(H.q(server.uri), H.q(wrong), H.closed_port()))
    assert.truthy(out:find("pg memcheck script done", 1, true), out)
    assert.is_nil(problem)
    out, problem = H.memcheck(("spec/support/core_memcheck.lua %s %d %s"):format(H.q(H.tmpdir()), H.closed_port(), H.q(server.uri)))
    assert.truthy(out:find("core misuse done: %d+ calls, 0 wrong"), out)
    assert.is_nil(problem)
  end)

  it("the server's log never holds the suite's password", function()
    assert(with_row())
    assert.is_nil(server:log():find(server.password, 1, true))
  end)

  it("a connection collected unclosed is closed", function()
    local before = server:psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kfsmtp-gc'")
    assert.are.equal("0", before)
    for _ = 1, 5 do assert(core.pg_connect { uri = server.uri, application_name = "kfsmtp-gc" }) end
    collectgarbage()
    collectgarbage()
    local deadline = H.now_ms() + 5000
    while server:psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kfsmtp-gc'") ~= "0" do
      assert.is_true(H.now_ms() < deadline, "collected connections still open")
      H.sleep(0.02)
    end
  end)
end)
