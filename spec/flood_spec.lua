-- The HTTP API under load: a flood of wrong Basic credentials (wrk, on
-- loopback) never turns a good request into a 401 or a 500; a wrong
-- password costs the same for a known and an unknown name; worker threads
-- run short answers 503 with Retry-After. KFSMTP_FLOOD_REPORT=1 prints
-- what was measured.
local H = require "helpers"
local cjson = require "cjson"
local mime = require "mime"

local ADMIN = "CORP\\admin:admin-Passw0rd"
local FRESH = 8 -- readers whose password is first checked during the flood
local FLOOD_SECONDS, FLOOD_CONNECTIONS = 5, 200

local function users()
  local list = { { "CORP\\admin", "admin-Passw0rd", { "all" } } }
  for i = 1, FRESH do list[#list + 1] = { "reader" .. i, "reader-Passw0rd-" .. i, { "read" } } end
  return list
end

local function report(fmt, ...)
  if os.getenv("KFSMTP_FLOOD_REPORT") then io.stderr:write(fmt:format(...), "\n") end
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- A wrk script sending wrong passwords for CORP\admin: one thread the same
-- one again and again, the other a different one on every request ("w"
-- and six digits), so that no memory of failures helps.
-- The credentials are "CORP\admin:w" (12 bytes: whole base64 groups) and
-- two 3-digit groups, each encoded alone, so wrk needs no base64 of its own.
local function wrk_script(path)
  local groups = {}
  for k = 0, 999 do groups[#groups + 1] = ("%q"):format((mime.b64(("%03d"):format(k)))) end
  H.write(path, ([[
local prefix = "Basic %s"
local groups = { %s }
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
local n
function request()
  -- The first thread repeats one wrong password, the others vary it.
  n = id == 1 and 0 or (n or id * 499979) + 1
  local a, b = math.floor(n / 1000) %% 1000, n %% 1000
  return wrk.format("GET", "/KeyfactorAPI/SMTP", { Authorization = prefix .. groups[a + 1] .. groups[b + 1],
    ["X-Keyfactor-Requested-With"] = "APIClient" })
end
]]):format((mime.b64("CORP\\admin:w")), table.concat(groups, ",")))
end

describe("a flood of wrong passwords for the administrator", function()
  it("never turns a good request into a 401 or a 500: 200, or 503 with Retry-After", function()
    local srv = H.start_nginx { users = users(), workers = 2 }
    finally(function() srv:stop() end)
    -- The administrator was signed in before the flood (the workers share
    -- what they checked); the readers were not.
    for _ = 1, 6 do assert.are.equal(200, (srv:request { user = ADMIN })) end

    local dir = H.tmpdir()
    wrk_script(dir .. "/flood.lua")
    H.exec(("(%swrk -t2 -c%d -d%ds --timeout 5s -s %s http://127.0.0.1:%d/KeyfactorAPI/SMTP > %s 2>&1; echo done > %s) &"):format(
      H.plain, FLOOD_CONNECTIONS, FLOOD_SECONDS, H.q(dir .. "/flood.lua"), srv.port, H.q(dir .. "/wrk.out"), H.q(dir .. "/wrk.done")))
    H.sleep(0.5) -- the flood is under way

    local outcomes, counts, n = {}, {}, 0
    local deadline = H.now_ms() + (FLOOD_SECONDS + 10) * 1000
    while not H.exists(dir .. "/wrk.done") do
      assert(H.now_ms() < deadline, "wrk did not finish")
      n = n + 1
      local r = (n - 1) % FRESH + 1
      local tries = {
        { what = n <= FRESH and "a reader's first GET" or "a reader's GET", user = ("reader%d:reader-Passw0rd-%d"):format(r, r) },
        { what = "the administrator's PUT", user = ADMIN, method = "PUT",
          body = cjson.encode { Host = "mail.example.com", Port = 2500 + n, SenderAccount = "kf@example.com" } },
      }
      for _, t in ipairs(tries) do
        local status, body, headers = srv:request { user = t.user, method = t.method, body = t.body }
        counts[status] = (counts[status] or 0) + 1
        outcomes[#outcomes + 1] = { what = t.what, status = status, body = body, retry = headers["retry-after"] }
      end
    end

    local wrk_out = H.read(dir .. "/wrk.out") or ""
    local ok = counts[200] or 0
    report("flood: wrk %s req/s (%s non-2xx) for %d s at %d connections; good requests: %d of %d answered 200, %d answered 503",
      wrk_out:match("Requests/sec:%s*([%d.]+)") or "?", wrk_out:match("Non%-2xx or 3xx responses:%s*(%d+)") or "0",
      FLOOD_SECONDS, FLOOD_CONNECTIONS, ok, #outcomes, counts[503] or 0)
    local by_what = {}
    for _, o in ipairs(outcomes) do by_what[#by_what + 1] = o.what .. " " .. tostring(o.status) end
    report("  %s", table.concat(by_what, ", "))
    assert.truthy(wrk_out:find("requests in", 1, true), wrk_out)
    assert.truthy(#outcomes >= 6, "good requests were sent during the flood")
    for _, o in ipairs(outcomes) do
      assert.truthy(o.status == 200 or o.status == 503, ("%s answered %s: %s"):format(o.what, tostring(o.status), o.body))
      if o.status == 503 then
        assert.truthy(o.retry and o.retry:match("^%d+$"), o.what .. ": 503 without Retry-After")
        assert.are.equal("0xA05301F7", cjson.decode(o.body).ErrorCode)
      end
    end
    assert.truthy(ok >= #outcomes * 0.6, ("only %d of %d good requests answered 200"):format(ok, #outcomes))
    -- Once it is over, and the checks the flood queued have drained (503
    -- until then), everyone gets in again, readers included.
    local function settled(user)
      local give_up, status = H.now_ms() + 10000
      repeat
        status = srv:request { user = user }
        if status == 503 then H.sleep(0.2) end
      until status ~= 503 or H.now_ms() > give_up
      return status
    end
    assert.are.equal(200, settled("reader1:reader-Passw0rd-1"))
    assert.are.equal(401, settled("CORP\\admin:w-wrong"))
  end)
end)

describe("a wrong password", function()
  local srv
  setup(function() srv = H.start_nginx { users = users(), workers = 2 } end)
  teardown(function() srv:stop() end)

  -- seconds the server took, as curl measured it, and the status
  local function timed(user)
    local out = H.sh(("%scurl -s -o /dev/null -w '%%{http_code} %%{time_total}' -u %s -H 'X-Keyfactor-Requested-With: x' http://127.0.0.1:%d/KeyfactorAPI/SMTP"):format(
      H.plain, H.q(user), srv.port))
    local status, t = out:match("(%d+) ([%d.]+)")
    return tonumber(t) * 1000, tonumber(status)
  end

  it("takes as long for an unknown name as for a known one", function()
    local known, unknown = {}, {}
    for i = 1, 15 do
      local t, status = timed(("CORP\\admin:wrong-%d"):format(i))
      assert.are.equal(401, status)
      known[#known + 1] = t
      t, status = timed(("CORP\\nobody%d:wrong-%d"):format(i, i))
      assert.are.equal(401, status)
      unknown[#unknown + 1] = t
    end
    local k, u = median(known), median(unknown)
    report("wrong password, median of 15: known name %.1f ms, unknown name %.1f ms", k, u)
    assert.truthy(k > 2, ("a known name's wrong password took %.1f ms: no PBKDF2?"):format(k))
    assert.truthy(math.abs(k - u) <= math.max(0.3 * math.max(k, u), 4),
      ("known %.1f ms, unknown %.1f ms: the name's existence shows"):format(k, u))
  end)

  it("repeated costs no second PBKDF2, in any worker, and the right password still gets in", function()
    local first, again = {}, {}
    for i = 1, 9 do
      local user = ("CORP\\admin:again-%d"):format(i)
      first[#first + 1] = timed(user)
      for _ = 1, 3 do again[#again + 1] = timed(user) end
    end
    local f, a = median(first), median(again)
    table.sort(again)
    report("wrong password, median of 9: first %.1f ms, repeated (27) median %.1f ms, slowest %.1f ms", f, a, again[#again])
    assert.truthy(a < f / 2, ("first %.1f ms, repeated %.1f ms"):format(f, a))
    -- Not one repeat paid for a PBKDF2 of its own (which would take f).
    assert.truthy(again[#again - 2] < f / 2, ("repeats up to %.1f ms"):format(again[#again - 2]))
    assert.are.equal(200, select(2, timed(ADMIN)))
  end)
end)

describe("one caller's parallel first requests", function()
  it("share one password check: all answer 200", function()
    local srv = H.start_nginx { users = users(), workers = 1 }
    finally(function() srv:stop() end)
    local dir = H.tmpdir()
    local cmds = {}
    for _ = 1, 12 do
      cmds[#cmds + 1] = ("%scurl -s -o /dev/null -w '%%{http_code}\\n' -u %s -H 'X-Keyfactor-Requested-With: x' http://127.0.0.1:%d/KeyfactorAPI/SMTP >> %s &"):format(
        H.plain, H.q("reader2:reader-Passw0rd-2"), srv.port, H.q(dir .. "/codes"))
    end
    H.sh(table.concat(cmds, " ") .. " wait")
    local codes = H.read(dir .. "/codes")
    assert.are.equal(12, select(2, codes:gsub("200", "")), codes)
  end)
end)

describe("when no worker thread can be had", function()
  it("a password check, a PUT and a test answer 503 with Retry-After, not 401 or 500", function()
    local silent = H.start_smtp { behaviour = "silent" }
    local srv = H.start_nginx { users = users(), workers = 1, extra = "connect_timeout_ms = 3000," }
    finally(function() srv:stop() silent:stop() end)
    -- One Lua VM for worker threads in all: a hung test holds it.
    srv:stop()
    local deadline = H.now_ms() + 5000
    while H.exists(srv.dir .. "/logs/nginx.pid") do
      assert(H.now_ms() < deadline, "nginx did not stop")
      H.sleep(0.05)
    end
    local conf = H.read(srv.dir .. "/nginx.conf")
    H.write(srv.dir .. "/nginx.conf", (conf:gsub("http {", "http {\n  lua_worker_thread_vm_pool_size 1;", 1)))
    local out, ok = H.sh((H.plain .. "nginx -p %s -c %s/nginx.conf"):format(H.q(srv.dir), H.q(srv.dir)))
    assert(ok, out)
    -- Up again, and the administrator's password known to the new worker.
    while srv:request { user = ADMIN } ~= 200 do
      assert(H.now_ms() < deadline + 5000, "nginx did not start again")
      H.sleep(0.05)
    end
    local test = cjson.encode { Host = "127.0.0.1", Port = silent.port, SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" }
    H.write(srv.dir .. "/test.json", test)
    H.exec(("%scurl -s -o /dev/null -u %s -H 'X-Keyfactor-Requested-With: x' -H 'Content-Type: application/json' --data-binary @%s http://127.0.0.1:%d/KeyfactorAPI/SMTP/Test &"):format(
      H.plain, H.q(ADMIN), H.q(srv.dir .. "/test.json"), srv.port))
    H.sleep(0.5) -- the test waits for a greeting that never comes
    local answers = {
      { srv:request { user = "reader1:reader-Passw0rd-1" } },
      { srv:request { user = ADMIN, method = "PUT", body = cjson.encode { Host = "mail.example.com", SenderAccount = "kf@example.com" } } },
      { srv:request { user = ADMIN, method = "POST", path = "/KeyfactorAPI/SMTP/Test", body = test } },
    }
    for i, a in ipairs(answers) do
      local status, body, headers = a[1], a[2], a[3]
      assert.are.equal(503, status, "request " .. i .. ": " .. body)
      assert.are.equal("1", headers["retry-after"])
      assert.are.equal("0xA05301F7", cjson.decode(body).ErrorCode)
    end
    assert.truthy(H.read(srv.dir .. "/logs/error.log"):find("no available Lua vm", 1, true))
  end)
end)
