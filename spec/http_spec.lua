-- The HTTP API under Debian's nginx + lua-nginx-module, with a real SMTP
-- server: every status, the order of checks, exact JSON shapes, callers'
-- permissions, secrets, non-blocking tests, and concurrent workers.
local H = require "helpers"
local cjson = require "cjson"

local ADMIN = "CORP\\admin:admin-Passw0rd"
local READER = "reader:reader-Passw0rd"
local SECRET = "Relay-Secret-8812"
local USERS = {
  { "CORP\\admin", "admin-Passw0rd", { "all" } },
  { "reader", "reader-Passw0rd", { "read" } },
}
local GET_FIELDS = { "Host", "Id", "Port", "RelayAuthenticationType", "RelayUsername",
  "SenderAccount", "SenderAddress", "SenderName", "UseSSL" }
local TEST_FIELDS = { "Host", "Id", "Port", "RelayAuthenticationType", "RelayUsername",
  "SenderAccount", "SenderName", "TestRecipient", "UseSSL" }

local keys = H.keys

local function error_body(status, body, code, expected_status)
  assert.are.equal(expected_status, status, body)
  local doc = cjson.decode(body)
  assert.are.same({ "ErrorCode", "Message" }, keys(doc))
  if code then assert.are.equal(code, doc.ErrorCode) end
  return doc
end

describe("the HTTP API", function()
  local ngx_srv, smtp
  setup(function()
    smtp = H.start_smtp { mode = "plain", auth = "svc:" .. SECRET, auth_plaintext = true }
    ngx_srv = H.start_nginx { users = USERS, workers = 1 }
  end)
  teardown(function()
    ngx_srv:stop()
    smtp:stop()
  end)

  local function put(body, user, ctype)
    return ngx_srv:request { method = "PUT", user = user or ADMIN, body = body, content_type = ctype }
  end

  it("answers GET with the documented body and content type", function()
    local status, body, headers = ngx_srv:request { user = ADMIN }
    assert.are.equal(200, status)
    assert.are.equal("application/json; charset=utf-8", headers["content-type"])
    assert.are.same(GET_FIELDS, keys(cjson.decode(body)))
  end)

  it("asks for credentials with 401 and WWW-Authenticate", function()
    for _, user in ipairs { false, "CORP\\admin:wrong", "nobody:admin-Passw0rd" } do
      local status, body, headers = ngx_srv:request { user = user or nil }
      error_body(status, body, "0xA0530101", 401)
      assert.truthy(headers["www-authenticate"]:match('^Basic realm="'))
    end
  end)

  it("leaves the challenge out for a script with its own sign-in form (X-Requested-With)", function()
    local status, body, headers = ngx_srv:request { user = "CORP\\admin:wrong", headers = { ["X-Requested-With"] = "XMLHttpRequest" } }
    error_body(status, body, "0xA0530101", 401)
    assert.is_nil(headers["www-authenticate"])
  end)

  it("names the caller's permissions in X-Kfsmtp-Permissions when details are asked for", function()
    local _, _, headers = ngx_srv:request { user = READER, headers = { ["X-Kfsmtp-Details"] = "1" } }
    assert.are.equal("/system_settings/read/", headers["x-kfsmtp-permissions"])
    _, _, headers = ngx_srv:request { user = ADMIN, headers = { ["X-Kfsmtp-Details"] = "1" } }
    assert.are.equal("/system_settings/modify/ /system_settings/read/", headers["x-kfsmtp-permissions"])
    _, _, headers = ngx_srv:request { user = ADMIN }
    assert.is_nil(headers["x-kfsmtp-permissions"])
  end)

  it("matches user names case-insensitively, DOMAIN\\user included", function()
    local status = ngx_srv:request { user = "corp\\ADMIN:admin-Passw0rd" }
    assert.are.equal(200, status)
  end)

  it("requires X-Keyfactor-Requested-With (400), after authentication", function()
    local status, body = ngx_srv:request { user = ADMIN, requested_with = false }
    local doc = error_body(status, body, "0xA0530005", 400)
    assert.truthy(doc.Message:find("X-Keyfactor-Requested-With", 1, true))
    status = ngx_srv:request { requested_with = false }
    assert.are.equal(401, status)
  end)

  it("checks the header before the permission, and the permission before the body", function()
    local status = ngx_srv:request { method = "PUT", user = READER, requested_with = false, body = "{}" }
    assert.are.equal(400, status)
    local body
    status, body = ngx_srv:request { method = "PUT", user = READER, body = "not json", content_type = "text/plain" }
    error_body(status, body, "0xA0530103", 403)
  end)

  it("lets a reader GET but not PUT or test", function()
    assert.are.equal(200, (ngx_srv:request { user = READER }))
    local status, body = put('{"Host":"mail.example.com","SenderAccount":"kf@example.com"}', READER)
    local doc = error_body(status, body, "0xA0530103", 403)
    assert.truthy(doc.Message:find("/system_settings/modify/", 1, true))
    status = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = READER, body = "{}" }
    assert.are.equal(403, status)
  end)

  it("accepts x-keyfactor-api-version 1 and refuses others", function()
    assert.are.equal(200, (ngx_srv:request { user = ADMIN, headers = { ["x-keyfactor-api-version"] = "1" } }))
    local status, body = ngx_srv:request { user = ADMIN, headers = { ["x-keyfactor-api-version"] = "7" } }
    error_body(status, body, "0xA0530006", 400)
  end)

  it("answers 405 with Allow for other methods", function()
    local status, body, headers = ngx_srv:request { method = "DELETE", user = ADMIN }
    error_body(status, body, "0xA0530105", 405)
    assert.are.equal("GET, PUT", headers.allow)
    status, body, headers = ngx_srv:request { method = "GET", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN }
    error_body(status, body, "0xA0530105", 405)
    assert.are.equal("POST", headers.allow)
  end)

  it("answers 404 for unknown paths under the base", function()
    local status, body = ngx_srv:request { user = ADMIN, path = "/KeyfactorAPI/SMTP/Other" }
    error_body(status, body, "0xA0530104", 404)
  end)

  it("matches the base and the routes in any letter case; the page keeps its own", function()
    local status, body, headers = ngx_srv:request { user = ADMIN, path = "/keyfactorapi/smtp" }
    assert.are.equal(200, status, body)
    assert.are.equal("application/json; charset=utf-8", headers["content-type"])
    assert.are.same(GET_FIELDS, keys(cjson.decode(body)))
    status, body = ngx_srv:request { user = ADMIN, path = "/KEYFACTORAPI/Smtp/" }
    assert.are.equal(200, status, body)
    status, body = ngx_srv:request { user = ADMIN, path = "/keyfactorapi/other" }
    error_body(status, body, "0xA0530104", 404)
    status, body, headers = ngx_srv:request { path = "/KeyfactorAPI/Portal/" }
    assert.are.equal(200, status)
    assert.truthy(headers["content-type"]:find("text/html", 1, true))
    assert.truthy(body:find("<html", 1, true))
    status = ngx_srv:request { path = "/KeyfactorAPI/Portal/smtp.js" }
    assert.are.equal(200, status)
    for _, path in ipairs { "/keyfactorapi/portal/", "/KEYFACTORAPI/PORTAL", "/KeyfactorAPI/Portal" } do
      status, _, headers = ngx_srv:request { path = path }
      assert.are.equal(301, status, path)
      assert.truthy(headers.location:find("/KeyfactorAPI/Portal/$"), headers.location)
    end
  end)

  it("stores a JSON PUT, returns the profile without the password, and GET shows it", function()
    local status, body = put(cjson.encode { Host = "mail.example.com", Port = 587, UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = SECRET,
      SenderAccount = "kf@example.com", SenderName = "Keyfactor Command" })
    assert.are.equal(200, status, body)
    local p = cjson.decode(body)
    assert.are.same(GET_FIELDS, keys(p))
    assert.are.equal(587, p.Port)
    assert.falsy(body:find(SECRET, 1, true))
    local _, got = ngx_srv:request { user = ADMIN }
    assert.are.same(p, cjson.decode(got))
    assert.truthy(H.read(ngx_srv.store):find(SECRET, 1, true))
  end)

  it("stores a form-encoded PUT, as Keyfactor's Python client sends it", function()
    local status, body = put("Host=relay.example.com&Port=2525&UseSSL=false&RelayAuthenticationType=0&SenderAccount=kf%40example.com&SenderName=Key+factor",
      ADMIN, "application/x-www-form-urlencoded")
    assert.are.equal(200, status, body)
    local p = cjson.decode(body)
    assert.are.same({ "relay.example.com", 2525, false, "kf@example.com", "Key factor" },
      { p.Host, p.Port, p.UseSSL, p.SenderAccount, p.SenderName })
    assert.truthy(body:find('"Port":2525,', 1, true), "an integer in the JSON")
  end)

  it("answers 400 for malformed JSON, a non-object and a bad field", function()
    local status, body = put('{"Host": ')
    error_body(status, body, "0xA0530004", 400)
    status, body = put('[1, 2]')
    error_body(status, body, "0xA0530004", 400)
    status, body = put('{"Host":"smtp://mail.example.com","SenderAccount":"kf@example.com"}')
    local doc = error_body(status, body, "0xA0530001", 400)
    assert.truthy(doc.Message:find("Host", 1, true))
    status, body = put('{"Id":2,"Host":"mail.example.com","SenderAccount":"kf@example.com"}')
    error_body(status, body, "0xA0530003", 404)
  end)

  it("answers 400 naming the nesting limit for a deeply nested body, on PUT and Test", function()
    local deep = ('{"Host":"mail.example.com","SenderAccount":"kf@example.com","Extra":%s1%s}'):format(
      ('{"a":'):rep(150), ("}"):rep(150))
    for _, path in ipairs { "/KeyfactorAPI/SMTP", "/KeyfactorAPI/SMTP/Test" } do
      local status, body = ngx_srv:request { method = path:find("Test") and "POST" or "PUT", path = path, user = ADMIN, body = deep }
      local doc = error_body(status, body, "0xA0530004", 400)
      assert.truthy(doc.Message:find("nested deeper than 20 levels", 1, true), doc.Message)
    end
    -- Just inside the limit: the unknown field is ignored as before.
    local ok = ('{"Host":"mail.example.com","SenderAccount":"kf@example.com","Extra":%s1%s}'):format(
      ('{"a":'):rep(18), ("}"):rep(18))
    assert.are.equal(200, (put(ok)))
  end)

  it("answers 415 for other body types", function()
    local status, body = put("Host: x", ADMIN, "text/plain")
    error_body(status, body, "0xA0530115", 415)
  end)

  it("answers 413 with a JSON body above 64 KiB, and above nginx's own limit", function()
    local big = '{"Host":"' .. ("a"):rep(70000) .. '"}'
    local status, body, headers = put(big)
    error_body(status, body, "0xA0530113", 413)
    assert.are.equal("application/json; charset=utf-8", headers["content-type"])
    status, body = put('{"Host":"' .. ("a"):rep(1100000) .. '"}')
    error_body(status, body, "0xA0530113", 413)
  end)

  it("runs POST /SMTP/Test against the real server and answers the test response", function()
    local before = #smtp:messages()
    local status, body = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      body = cjson.encode { Host = "127.0.0.1", Port = smtp.port, UseSSL = false, RelayAuthenticationType = 2,
        RelayUsername = "svc", RelayPassword = SECRET, SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" } }
    assert.are.equal(200, status, body)
    assert.are.same(TEST_FIELDS, keys(cjson.decode(body)))
    assert.falsy(body:find(SECRET, 1, true))
    local deadline = H.now_ms() + 3000
    while #smtp:messages() == before and H.now_ms() < deadline do H.sleep(0.02) end
    local m = smtp:messages()[before + 1]
    assert.are.equal("svc", m.meta.auth_login)
    assert.are.same({ "ops@example.com" }, m.meta.rcpt_tos)
  end)

  it("takes AuthMechanism as kfsmtp's extra field, and names it when it is wrong", function()
    local status, body = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      body = cjson.encode { Host = "127.0.0.1", Port = smtp.port, SenderAccount = "kf@example.com",
        TestRecipient = "ops@example.com", authmechanism = "SCRAM-SHA-256" } }
    local doc = error_body(status, body, "0xA0530001", 400)
    assert.truthy(doc.Message:find('AuthMechanism must be "PLAIN", "LOGIN"', 1, true), doc.Message)
    status = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      body = cjson.encode { Host = "127.0.0.1", Port = smtp.port, SenderAccount = "kf@example.com",
        TestRecipient = "ops@example.com", AuthMechanism = "login", QuitAfter = "connect" } }
    assert.are.equal(200, status)
  end)

  it("reports a refused recipient as 502 with the stage's ErrorCode", function()
    local status, body = ngx_srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      body = cjson.encode { Host = "127.0.0.1", Port = smtp.port, SenderAccount = "kf@example.com",
        TestRecipient = "nobody@example.com" } }
    local doc = error_body(status, body, "0xA0530072", 502) -- recipient_rejected
    assert.truthy(doc.Message:find("550", 1, true))
  end)

  it("never writes the relay password or the callers' passwords to nginx's logs", function()
    local logs = ngx_srv:logs()
    assert.truthy(#logs > 0)
    assert.falsy(logs:find(SECRET, 1, true))
    assert.falsy(logs:find("admin-Passw0rd", 1, true))
    assert.falsy(H.read(ngx_srv.users_file):find("admin-Passw0rd", 1, true), "users file holds hashes only")
  end)
end)

describe("a test on a silent server", function()
  it("does not stall the nginx worker: GET is answered while the test hangs", function()
    local silent = H.start_smtp { behaviour = "silent" }
    local srv = H.start_nginx { users = USERS, workers = 1, extra = "connect_timeout_ms = 3000," }
    finally(function() srv:stop() silent:stop() end)
    local out = H.tmpdir() .. "/post"
    local hung = H.write(out .. ".json", cjson.encode { Host = "127.0.0.1", Port = silent.port,
      SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" })
    local t0 = H.now_ms()
    H.exec((H.plain .. "curl -s -o %s -w '%%{http_code}' -u %s -H 'X-Keyfactor-Requested-With: x' -H 'Content-Type: application/json' --data-binary @%s http://127.0.0.1:%d/KeyfactorAPI/SMTP/Test > %s.status &"):format(
      H.q(out), H.q(ADMIN), H.q(out .. ".json"), srv.port, H.q(out)))
    H.sleep(0.5) -- the test is now waiting for a greeting that never comes
    local worst = 0
    for _ = 1, 5 do
      local g0 = H.now_ms()
      local status = srv:request { user = ADMIN }
      assert.are.equal(200, status)
      worst = math.max(worst, H.now_ms() - g0)
    end
    assert.is_true(worst < 500, ("a GET took %d ms while the test hung"):format(math.floor(worst)))
    local deadline = t0 + 8000
    while not (H.read(out .. ".status") or ""):match("%d%d%d") and H.now_ms() < deadline do H.sleep(0.05) end
    local took = H.now_ms() - t0
    assert.are.equal("504", H.read(out .. ".status"))
    assert.are.equal("0xA0530021", cjson.decode(H.read(out)).ErrorCode)
    assert.is_true(took >= 2900 and took < 6000, "the hung test took " .. took .. " ms")
    assert.is_nil(hung)
  end)
end)

describe("concurrent PUTs from several nginx workers", function()
  it("are serialised by the store: the last complete write wins, nothing is torn", function()
    local srv = H.start_nginx { users = USERS, workers = 4 }
    finally(function() srv:stop() end)
    local dir = H.tmpdir()
    local cmds = {}
    for id = 1, 8 do
      H.write(("%s/%d.json"):format(dir, id), cjson.encode { Host = ("w%d.example.com"):format(id), Port = 1000 + id,
        SenderAccount = ("w%d@example.com"):format(id), SenderName = ("writer %d"):format(id),
        RelayAuthenticationType = 2, RelayUsername = "user" .. id, RelayPassword = "pw" .. id })
      cmds[#cmds + 1] = ("(for n in 1 2 3 4 5 6 7 8 9 10; do env -u LD_PRELOAD curl -s -o /dev/null -w '%%{http_code}\\n' -X PUT -u %s -H 'X-Keyfactor-Requested-With: x' -H 'Content-Type: application/json' --data-binary @%s/%d.json http://127.0.0.1:%d/KeyfactorAPI/SMTP; done) >> %s/codes &"):format(
        H.q(ADMIN), H.q(dir), id, srv.port, H.q(dir))
    end
    H.sh(table.concat(cmds, " ") .. " wait")
    local codes = H.read(dir .. "/codes")
    local pids = {}
    for line in H.sh("ps -o pid= --ppid $(cat " .. H.q(srv.dir .. "/logs/nginx.pid") .. ")"):gmatch("%d+") do pids[#pids + 1] = line end
    local n200 = select(2, codes:gsub("200", ""))
    assert.are.equal(80, n200, codes)
    assert.are.equal(4, #pids, "four workers served")
    local doc = cjson.decode(H.read(srv.store))
    local id = math.floor(doc.Port) - 1000
    assert.are.same({ ("w%d.example.com"):format(id), ("w%d@example.com"):format(id), "user" .. id, "pw" .. id, "writer " .. id },
      { doc.Host, doc.SenderAccount, doc.RelayUsername, doc.RelayPassword, doc.SenderName })
    local left = H.sh("ls -A " .. H.q(srv.dir) .. " | grep -c tmp\\\\. || true")
    assert.are.equal("0", (left:gsub("%s+", "")))
  end)
end)

describe("a configuration without the password checks' thread pool and shared dict", function()
  it("checks passwords in the other pool, and says so in the error log", function()
    local srv = H.start_nginx { users = USERS, workers = 1, extra = 'auth_thread_pool = "kfsmtp_missing", auth_shared_dict = "kfsmtp_missing",' }
    finally(function() srv:stop() end)
    assert.are.equal(200, (srv:request { user = ADMIN }))
    assert.are.equal(401, (srv:request { user = "reader:wrong-Passw0rd" }))
    assert.are.equal(200, (srv:request { user = READER }))
    assert.are.equal(401, (srv:request { user = "reader:wrong-Passw0rd" }))
    assert.are.equal(200, (srv:request { user = READER }))
    assert.truthy(srv:logs():find("no thread_pool kfsmtp_missing in nginx.conf: password checks share kfsmtp", 1, true))
  end)
end)

describe("an authenticate callback", function()
  it("replaces the users file for sites that authenticate otherwise", function()
    local srv = H.start_nginx { workers = 1, extra = [[authenticate = function(c)
            if c and c.username == "svc-portal" and c.password == "cb-pass" then return { "/system_settings/read/" } end
          end,]] }
    finally(function() srv:stop() end)
    local ok = srv:request { user = "svc-portal:cb-pass" }
    local wrong = srv:request { user = "svc-portal:nope" }
    local put = srv:request { method = "PUT", user = "svc-portal:cb-pass", body = "{}" }
    assert.are.same({ 200, 401, 403 }, { ok, wrong, put })
  end)

  it("with neither users file nor callback, nobody gets in", function()
    local srv = H.start_nginx { workers = 1 }
    finally(function() srv:stop() end)
    local status = srv:request { user = ADMIN }
    assert.are.equal(401, status)
  end)
end)

describe("x-keyfactor-api-version 2", function()
  local CLIENT, CLIENT_SECRET, MAILBOX = "app-v2", "v2-Client-Secret-77", "pki@example.com"
  -- SMTPSMTPResponse of Keyfactor's version 2 client.
  local V2_FIELDS = { "Audience", "ClientId", "ClientSecret", "Host", "Id", "Port", "RelayAuthenticationType",
    "RelayPassword", "RelayUsername", "RequestHeaders", "Scope", "SenderAccount", "SenderName", "TokenEndpoint", "UseSSL" }
  local V2 = { ["x-keyfactor-api-version"] = "2" }
  local tokens, oauth_smtp, refusing, srv
  setup(function()
    tokens = H.start_token_server(CLIENT, CLIENT_SECRET)
    oauth_smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    refusing = H.start_smtp { mode = "starttls", auth = "svc:right-password" }
    srv = H.start_nginx { users = USERS, workers = 1, extra = ("ca_file = %q,"):format(H.certs().ca) }
  end)
  teardown(function()
    srv:stop() oauth_smtp:stop() refusing:stop() tokens:stop()
  end)

  local function oauth_profile()
    return { Host = "localhost", Port = oauth_smtp.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, SenderName = "PKI",
      ClientId = CLIENT, ClientSecret = { SecretValue = CLIENT_SECRET }, TokenEndpoint = tokens.url,
      Scope = "https://outlook.office365.com/.default" }
  end

  it("takes secrets as SecretValue objects and shows the OAuth fields, never the secret", function()
    local status, body = srv:request { method = "PUT", user = ADMIN, headers = V2, body = cjson.encode(oauth_profile()) }
    assert.are.equal(200, status, body)
    local doc = cjson.decode(body)
    assert.are.same(V2_FIELDS, keys(doc))
    assert.are.same({ CLIENT, tokens.url, "https://outlook.office365.com/.default", "", 3 },
      { doc.ClientId.SecretValue, doc.TokenEndpoint, doc.Scope, doc.Audience, doc.RelayAuthenticationType })
    assert.are.same({ SecretValue = cjson.null, Parameters = cjson.null, Provider = cjson.null }, doc.ClientSecret)
    assert.falsy(body:find(CLIENT_SECRET, 1, true))
    assert.truthy(H.read(srv.store):find(CLIENT_SECRET, 1, true), "the secret is stored")
    status, body = srv:request { user = ADMIN, headers = { ["x-keyfactor-api-version"] = "2.0" } }
    assert.are.equal(200, status)
    assert.are.same(doc, cjson.decode(body))
    -- Version 1, the default, is unchanged: the documented fields only.
    body = select(2, srv:request { user = ADMIN })
    assert.are.same(GET_FIELDS, keys(cjson.decode(body)))
    assert.falsy(body:find(CLIENT_SECRET, 1, true))
  end)

  it("answers a good test with 200 and no content; version 1 still answers the test response", function()
    assert.are.equal(200, (srv:request { method = "PUT", user = ADMIN, headers = V2, body = cjson.encode(oauth_profile()) }))
    local before = #oauth_smtp:messages()
    -- What a form that loaded the profile sends: no secret, the stored one is used.
    local test = oauth_profile()
    test.ClientSecret, test.TestRecipient = nil, "ops@example.com"
    local status, body, headers = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      headers = V2, body = cjson.encode(test) }
    assert.are.equal(200, status, body)
    assert.are.equal("", body)
    assert.are.equal("0", headers["content-length"])
    assert.are.equal(before + 1, #oauth_smtp:messages())
    assert.are.equal(MAILBOX, oauth_smtp:messages()[before + 1].meta.auth_login)
    status, body = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN, body = cjson.encode(test) }
    assert.are.equal(200, status, body)
    assert.are.same(TEST_FIELDS, keys(cjson.decode(body)))
    assert.are.equal(before + 2, #oauth_smtp:messages())
  end)

  it("reports a token failure with the documented error body", function()
    local test = oauth_profile()
    test.ClientSecret, test.TestRecipient = { SecretValue = "wrong" }, "ops@example.com"
    local status, body = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
      headers = V2, body = cjson.encode(test) }
    local doc = error_body(status, body, "0xA05300A0", 502)
    assert.truthy(doc.Message:find("invalid_client", 1, true))
  end)

  it("refuses versions other than 1 and 2, naming both", function()
    local status, body = srv:request { user = ADMIN, headers = { ["x-keyfactor-api-version"] = "3" } }
    local doc = error_body(status, body, "0xA0530006", 400)
    assert.truthy(doc.Message:find("use 1 (the default) or 2", 1, true))
  end)

  describe("with X-Kfsmtp-Details", function()
    local DETAILS = { ["X-Kfsmtp-Details"] = "1" }

    it("adds the stage, the server's reply and the redacted transcript to a failed test", function()
      local status, body = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN, headers = DETAILS,
        body = cjson.encode { Host = "localhost", Port = refusing.port, UseSSL = true, RelayAuthenticationType = 2,
          RelayUsername = "svc", RelayPassword = "wrong-password-31", SenderAccount = "kf@example.com",
          TestRecipient = "ops@example.com" } }
      assert.are.equal(502, status, body)
      local doc = cjson.decode(body)
      assert.are.same({ "Details", "ErrorCode", "Message" }, keys(doc))
      assert.are.equal("0xA0530050", doc.ErrorCode)
      assert.are.equal("auth", doc.Details.stage)
      assert.are.equal(535, doc.Details.smtp_code)
      assert.truthy(#doc.Details.transcript > 3)
      assert.truthy(body:find("C: AUTH ", 1, true))
      assert.falsy(body:find("wrong-password-31", 1, true))
    end)

    it("names the field of a bad PUT", function()
      local status, body = srv:request { method = "PUT", user = ADMIN, headers = DETAILS,
        body = cjson.encode { Host = "mail.example.com", Port = 70000, SenderAccount = "kf@example.com" } }
      assert.are.equal(400, status, body)
      local doc = cjson.decode(body)
      assert.are.same({ field = "Port", stage = "validate" }, doc.Details)
    end)

    it("adds what was learned to a good test: TLS facts, Message-ID, timings, transcript", function()
      local test = oauth_profile()
      test.TestRecipient = "ops@example.com"
      local status, body = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN,
        headers = { ["X-Kfsmtp-Details"] = "1", ["x-keyfactor-api-version"] = "2" }, body = cjson.encode(test) }
      assert.are.equal(200, status, body)
      local doc = cjson.decode(body)
      assert.are.same({ "Details" }, keys(doc))
      local d = doc.Details
      assert.are.equal("starttls", d.tls.mode)
      assert.is_true(d.tls.verified)
      assert.truthy(d.tls.cert.subject:find("localhost", 1, true))
      assert.truthy(d.message_id:match("^<.+@.+>$"))
      assert.truthy(d.timings.total > 0)
      assert.truthy(#d.transcript > 5)
      assert.falsy(body:find(CLIENT_SECRET, 1, true))
      assert.falsy(body:find(tokens:token(), 1, true))
    end)
  end)
end)
