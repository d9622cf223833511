-- `make demo-cluster` (scripts/demo_cluster.lua, run here directly: make
-- check has built both modules): its exit status, the lines a person reads
-- at each step, and that nothing it started is left running, neither after
-- a run that succeeded nor after the script was killed halfway. Run once,
-- in the Lua 5.4 pass (nginx's LuaJIT is the same either way).
local H = require "helpers"
local socket = require "socket"

describe("make demo-cluster #postgres #democluster", function()
  -- As make demo-cluster runs it.
  local SCRIPT = H.plain .. "lua5.4 scripts/demo_cluster.lua"

  -- The folders and ports a run printed.
  local function started(out)
    local s = { dirs = {}, ports = {} }
    local function dir(d) if d then s.dirs[#s.dirs + 1] = d end end
    local function port(p) if p then s.ports[#s.ports + 1] = tonumber(p) end end
    dir(out:match("run folder: (%S+)"))
    local pg_port, pg_dir = out:match("PostgreSQL [%d.]+ on 127%.0%.0%.1:(%d+), data in (%S+)")
    port(pg_port)
    dir(pg_dir)
    local smtp_port, smtp_dir = out:match("\n   127%.0%.0%.1:(%d+) %(folder (%S+)%), user svc")
    port(smtp_port)
    dir(smtp_dir)
    for p, d in out:gmatch("node %a: http://127%.0%.0%.1:(%d+)/KeyfactorAPI   %(nginx %-p (%S+),") do
      port(p)
      dir(d)
    end
    return s
  end

  -- Processes alive (zombies are not) whose command line names a folder
  -- of the run; ports something still listens on; folders still there.
  local function leftovers(s)
    local left = {}
    local ps = H.sh("ps -eo stat=,pid=,args=")
    for line in ps:gmatch("[^\n]+") do
      local stat = line:match("^%s*(%S+)")
      if stat:sub(1, 1) ~= "Z" then
        for _, d in ipairs(s.dirs) do
          if line:find(d, 1, true) then left[#left + 1] = "process: " .. line end
        end
      end
    end
    for _, p in ipairs(s.ports) do
      local c = socket.tcp()
      c:settimeout(0.2)
      if c:connect("127.0.0.1", p) then left[#left + 1] = "listening: 127.0.0.1:" .. p end
      c:close()
    end
    for _, d in ipairs(s.dirs) do
      if select(2, H.sh("test -e " .. H.q(d))) then
        left[#left + 1] = "folder: " .. d
      end
    end
    return left
  end

  local function wait_clean(s, ms)
    local deadline = H.now_ms() + ms
    local left = leftovers(s)
    while #left > 0 and H.now_ms() < deadline do
      H.sleep(0.1)
      left = leftovers(s)
    end
    return left
  end

  it("runs the main job on two nodes sharing PostgreSQL, says so step by step, exits 0 and leaves nothing running", function()
    local out, ok, code = H.sh(SCRIPT)
    assert(ok, ("exit status %s:\n%s"):format(tostring(code), out))
    local s = started(out)
    assert.are.equal(4, #s.ports, out)
    assert.are.equal(5, #s.dirs, out)
    -- Two nodes, two nginx folders and ports, one database.
    local a, b = out:match("node A: http://127%.0%.0%.1:(%d+)"), out:match("node B: http://127%.0%.0%.1:(%d+)")
    assert.truthy(a and b and a ~= b, out)
    assert.truthy(out:find('each serves serve{ store = "postgresql://kfsmtp@127.0.0.1:', 1, true), out)
    -- The administrator on both, with the CLI.
    local _, adds = out:gsub("bin/kfsmtp user%-add admin %-%-users%-file", "")
    assert.are.equal(2, adds, out)
    -- PUT through A with the password (never printed), GET through B.
    assert.truthy(out:find('"RelayPassword":"…"', 1, true), out)
    assert.truthy(out:find("-X PUT -H 'Content-Type: application/json' --data-binary @", 1, true), out)
    assert.truthy(out:find(":" .. a .. "/KeyfactorAPI/SMTP\n   200 {", 1, true), out)
    local seen = tonumber(out:match("node B answered with it ([%d.]+) ms after node A answered the PUT"))
    assert.truthy(seen and seen < 5000, out)
    assert.truthy(out:find("the same profile through both nodes: yes", 1, true), out)
    -- The test through B logged in with the password stored through A.
    assert.truthy(out:find(":" .. b .. "/KeyfactorAPI/SMTP/Test\n   200 {", 1, true), out)
    assert.falsy(out:match("/SMTP/Test\n   200 ([^\n]*)"):find("RelayPassword", 1, true))
    assert.truthy(out:find("the capture server got message 1 (" .. s.dirs[3] .. "/msg-1.eml)", 1, true), out)
    assert.truthy(out:find("AUTH as svc, MAIL FROM:<kfsmtp-cluster@example.com>, RCPT TO:<operator@example.com>", 1, true), out)
    -- The row: sealed with the key file's key.
    local key_id = out:match("key id (%x+), file mode 0600")
    assert.truthy(key_id, out)
    assert.truthy(out:find('RelayPassword = {Cipher = "AES-256-GCM", KeyId = "' .. key_id .. '", Sealed = "', 1, true), out)
    assert.truthy(out:find("the relay password in the row: no; in PostgreSQL's log (every statement logged): no", 1, true), out)
    -- Then everything stopped, before the script ended.
    assert.truthy(out:find("stopped: nginx node B, nginx node A, the capture server, PostgreSQL; folders removed", 1, true), out)
    assert.truthy(out:find("\n== demo%-cluster OK\n$"), out)
    assert.are.same({}, leftovers(s))
  end)

  it("leaves nothing running when it is killed halfway (its watchdog and pg.lua's stop the rest)", function()
    local dir = H.tmpdir()
    local log = dir .. "/out"
    local pid = tonumber((H.sh(("%s > %s 2>&1 & echo $!"):format(SCRIPT, H.q(log)))):match("%d+"))
    finally(function() H.exec("kill -9 " .. pid .. " 2>/dev/null; rm -rf " .. H.q(dir)) end)
    local deadline = H.now_ms() + 30000
    while not (H.read(log) or ""):find("== 6.", 1, true) do
      assert(H.now_ms() < deadline and H.running(pid), "the demo did not reach step 6:\n" .. (H.read(log) or ""))
      H.sleep(0.02)
    end
    local s = started(H.read(log))
    assert.are.equal(4, #s.ports, H.read(log))
    assert.are.equal(5, #s.dirs, H.read(log))
    H.exec("kill -TERM " .. pid)
    assert.are.same({}, wait_clean(s, 10000))
  end)
end)
