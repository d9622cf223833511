-- quit_after: run the dialog up to a stage and stop. Nothing is delivered;
-- the server's own log shows how far the client went.
local kfsmtp = require "kfsmtp"
local H = require "helpers"
local cjson = require "cjson"

local USER, SECRET = "svc", "Probe-Secret-77"
local STAGES = { "connect", "tls", "auth", "rcpt" }

local SERVERS = {
  { name = "plain", opts = { mode = "plain", auth = USER .. ":" .. SECRET, auth_plaintext = true }, req = { UseSSL = false } },
  { name = "STARTTLS", opts = { mode = "starttls", auth = USER .. ":" .. SECRET }, req = { UseSSL = true, Host = "localhost" } },
  { name = "implicit TLS", opts = { mode = "implicit", auth = USER .. ":" .. SECRET }, req = { UseSSL = true, Host = "localhost" }, tls_mode = "implicit" },
}

for _, server in ipairs(SERVERS) do
  describe("quit_after against a " .. server.name .. " server", function()
    local srv
    setup(function() srv = H.start_smtp(server.opts) end)
    teardown(function() srv:stop() end)

    for _, stage in ipairs(STAGES) do
      it("stops after " .. stage .. " and delivers nothing", function()
        local req = { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com", TestRecipient = "ops@example.com",
          RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }
        for k, v in pairs(server.req) do req[k] = v end
        local before_cmds, before_msgs = srv:commands(), #srv:messages()
        local res, info = kfsmtp.open(H.store_path()):test(req,
          { quit_after = stage, ca_file = H.certs().ca, tls_mode = server.tls_mode, transcript = true })
        assert.is_nil(info.Message)
        assert.are.equal("ops@example.com", res.TestRecipient)
        assert.are.equal(stage, info.quit_after)
        assert.is_nil(info.message_id)
        assert.truthy(info.greeting:match("^220"))
        assert.truthy(#info.capabilities > 0)
        assert.truthy(table.concat(info.warnings, " "):find("no message was sent", 1, true))
        H.sleep(0.1)
        local session = srv:commands():sub(#before_cmds + 1)
        assert.are.equal(before_msgs, #srv:messages(), "nothing arrived")
        local went_tls = stage ~= "connect" and server.name == "STARTTLS"
        assert.are.equal(went_tls, session:find("STARTTLS", 1, true) ~= nil, session)
        assert.are.equal(stage == "auth" or stage == "rcpt", session:find("AUTH", 1, true) ~= nil, session)
        assert.are.equal(stage == "rcpt", session:find("MAIL FROM", 1, true) ~= nil, session)
        assert.are.equal(stage == "rcpt", session:find("RCPT TO", 1, true) ~= nil, session)
        -- A polite end: the server saw QUIT (and no DATA) and answered it.
        assert.truthy(session:find("QUIT", 1, true), session)
        assert.falsy(session:find("DATA", 1, true), session)
        local transcript = table.concat(info.transcript, "\n")
        assert.truthy(transcript:find("C: QUIT\nS: 221", 1, true), transcript)
        if server.name ~= "plain" and (stage ~= "connect" or server.tls_mode == "implicit") then
          assert.is_true(info.tls.verified)
        end
        if stage == "auth" or stage == "rcpt" then
          assert.are.equal("PLAIN", info.auth_mechanism)
          assert.truthy(table.concat(info.auth_mechanisms_offered, " "):find("PLAIN", 1, true))
        end
        assert.is_false(H.mentions(info, SECRET))
      end)
    end
  end)
end

describe("quit_after elsewhere", function()
  it("reports a refused recipient at rcpt as a failure, still delivering nothing", function()
    local srv = H.start_smtp { mode = "plain" }
    finally(function() srv:stop() end)
    local _, err = kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = srv.port,
      SenderAccount = "kf@example.com", TestRecipient = "nobody@example.com" }, { quit_after = "rcpt" })
    assert.are.equal("rcpt", err.stage)
    assert.are.equal(550, err.smtp_code)
    H.sleep(0.1)
    assert.truthy(srv:commands():find("RCPT TO:<nobody@example.com>.*QUIT"), srv:commands())
  end)

  it("never skips configured credentials: a server without AUTH fails the probe at auth", function()
    local srv = H.start_smtp { mode = "plain", behaviour = "no_starttls_auth" }
    finally(function() srv:stop() end)
    for _, stage in ipairs { "auth", "rcpt" } do
      local _, err = kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
        TestRecipient = "ops@example.com", RelayAuthenticationType = 2, RelayUsername = "u", RelayPassword = "p" },
        { quit_after = stage })
      assert.are.equal("auth_not_offered", err.kind, err.Message)
      assert.are.equal("auth", err.stage)
    end
    H.sleep(0.1)
    assert.falsy(srv:commands():find("MAIL FROM", 1, true), srv:commands())
  end)

  it("is refused when unknown", function()
    assert.has_error(function() kfsmtp.test({ Host = "x" }, { quit_after = "data" }) end)
  end)

  it("is --quit-after on the command line", function()
    local srv = H.start_smtp { mode = "plain" }
    finally(function() srv:stop() end)
    local out, ok = H.sh(("KFSMTP_STORE=%s %s bin/kfsmtp test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient ops@example.com --quit-after rcpt"):format(
      H.q(H.store_path()), H.lua_run, srv.port))
    assert(ok, out)
    assert.truthy(out:find("nothing was sent", 1, true), out)
    assert.are.equal(0, #srv:messages())
  end)

  it("is the QuitAfter field of POST /SMTP/Test", function()
    local srv = H.start_smtp { mode = "plain" }
    local ngx_srv = H.start_nginx { users = { { "admin", "admin-Passw0rd", { "all" } } } }
    finally(function() ngx_srv:stop() srv:stop() end)
    local status, body = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = "admin:admin-Passw0rd",
      body = cjson.encode { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
        TestRecipient = "ops@example.com", QuitAfter = "rcpt" } }
    assert.are.equal(200, status, body)
    assert.are.equal(0, #srv:messages())
    status = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = "admin:admin-Passw0rd",
      body = cjson.encode { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
        TestRecipient = "ops@example.com", quitafter = "data" } }
    assert.are.equal(400, status)
  end)
end)
