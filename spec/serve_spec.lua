-- make serve (scripts/serve.sh): the administrator's password reaches
-- `bin/kfsmtp user-add` and nothing else it starts; a client written from
-- Keyfactor's version 2 models works against it unchanged.
local H = require "helpers"
local cjson = require "cjson"

local PASSWORD = "Serve-Admin-Passw0rd-4711"

-- Starts scripts/serve.sh in dir (PATH_PREFIX first on PATH, if given;
-- ENV before it; the store dir/store.json unless STORE) and waits until it
-- is ready --> run folder, port, serve.sh's pid (the caller stops it: a
-- case has one finally).
local function start_serve(dir, path_prefix, env, store)
  local run, port = dir .. "/run", H.closed_port()
  H.exec(("%s%s%sKFSMTP_ADMIN_PASSWORD=%s KFSMTP_SERVE_DIR=%s KFSMTP_STORE=%s PORT=%d sh scripts/serve.sh > %s 2>&1 & echo $! > %s"):format(
    H.plain, path_prefix and ("PATH=%s:\"$PATH\" "):format(H.q(path_prefix)) or "", env or "", H.q(PASSWORD), H.q(run),
    H.q(store or (dir .. "/store.json")), port, H.q(dir .. "/out"), H.q(dir .. "/pid")))
  local serve_pid = tonumber(H.read(dir .. "/pid"))
  local deadline = H.now_ms() + 15000
  while not (H.read(dir .. "/out") or ""):find("Press Ctrl-C", 1, true) do
    assert(H.now_ms() < deadline, "serve.sh did not start: " .. (H.read(dir .. "/out") or ""))
    H.sleep(0.05)
  end
  return run, port, serve_pid
end

describe("make serve", function()
  it("keeps KFSMTP_ADMIN_PASSWORD out of nginx's and the capture server's environment", function()
    local dir = H.tmpdir()
    -- nginx writes its process title over the environment that /proc
    -- shows, so an nginx found first on PATH records what it was given.
    local real = (H.sh("command -v nginx"):gsub("%s+$", ""))
    H.exec("mkdir " .. H.q(dir .. "/bin"))
    H.write(dir .. "/bin/nginx", ("#!/bin/sh\nenv > %s/nginx-env.$$\nexec %s \"$@\"\n"):format(H.q(dir), H.q(real)))
    H.exec("chmod +x " .. H.q(dir .. "/bin/nginx"))
    local run, port, serve_pid = start_serve(dir, dir .. "/bin")
    finally(function() H.exec("kill " .. serve_pid .. " 2>/dev/null") end)
    -- Without a key file, it says once that secrets are stored in clear,
    -- and how to change that.
    local said = H.read(dir .. "/out")
    assert.truthy(said:find("secrets at rest: NOT encrypted", 1, true), said)
    assert.truthy(said:find("bin/kfsmtp keygen FILE", 1, true) and said:find("KFSMTP_KEY_FILE=FILE", 1, true), said)
    local master, smtpd = tonumber(H.read(run .. "/logs/nginx.pid")), tonumber(H.read(run .. "/smtp/pid"))
    local envs = { ["the capture server"] = H.read(("/proc/%d/environ"):format(smtpd)) }
    for name in H.sh("ls " .. H.q(dir)):gmatch("nginx%-env%.%d+") do envs[name] = H.read(dir .. "/" .. name) end
    assert.are.equal(2, #H.keys(envs), "nginx started once, and the capture server")
    for who, env in pairs(envs) do
      assert.truthy(env:find("PORT=", 1, true), who .. "'s environment was read")
      assert.falsy(env:find(PASSWORD, 1, true), "the password is in the environment of " .. who)
      assert.falsy(env:find("KFSMTP_ADMIN_PASSWORD", 1, true), who)
      assert.falsy(env:find("KFSMTP_USER_PASSWORD", 1, true), who)
    end
    -- user-add got it: the administrator signs in with it.
    local status = H.sh(("%scurl -s -o /dev/null -w '%%{http_code}' -u %s -H 'X-Keyfactor-Requested-With: x' http://127.0.0.1:%d/KeyfactorAPI/SMTP"):format(
      H.plain, H.q("admin:" .. PASSWORD), port))
    assert.are.equal("200", status)
    -- Ctrl-C (TERM here) stops nginx and the capture server too.
    H.exec("kill " .. serve_pid)
    local deadline = H.now_ms() + 5000
    while H.exists(("/proc/%d/stat"):format(master)) or H.exists(("/proc/%d/stat"):format(smtpd)) do
      assert(H.now_ms() < deadline, "serve.sh left its servers running")
      H.sleep(0.05)
    end
  end)

  it("serves a version 2 client unchanged: GET, PUT and Test, with a stored secret and with a reference", function()
    -- Provider 2 (env) for a variable whose value is not the relay's
    -- password: a test with it must fail at auth, which shows the value
    -- reached the relay through nginx.
    local run, port, serve_pid = start_serve(H.tmpdir(), nil, "KFSMTP_SECRET_ENV=KFSMTP_SERVE_PW KFSMTP_SERVE_PW=not-the-password ")
    finally(function() H.exec("kill " .. serve_pid .. " 2>/dev/null") end)
    local smtp_port = tonumber(H.read(run .. "/smtp/port"))
    local relay_password = (H.read(run .. "/secrets/relay"):gsub("\n$", ""))
    -- As Keyfactor's Go client sends them (x-keyfactor-api-version: 2,
    -- bodies from SMTPSMTPRequest and SMTPSMTPTestRequest).
    local function call(method, path, body)
      local out_dir = H.tmpdir()
      H.write(out_dir .. "/body", body and cjson.encode(body) or "")
      local status = H.sh(("%scurl -s -o %s -w '%%{http_code}' -u %s -H 'X-Keyfactor-Requested-With: APIClient' -H 'x-keyfactor-api-version: 2' -H 'Content-Type: application/json' -X %s %s http://127.0.0.1:%d/KeyfactorAPI%s"):format(
        H.plain, H.q(out_dir .. "/out"), H.q("admin:" .. PASSWORD), method, body and ("--data-binary @" .. H.q(out_dir .. "/body")) or "",
        port, path))
      return tonumber(status), H.read(out_dir .. "/out") or ""
    end
    local profile = { Host = "127.0.0.1", Port = smtp_port, UseSSL = false, RelayAuthenticationType = 2,
      RelayUsername = { SecretValue = "svc" }, SenderAccount = "keyfactor@example.com", SenderName = "Keyfactor Command" }
    for round, password in ipairs { { SecretValue = relay_password }, { Provider = 1, Parameters = { Path = "relay" } } } do
      profile.RelayPassword = password
      local status, body = call("PUT", "/SMTP", profile)
      assert.are.equal(200, status, body)
      assert.falsy(body:find(relay_password, 1, true))
      status, body = call("GET", "/SMTP")
      assert.are.equal(200, status, body)
      assert.are.equal(round == 2 and 1 or cjson.null, cjson.decode(body).RelayPassword.Provider)
      local test = {}
      for k, v in pairs(profile) do test[k] = v end
      test.RelayPassword, test.TestRecipient = nil, "ops@example.com"
      status, body = call("POST", "/SMTP/Test", test)
      assert.are.same({ 200, "" }, { status, body })
      local meta = cjson.decode(H.read(("%s/smtp/msg-%d.json"):format(run, round)))
      assert.are.equal("svc", meta.auth_login)
    end
    profile.RelayPassword = { Provider = 2, Parameters = { Name = "KFSMTP_SERVE_PW" } }
    assert.are.equal(200, (call("PUT", "/SMTP", profile)))
    local test = {}
    for k, v in pairs(profile) do test[k] = v end
    test.RelayPassword, test.TestRecipient = nil, "ops@example.com"
    local status, body = call("POST", "/SMTP/Test", test)
    assert.are.equal(502, status, body)
    assert.are.equal("0xA0530050", cjson.decode(body).ErrorCode, body)
    assert.falsy(body:find("not-the-password", 1, true))
  end)

  it("seals the stored password with KFSMTP_KEY_FILE, which reaches nginx's workers as key_file", function()
    local dir = H.tmpdir()
    local key = dir .. "/smtp.key"
    local key_id = assert(require("kfsmtp.core").key_generate { path = key })
    local run, port, serve_pid = start_serve(dir, nil, "KFSMTP_KEY_FILE=" .. H.q(key) .. " ")
    finally(function() H.exec("kill " .. serve_pid .. " 2>/dev/null") end)
    local said = H.read(dir .. "/out")
    assert.truthy(said:find("sealed with the key file " .. key, 1, true), said)
    assert.falsy(said:find("NOT encrypted", 1, true), said)
    assert.truthy(H.read(run .. "/nginx.conf"):find('key_file = "' .. key .. '"', 1, true))
    local smtp_port = tonumber(H.read(run .. "/smtp/port"))
    local relay_password = (H.read(run .. "/secrets/relay"):gsub("\n$", ""))
    local profile = { Host = "127.0.0.1", Port = smtp_port, UseSSL = false, RelayAuthenticationType = 2,
      RelayUsername = "svc", RelayPassword = relay_password, SenderAccount = "keyfactor@example.com" }
    local function call(method, path, body)
      local out_dir = H.tmpdir()
      H.write(out_dir .. "/body", cjson.encode(body))
      local status = H.sh(("%scurl -s -o %s -w '%%{http_code}' -u %s -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' -X %s --data-binary @%s http://127.0.0.1:%d/KeyfactorAPI%s"):format(
        H.plain, H.q(out_dir .. "/out"), H.q("admin:" .. PASSWORD), method, H.q(out_dir .. "/body"), port, path))
      return tonumber(status), H.read(out_dir .. "/out") or ""
    end
    local status, body = call("PUT", "/SMTP", profile)
    assert.are.equal(200, status, body)
    local text = H.read(dir .. "/store.json")
    assert.falsy(text:find(relay_password, 1, true), "the store holds the password in clear")
    assert.are.equal(key_id, cjson.decode(text).RelayPassword.KeyId)
    profile.RelayPassword, profile.TestRecipient = nil, "ops@example.com"
    status, body = call("POST", "/SMTP/Test", profile)
    assert.are.equal(200, status, body)
    assert.are.equal("svc", cjson.decode(H.read(run .. "/smtp/msg-1.json")).auth_login)
  end)

  it("runs two nodes on one PostgreSQL store: a PUT on one is seen by a GET on the other #postgres", function()
    local server = require("pg").start { conf = { max_connections = 100 } }
    local pids = {}
    finally(function()
      for _, pid in ipairs(pids) do H.exec("kill " .. pid .. " 2>/dev/null") end
      H.sleep(0.5)
      server:destroy()
    end)
    local key = H.tmpdir() .. "/key"
    assert(require("kfsmtp.sealing").keygen(key))
    local env = ("KFSMTP_KEY_FILE=%s "):format(H.q(key))
    local ports = {}
    for i = 1, 2 do
      local _, port, pid = start_serve(H.tmpdir(), nil, env, server.uri)
      ports[i], pids[i] = port, pid
    end
    local function call(port, method, body)
      local out_dir = H.tmpdir()
      H.write(out_dir .. "/body", body and cjson.encode(body) or "")
      local status = H.sh(("%scurl -s -o %s -w '%%{http_code}' -u %s -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' -X %s %s http://127.0.0.1:%d/KeyfactorAPI/SMTP"):format(
        H.plain, H.q(out_dir .. "/out"), H.q("admin:" .. PASSWORD), method, body and ("--data-binary @" .. H.q(out_dir .. "/body")) or "", port))
      return tonumber(status), H.read(out_dir .. "/out") or ""
    end
    local status, body = call(ports[1], "PUT", { Host = "127.0.0.1", Port = 2525, RelayAuthenticationType = 2,
      RelayUsername = "svc", RelayPassword = "Serve-Cluster-Pw-9", SenderAccount = "kf@example.com", SenderName = "node 1" })
    assert.are.equal(200, status, body)
    local t0 = H.now_ms()
    repeat
      status, body = call(ports[2], "GET")
      assert.are.equal(200, status, body)
      assert(H.now_ms() - t0 < 1000, "the other node did not see the PUT within 1 s")
    until cjson.decode(body).SenderName == "node 1"
    -- Sealed with the key file both nodes were given: not in the row.
    assert.falsy(server:psql("SELECT profile FROM kfsmtp_profile"):find("Serve-Cluster-Pw-9", 1, true))
  end)
end)
