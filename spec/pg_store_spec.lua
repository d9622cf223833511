-- kfsmtp's store on a real PostgreSQL (spec/support/pg.lua starts one for
-- this file): the same API as the file store by URI, several "nodes"
-- (store objects with connections of their own) sharing the row, how fast
-- a change on one is seen on another, that an unchanged store costs the
-- server no statement per get(), the row's lock under concurrent
-- processes, and a stalled, stopped and restarted server.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"
local pg = require "pg"
local sealing = require "kfsmtp.sealing"

local PASSWORD = "Pg-Relay-Pw-" .. tostring(os.time())

describe("the PostgreSQL store #postgres", function()
  local server, relay, KEY
  setup(function()
    -- Every store object of this file keeps two connections, the 16
    -- writer processes two each, the nginx nodes two per thread VM.
    server = pg.start { conf = { max_connections = 200 } }
    relay = H.start_smtp { mode = "starttls", auth = "svc:" .. PASSWORD }
    local key_file = H.tmpdir() .. "/key"
    assert(sealing.keygen(key_file))
    -- Per call, not configure{}: the module's defaults outlive this file.
    KEY = { key_file = key_file }
  end)
  teardown(function()
    relay:stop()
    if server then server:destroy() end
  end)

  -- Another node's URI for the same database: a store object, and
  -- connections, of its own (stores are shared per name within a state).
  local node_count = 0
  local function node_uri()
    node_count = node_count + 1
    return server.uri .. "&application_name=node" .. node_count
  end

  local function profile(over)
    local t = { Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = "svc", RelayPassword = PASSWORD, SenderAccount = "kf@example.com", SenderName = "KF" }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end

  -- Each case starts with no row (the table itself stays: connections
  -- made it once and keep using it).
  before_each(function()
    server:psql("DO $$ BEGIN IF to_regclass('kfsmtp_profile') IS NOT NULL THEN TRUNCATE kfsmtp_profile; END IF; END $$")
  end)

  it("is chosen by a postgresql:// or postgres:// URI, and starts as the empty profile", function()
    for _, uri in ipairs { node_uri(), (node_uri():gsub("^postgresql://", "postgres://")) } do
      local store = kfsmtp.open(uri)
      local p = assert(store:get())
      assert.are.same({ Host = "", Id = 1, Port = 25, RelayAuthenticationType = 0, RelayUsername = "",
        SenderAccount = "", SenderAddress = "", SenderName = "", UseSSL = false }, p)
      assert.falsy(store.path:find(server.password, 1, true))
    end
  end)

  it("keeps the profile and its secret, and a test uses the stored password", function()
    local store = kfsmtp.open(node_uri())
    local p = assert(store:update(profile(), KEY))
    assert.are.equal(relay.port, p.Port)
    local other = kfsmtp.open(node_uri())
    local q = assert(other:get())
    assert.are.same(p, q)
    assert.are.equal("integer", math.type and math.type(q.Port) or "integer")
    -- Node B tests with the password stored through node A.
    local t = H.with(profile(), { RelayPassword = H.NONE, TestRecipient = "ops@example.com" })
    local _, info = other:test(t, { ca_file = H.certs().ca, key_file = KEY.key_file })
    assert.is_nil(info.Message, info.Message)
    assert.are.equal("svc", relay:messages()[#relay:messages()].meta.auth_login)
    -- The row holds one JSON document and a version.
    local version = tonumber(server:psql("SELECT version FROM kfsmtp_profile WHERE id = 1"))
    assert(store:update(profile { SenderName = "KF 2" }, KEY))
    assert.are.equal(version + 1, tonumber(server:psql("SELECT version FROM kfsmtp_profile WHERE id = 1")))
  end)

  it("shows a change committed on one node to another well within 1 s, at once on its own", function()
    local a, b = kfsmtp.open(node_uri()), kfsmtp.open(node_uri())
    assert(a:update(profile(), KEY))
    assert.are.equal("KF", assert(b:get()).SenderName)
    local delays = {}
    for i = 1, 20 do
      local name = "change " .. i
      assert(a:update(profile { SenderName = name }, KEY))
      assert.are.equal(name, assert(a:get()).SenderName, "at once on the node that wrote")
      local t0 = H.now_ms()
      while assert(b:get()).SenderName ~= name do
        assert(H.now_ms() - t0 < 1000, "node B did not see the change within 1 s")
        H.sleep(0.001)
      end
      delays[i] = H.now_ms() - t0
    end
    table.sort(delays)
    print(("\n  freshness on another node: median %.1f ms, worst %.1f ms (20 changes)"):format(delays[10], delays[20]))
    assert.truthy(delays[20] < 1000)
  end)

  it("replaces a lost listening connection and reads again, so a change is not missed", function()
    local a, b = kfsmtp.open(node_uri()), kfsmtp.open(node_uri())
    assert(a:update(profile(), KEY))
    assert.are.equal("KF", assert(b:get()).SenderName)
    -- Every listening session ends (an idle-session killer, a proxy, a
    -- failover), then a change is committed while nobody listens.
    local ended = server:psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
    assert.truthy(tonumber(ended) >= 1, "listening sessions ended: " .. ended)
    assert(a:update(profile { SenderName = "while nobody listened" }, KEY))
    local t0 = H.now_ms()
    while assert(b:get()).SenderName ~= "while nobody listened" do
      assert(H.now_ms() - t0 < 1000, "node B stayed stale after losing its listener")
      H.sleep(0.005)
    end
  end)

  it("answers get() on an unchanged store without a statement to the server", function()
    local b = kfsmtp.open(node_uri())
    assert(kfsmtp.open(node_uri()):update(profile(), KEY))
    assert(b:get())
    -- Let the node's own notification (if any) be consumed first.
    H.sleep(0.05)
    assert(b:get())
    local before = server:statements()
    for _ = 1, 500 do assert(b:get()) end
    assert.are.equal(before, server:statements(), "get() on an unchanged store ran statements")
  end)

  it("keeps no secret in clear: without a key file an update with a password is refused", function()
    local store = kfsmtp.open(node_uri())
    local p, err = store:update(profile())
    assert.is_nil(p)
    assert.are.same({ 500, "store", "RelayPassword", "0xA05300F3" }, { err.status, err.stage, err.field, err.ErrorCode })
    assert.truthy(err.Message:find("KFSMTP_KEY_FILE", 1, true), err.Message)
    assert.are.equal("0", server:psql("SELECT count(*) FROM kfsmtp_profile"))
    -- With the key: sealed in the row, and not in the server's log either.
    assert(store:update(profile(), KEY))
    assert.falsy(server:psql("SELECT profile FROM kfsmtp_profile"):find(PASSWORD, 1, true))
    assert.falsy(server:log():find(PASSWORD, 1, true), "the password is in the server's log")
    -- An anonymous profile has no secret: no key needed.
    assert(store:update({ Host = "localhost", SenderAccount = "kf@example.com" }))
  end)

  it("refuses a row that does not decode, and never overwrites it", function()
    local store = kfsmtp.open(node_uri())
    assert(store:update(profile(), KEY))
    server:psql("UPDATE kfsmtp_profile SET profile = '[1,2' , version = version + 1 WHERE id = 1")
    local other = kfsmtp.open(node_uri())
    local p, err = other:get()
    assert.is_nil(p)
    assert.are.same({ 500, "store" }, { err.status, err.stage })
    local _, err2 = other:update(profile(), KEY)
    assert.are.equal(500, err2.status)
    assert.are.equal("[1,2", server:psql("SELECT profile FROM kfsmtp_profile WHERE id = 1"))
  end)

  it("answers 503 within connect_timeout_ms while the server is down, and recovers by itself", function()
    local store = kfsmtp.open(node_uri())
    assert(store:update(profile(), KEY))
    assert(store:get())
    server:stop()
    kfsmtp.configure { connect_timeout_ms = 1000 }
    -- One finally: busted keeps only the last one given.
    finally(function()
      kfsmtp.configure { connect_timeout_ms = 10000 }
      server:restart()
    end)
    for _, call in ipairs { function() return store:get() end, function() return store:update(profile(), KEY) end,
        function() return store:test(H.with(profile(), { RelayPassword = H.NONE, TestRecipient = "ops@example.com" })) end } do
      local t0 = H.now_ms()
      local res, err = call()
      assert.is_nil(res)
      assert.are.same({ 503, "store", "0xA05300F2" }, { err.status, err.stage, err.ErrorCode }, err.Message)
      assert.truthy(err.Message:find("127.0.0.1", 1, true), err.Message)
      assert.falsy(err.Message:find(server.password, 1, true))
      assert.truthy(H.now_ms() - t0 < 2000, "answered after " .. (H.now_ms() - t0) .. " ms")
    end
    server:restart()
    local p = assert(store:get())
    assert.are.equal("KF", p.SenderName)
    assert(store:update(profile { SenderName = "after restart" }, KEY))
    assert.are.equal("after restart", assert(kfsmtp.open(node_uri()):get()).SenderName)
  end)

  it("serves the cached profile while the server is stalled, and a write times out with 503", function()
    local store = kfsmtp.open(node_uri())
    assert(store:update(profile(), KEY))
    assert(store:get())
    H.sleep(0.05)
    assert(store:get())
    server:stall()
    kfsmtp.configure { connect_timeout_ms = 500 }
    finally(function()
      kfsmtp.configure { connect_timeout_ms = 10000 }
      server:resume()
    end)
    local t0 = H.now_ms()
    for _ = 1, 100 do assert.are.equal("KF", assert(store:get()).SenderName) end
    assert.truthy(H.now_ms() - t0 < 200, "get() waited on the stalled server")
    t0 = H.now_ms()
    local p, err = store:update(profile { SenderName = "stalled" }, KEY)
    assert.is_nil(p)
    assert.are.equal(503, err.status, err.Message)
    assert.truthy(H.now_ms() - t0 < 1500)
    server:resume()
    assert(store:update(profile { SenderName = "resumed" }, KEY))
    assert.are.equal("resumed", assert(kfsmtp.open(node_uri()):get()).SenderName)
  end)

  it("serialises 8 writer processes on each of two nodes: every read whole, the last write current", function()
    assert(kfsmtp.open(node_uri()):update(profile(), KEY))
    local first = tonumber(server:psql("SELECT version FROM kfsmtp_profile WHERE id = 1"))
    local script = H.tmpdir() .. "/writer.lua"
    H.write(script, ([[
      package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
      package.cpath = %q .. "/?.so;" .. package.cpath
      local kfsmtp = require "kfsmtp"
      local store = kfsmtp.open(arg[1])
      local key = { key_file = arg[3] }
      local base = { Host = "localhost", Port = 2525, UseSSL = true, RelayAuthenticationType = 2,
        RelayUsername = "svc", RelayPassword = "pw", SenderAccount = "kf@example.com" }
      for i = 1, 15 do
        base.SenderName = ("w%%s-%%d"):format(arg[2], i)
        base.Port = 2000 + i
        assert(store:update(base, key))
        local p = assert(store:get())
        -- A read is one whole profile: its name and port belong together.
        local w, n = p.SenderName:match("^w(%%d+)%%-(%%d+)$")
        assert(w and p.Port == 2000 + tonumber(n), "torn: " .. tostring(p.SenderName) .. " " .. tostring(p.Port))
      end
      print("ok")
    ]]):format(H.build))
    local outs = {}
    -- Two nodes: two store URIs, 8 processes on each.
    local nodes = { node_uri(), node_uri() }
    for w = 1, 16 do
      outs[w] = H.tmpdir() .. "/out"
      H.exec(("%s %s %s %d %s > %s 2>&1 &"):format(H.lua_run, H.q(script), H.q(nodes[w % 2 + 1]), w, H.q(KEY.key_file),
        H.q(outs[w])))
    end
    local deadline = H.now_ms() + 60000
    for w = 1, 16 do
      while not (H.read(outs[w]) or ""):find("\n", 1, true) do
        assert(H.now_ms() < deadline, "writer " .. w .. " did not finish")
        H.sleep(0.05)
      end
      assert.are.equal("ok\n", H.read(outs[w]), "writer " .. w)
    end
    -- 16 writers x 15 updates on top of the first: every one counted.
    local version = tonumber(server:psql("SELECT version FROM kfsmtp_profile WHERE id = 1"))
    assert.are.equal(first + 16 * 15, version)
    local last = cjson.decode(server:psql("SELECT profile FROM kfsmtp_profile WHERE id = 1"))
    assert.falsy(server:psql("SELECT profile FROM kfsmtp_profile WHERE id = 1"):find('"pw"', 1, true))
    assert.are.equal(last.SenderName, assert(kfsmtp.open(node_uri()):get()).SenderName)
  end)

  it("is left as it was by a client killed in the middle of an update, and the lock goes with it", function()
    local store = kfsmtp.open(node_uri())
    assert(store:update(profile { SenderName = "before the killed client" }, KEY))
    -- A client that took the row's lock (as an update does before it
    -- writes) and died before COMMIT.
    local script, out = H.tmpdir() .. "/client.lua", H.tmpdir() .. "/out"
    H.write(script, ([[
      package.cpath = %q .. "/?.so;" .. package.cpath
      local core = require "kfsmtp.core"
      local conn = assert(core.pg_connect { uri = arg[1] })
      assert(conn:begin_locked())
      io.write("locked\n") io.flush()
      os.execute("sleep 60")
    ]]):format(H.build))
    H.exec(("%s %s %s > %s 2>&1 & echo $! > %s.pid"):format(H.lua_run, H.q(script), H.q(node_uri()), H.q(out), H.q(out)))
    local t0 = H.now_ms()
    while not (H.read(out) or ""):find("locked", 1, true) do
      assert(H.now_ms() - t0 < 10000, "the client did not take the lock: " .. (H.read(out) or ""))
      H.sleep(0.02)
    end
    H.exec("kill -9 " .. H.read(out .. ".pid"):match("%d+"))
    assert.are.equal("before the killed client",
      cjson.decode(server:psql("SELECT profile FROM kfsmtp_profile WHERE id = 1")).SenderName)
    -- The server ends the dead client's transaction: its lock is free.
    assert(store:update(profile { SenderName = "after the killed client" }, KEY))
    assert.are.equal("after the killed client", assert(kfsmtp.open(node_uri()):get()).SenderName)
  end)

  it("keeps, after the server is killed (SIGKILL) mid-updates, exactly what was committed, the last one current", function()
    -- The suite's server commits asynchronously for speed; an operator's
    -- does not, and this is about what a commit promises.
    server:psql("ALTER DATABASE kfsmtp SET synchronous_commit = on")
    finally(function() server:psql("ALTER DATABASE kfsmtp RESET synchronous_commit") end)
    local script = H.tmpdir() .. "/writer.lua"
    local log = H.tmpdir() .. "/committed"
    H.write(script, ([[
      package.path = "lua/?.lua;" .. package.path
      package.cpath = %q .. "/?.so;" .. package.cpath
      local kfsmtp = require "kfsmtp"
      kfsmtp.configure { connect_timeout_ms = 1000 }
      local store = kfsmtp.open(arg[1])
      local out = assert(io.open(arg[2], "w"))
      for i = 1, 100000 do
        local p = store:update { Host = "localhost", SenderAccount = "kf@example.com", SenderName = "n" .. i }
        if not p then break end
        -- Written only after update returned success.
        out:write(i, "\n") out:flush()
      end
      out:close()
    ]]):format(H.build))
    H.exec(("%s %s %s %s > /dev/null 2>&1 &"):format(H.lua_run, H.q(script), H.q(node_uri()), H.q(log)))
    local t0 = H.now_ms()
    while #(H.read(log) or "") < 40 do
      assert(H.now_ms() - t0 < 20000, "the writer made no progress")
      H.sleep(0.02)
    end
    server:kill9()
    H.sleep(1.5) -- the writer sees the failure and stops
    server:restart()
    local last = 0
    for n in (H.read(log) or ""):gmatch("(%d+)\n") do last = tonumber(n) end
    assert.truthy(last > 5)
    local row = cjson.decode(server:psql("SELECT profile FROM kfsmtp_profile WHERE id = 1"))
    -- The last update that returned success is current; at most the one in
    -- flight when the server died (committed, but its answer lost) is newer.
    local stored = tonumber(row.SenderName:match("^n(%d+)$"))
    assert.truthy(stored == last or stored == last + 1, ("stored n%d, last success n%d"):format(stored, last))
  end)

  it("is made ready by `kfsmtp store init` and used by the CLI, never showing the password", function()
    server:psql("DROP TABLE IF EXISTS kfsmtp_profile")
    -- The password in the URI itself: it must not come back anywhere.
    local uri = ("postgresql://kfsmtp:%s@127.0.0.1:%d/kfsmtp"):format(server.password, server.port)
    local function run(args, env)
      local dir = H.tmpdir()
      H.exec(("%s %s bin/kfsmtp %s > %s/out 2> %s/err; echo $? > %s/rc"):format(env or "", H.lua_run, args, dir, dir, dir))
      return H.read(dir .. "/out") or "", H.read(dir .. "/err") or "", tonumber(H.read(dir .. "/rc"))
    end
    local _, err, rc = run("store init --store " .. H.q(uri))
    assert.are.equal(0, rc, err)
    assert.are.equal("kfsmtp_profile", server:psql("SELECT to_regclass('kfsmtp_profile')"))
    local out
    out, err, rc = run(("update --store %s --key-file %s --host localhost --sender-account kf@example.com --auth-type 2 --username svc --password-env PGPW"):format(
      H.q(uri), H.q(KEY.key_file)), "PGPW=" .. H.q(PASSWORD))
    assert.are.equal(0, rc, err)
    assert.truthy(err:find("stored the profile in postgresql://kfsmtp@127.0.0.1", 1, true), err)
    for _, text in ipairs { out, err, (run("get --store " .. H.q(uri))) } do
      assert.falsy(text:find(server.password, 1, true))
      assert.falsy(text:find(PASSWORD, 1, true))
    end
    -- A wrong password: a 500 naming the database, not the password.
    local bad = ("postgresql://kfsmtp:Not-The-Pg-Pw-77@127.0.0.1:%d/kfsmtp"):format(server.port)
    out, err, rc = run("get --store " .. H.q(bad))
    assert.are.equal(4, rc, err)
    assert.falsy((out .. err):find("Not-The-Pg-Pw-77", 1, true))
    assert.truthy(err:find("127.0.0.1", 1, true), err)
  end)

  describe("over HTTP, two nginx nodes on one database", function()
    local a, b
    local ADMIN = "admin:Admin-Pg-Passw0rd"
    setup(function()
      local users = { { "admin", "Admin-Pg-Passw0rd", { "all" } } }
      local extra = ("key_file = %q, connect_timeout_ms = 1500,"):format(KEY.key_file)
      a = H.start_nginx { users = users, store = server.uri, extra = extra }
      b = H.start_nginx { users = users, store = server.uri, extra = extra }
    end)
    teardown(function() a:stop() b:stop() end)

    local function put(node, name)
      return node:request { method = "PUT", user = ADMIN, body = cjson.encode(profile { SenderName = name }) }
    end

    it("shows a PUT on one node to a GET on the other within the bound", function()
      local status, body = put(a, "via A")
      assert.are.equal(200, status, body)
      local t0 = H.now_ms()
      while true do
        local st, got = b:request { user = ADMIN }
        assert.are.equal(200, st, got)
        if cjson.decode(got).SenderName == "via A" then break end
        assert(H.now_ms() - t0 < 1000, "node B did not see node A's PUT within 1 s")
      end
      print(("\n  node B saw node A's PUT after %.0f ms (curl round trips included)"):format(H.now_ms() - t0))
      assert.falsy(server:psql("SELECT profile FROM kfsmtp_profile"):find(PASSWORD, 1, true))
    end)

    it("keeps answering GET while the database is stalled, and answers a PUT with a JSON 503", function()
      assert.are.equal(200, (put(a, "before the stall")))
      assert.are.equal(200, (b:request { user = ADMIN }))
      H.sleep(0.05)
      server:stall()
      finally(function() server:resume() end)
      local t0 = H.now_ms()
      for _ = 1, 20 do
        local st, got = b:request { user = ADMIN }
        assert.are.equal(200, st, got)
        assert.are.equal("before the stall", cjson.decode(got).SenderName)
      end
      local per_get = (H.now_ms() - t0) / 20
      assert.truthy(per_get < 200, ("a GET took %.0f ms on average while stalled"):format(per_get))
      -- A PUT must wait on the stalled database: serve{}'s
      -- connect_timeout_ms (1500 ms here) bounds it.
      t0 = H.now_ms()
      local st, got = a:request { method = "PUT", user = ADMIN, body = cjson.encode(profile { SenderName = "stalled" }) }
      assert.are.equal(503, st, got)
      assert.truthy(H.now_ms() - t0 < 2500, ("the PUT answered after %.0f ms"):format(H.now_ms() - t0))
      server:resume()
      server:stop()
      st, got = a:request { method = "PUT", user = ADMIN, body = cjson.encode(profile { SenderName = "down" }) }
      assert.are.equal(503, st, got)
      local doc = cjson.decode(got)
      assert.are.equal("0xA05300F2", doc.ErrorCode)
      assert.falsy(got:find(server.password, 1, true))
      server:restart()
      assert.are.equal(200, (put(a, "after")))
    end)
  end)
end)
