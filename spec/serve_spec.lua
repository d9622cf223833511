-- make serve (scripts/serve.sh): the administrator's password reaches
-- `bin/kfsmtp user-add` and nothing else it starts.
local H = require "helpers"

local PASSWORD = "Serve-Admin-Passw0rd-4711"

describe("make serve", function()
  it("keeps KFSMTP_ADMIN_PASSWORD out of nginx's and the capture server's environment", function()
    local dir = H.tmpdir()
    local run, port = dir .. "/run", H.closed_port()
    -- nginx writes its process title over the environment that /proc
    -- shows, so an nginx found first on PATH records what it was given.
    local real = (H.sh("command -v nginx"):gsub("%s+$", ""))
    H.exec("mkdir " .. H.q(dir .. "/bin"))
    H.write(dir .. "/bin/nginx", ("#!/bin/sh\nenv > %s/nginx-env.$$\nexec %s \"$@\"\n"):format(H.q(dir), H.q(real)))
    H.exec("chmod +x " .. H.q(dir .. "/bin/nginx"))
    H.exec(("%sPATH=%s:\"$PATH\" KFSMTP_ADMIN_PASSWORD=%s KFSMTP_SERVE_DIR=%s KFSMTP_STORE=%s PORT=%d sh scripts/serve.sh > %s 2>&1 & echo $! > %s"):format(
      H.plain, H.q(dir .. "/bin"), H.q(PASSWORD), H.q(run), H.q(dir .. "/store.json"), port, H.q(dir .. "/out"), H.q(dir .. "/pid")))
    local serve_pid = tonumber(H.read(dir .. "/pid"))
    finally(function() H.exec("kill " .. serve_pid .. " 2>/dev/null") end)
    local deadline = H.now_ms() + 15000
    while not (H.read(dir .. "/out") or ""):find("Press Ctrl-C", 1, true) do
      assert(H.now_ms() < deadline, "serve.sh did not start: " .. (H.read(dir .. "/out") or ""))
      H.sleep(0.05)
    end
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
    deadline = H.now_ms() + 5000
    while H.exists(("/proc/%d/stat"):format(master)) or H.exists(("/proc/%d/stat"):format(smtpd)) do
      assert(H.now_ms() < deadline, "serve.sh left its servers running")
      H.sleep(0.05)
    end
  end)
end)
