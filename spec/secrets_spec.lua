-- The relay password appears nowhere but the store: not in results, errors,
-- transcripts, CLI output, or any process's command line.
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local SECRET = "Sec-" .. tostring(os.time()) .. "-Zq9"
local USER = "svc"

describe("the relay password", function()
  local srv, silent, store_path
  setup(function()
    srv = H.start_smtp { mode = "plain", auth = USER .. ":" .. SECRET, auth_plaintext = true }
    silent = H.start_smtp { behaviour = "silent" }
    store_path = H.store_path()
  end)
  teardown(function() srv:stop() silent:stop() end)

  local function req(over)
    local t = { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
      TestRecipient = "ops@example.com", RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end

  it("is in no Lua result, error or transcript", function()
    local store = kfsmtp.open(store_path)
    local seen = {}
    seen[#seen + 1] = { store:update(req()) }
    seen[#seen + 1] = { store:get() }
    seen[#seen + 1] = { store:test(req(), { transcript = true }) }
    seen[#seen + 1] = { store:test(req { RelayPassword = SECRET .. "-wrong" }, { transcript = true }) }
    seen[#seen + 1] = { store:test(req { RelayPassword = nil }, { transcript = true }) } -- the stored one
    seen[#seen + 1] = { store:test(req { Port = silent.port }, { transcript = true, connect_timeout_ms = 500 }) }
    seen[#seen + 1] = { store:update(req { Host = "bad host" }) }
    assert.is_nil(seen[3][2].Message, "the good test delivered")
    assert.are.equal("auth", seen[4][2].stage, "the wrong password was refused")
    assert.is_nil(seen[5][2].Message, "the stored password was used")
    for i, values in ipairs(seen) do
      assert.is_false(H.mentions(values, SECRET), "result " .. i)
      for _, v in pairs(values) do
        if type(v) == "table" then assert.falsy(tostring(v):find(SECRET, 1, true)) end
      end
    end
    assert.truthy(H.read(store_path):find(SECRET, 1, true), "the store holds it")
  end)

  it("is in no CLI output, and in no process's command line while a test runs", function()
    local dir = H.tmpdir()
    H.write(dir .. "/pw", SECRET .. "\n")
    local env = ("KFSMTP_STORE=%s"):format(H.q(dir .. "/store.json"))
    local cli = ("%s %s bin/kfsmtp"):format(env, H.lua_run)
    local out = H.sh(("%s update --host 127.0.0.1 --port %d --auth-type 2 --username %s --password-file %s --sender-account kf@example.com"):format(
      cli, srv.port, USER, H.q(dir .. "/pw")))
    out = out .. H.sh(cli .. " get")
    out = out .. H.sh(cli .. " test --recipient ops@example.com --transcript --info")
    out = out .. H.sh(("KFSMTP_RELAY_PASSWORD=%s %s test --recipient ops@example.com --transcript"):format(H.q(SECRET .. "x"), cli))
    assert.truthy(out:find("accepted the test message", 1, true), out)
    assert.truthy(out:find("C: AUTH", 1, true), out)
    assert.falsy(out:find(SECRET, 1, true), out)
    -- A test held by a silent server: look at every process's argv meanwhile.
    H.exec(("KFSMTP_RELAY_PASSWORD=%s %s test --port %d --recipient ops@example.com --connect-timeout-ms 1500 > /dev/null 2>&1 &"):format(
      H.q(SECRET), cli, silent.port))
    H.sleep(0.4)
    local argv = H.sh("for p in /proc/[0-9]*; do printf \"%s: \" $p; tr \"\\\\0\" \" \" < $p/cmdline; echo; done 2>/dev/null")
    assert.truthy(argv:find("bin/kfsmtp test --port", 1, true), "the CLI was running")
    for line in argv:gmatch("[^\n]+") do assert.falsy(line:find(SECRET, 1, true), line) end
  end)
end)
