-- The HTTP API when worker threads run short: no Lua VM left or a queue
-- full answers 503 with Retry-After, never a 401 or a 500.
local H = require "helpers"
local cjson = require "cjson"

local ADMIN = "CORP\\admin:admin-Passw0rd"

local function users()
  return { { "CORP\\admin", "admin-Passw0rd", { "all" } }, { "reader1", "reader-Passw0rd-1", { "read" } } }
end

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
