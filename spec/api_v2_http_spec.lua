-- Version 2 over HTTP, as Keyfactor's generated clients send it: their
-- exact bodies under each content type their "consumes" list names, the
-- response models field for field, and references through the providers
-- nginx's configuration gives, against Debian's nginx and a capture relay.
local H = require "helpers"
local cjson = require "cjson"

local ADMIN = "CORP\\admin:admin-Passw0rd"
local USERS = { { "CORP\\admin", "admin-Passw0rd", { "all" } } }
local V2 = { ["x-keyfactor-api-version"] = "2" }
local RELAY_USER = "svc-http"
local FILE_SECRET = "Http-File-Secret-" .. tostring(os.time())
local NULL_SECRET = { SecretValue = cjson.null, Parameters = cjson.null, Provider = cjson.null }
local RESPONSE_FIELDS = { "Audience", "ClientId", "ClientSecret", "Host", "Id", "Port", "RelayAuthenticationType",
  "RelayPassword", "RelayUsername", "RequestHeaders", "Scope", "SenderAccount", "SenderName", "TokenEndpoint", "UseSSL" }
local JSON_TYPES = { "application/json", "application/json-patch+json", "text/json", "application/*+json",
  "application/vnd.keyfactor+json", "application/json; charset=utf-8" }

describe("version 2 over HTTP", function()
  local relay, srv, dir
  setup(function()
    dir = H.tmpdir()
    H.sh("mkdir -m 0700 " .. H.q(dir .. "/secrets"))
    H.write(dir .. "/secrets/relay", FILE_SECRET .. "\n")
    H.sh("chmod 0600 " .. H.q(dir .. "/secrets/relay"))
    relay = H.start_smtp { mode = "starttls", auth = RELAY_USER .. ":" .. FILE_SECRET }
    srv = H.start_nginx { users = USERS, workers = 1, extra = ([[ca_file = %q,
      secret_providers = { [1] = { type = "file", dir = %q }, [2] = { type = "env", names = { "KFSMTP_NOT_IN_NGINX" } } },]]):format(
      H.certs().ca, dir .. "/secrets") }
  end)
  teardown(function() srv:stop() relay:stop() end)

  local function call(method, path, body, ctype, extra_headers)
    local headers = H.with(V2, extra_headers)
    return srv:request { method = method, path = path, user = ADMIN, headers = headers,
      body = body and (type(body) == "string" and body or cjson.encode(body)), content_type = ctype }
  end

  local function relay_body(password)
    return { Host = "localhost", Port = relay.port, RelayAuthenticationType = 2,
      RelayUsername = { SecretValue = RELAY_USER }, RelayPassword = password,
      SenderAccount = "pki@example.com", SenderName = "Keyfactor Command", UseSSL = true }
  end

  it("GET answers SMTPSMTPResponse, every field with its JSON type", function()
    local status, body = call("GET", "/KeyfactorAPI/SMTP")
    assert.are.equal(200, status, body)
    local doc = cjson.decode(body)
    assert.are.same(RESPONSE_FIELDS, H.keys(doc))
    assert.truthy(body:find('"RequestHeaders":[]', 1, true), body)
    assert.are.same(NULL_SECRET, doc.RelayPassword)
    assert.are.equal("", doc.RelayUsername.SecretValue)
  end)

  it("PUT takes the Go client's body under every JSON content type it may label it with", function()
    for i, ctype in ipairs(JSON_TYPES) do
      local body = relay_body { SecretValue = FILE_SECRET }
      body.SenderName = "run " .. i
      local status, answer = call("PUT", "/KeyfactorAPI/SMTP", body, ctype)
      assert.are.equal(200, status, ctype .. ": " .. answer)
      local doc = cjson.decode(answer)
      assert.are.same(RESPONSE_FIELDS, H.keys(doc))
      assert.are.equal("run " .. i, doc.SenderName)
      assert.falsy(answer:find(FILE_SECRET, 1, true))
    end
    local status, answer = call("PUT", "/KeyfactorAPI/SMTP", relay_body(), "text/plain")
    assert.are.equal(415, status, answer)
    assert.truthy(cjson.decode(answer).Message:find("application/*+json", 1, true))
  end)

  it("refuses null where the model has none, and takes it where it has", function()
    local body = relay_body { SecretValue = FILE_SECRET }
    body.Port = cjson.null
    local status, answer = call("PUT", "/KeyfactorAPI/SMTP", body, nil, { ["X-Kfsmtp-Details"] = "1" })
    assert.are.equal(400, status, answer)
    assert.are.equal("Port", cjson.decode(answer).Details.field)
    body = relay_body { SecretValue = FILE_SECRET, Parameters = cjson.null, Provider = cjson.null }
    body.SenderName, body.TokenEndpoint, body.RequestHeaders = cjson.null, cjson.null, cjson.null
    status, answer = call("PUT", "/KeyfactorAPI/SMTP", body)
    assert.are.equal(200, status, answer)
    assert.are.equal("", cjson.decode(answer).SenderName)
  end)

  it("Test takes the Go client's body and answers 200 with no content", function()
    local before = #relay:messages()
    local test = relay_body { SecretValue = FILE_SECRET }
    test.TestRecipient = "ops@example.com"
    for _, ctype in ipairs { "application/json-patch+json", "text/json" } do
      local status, body, headers = call("POST", "/KeyfactorAPI/SMTP/Test", test, ctype)
      assert.are.equal(200, status, body)
      assert.are.same({ "", "0" }, { body, headers["content-length"] })
    end
    assert.are.equal(before + 2, #relay:messages())
  end)

  describe("with secret providers in nginx's configuration", function()
    it("tells a page which providers there are: ids and types, no folder", function()
      local _, _, headers = call("GET", "/KeyfactorAPI/SMTP", nil, nil, { ["X-Kfsmtp-Details"] = "1" })
      assert.are.equal("1=file, 2=env", headers["x-kfsmtp-secret-providers"])
    end)

    it("stores a file reference, shows it, and a form's test uses it", function()
      local status, body = call("PUT", "/KeyfactorAPI/SMTP", relay_body { Provider = 1, Parameters = { Path = "relay" } })
      assert.are.equal(200, status, body)
      local doc = cjson.decode(body)
      assert.are.same({ SecretValue = cjson.null, Parameters = { Path = "relay" }, Provider = 1 }, doc.RelayPassword)
      assert.falsy(H.read(srv.store):find(FILE_SECRET, 1, true), "the store holds the reference only")
      -- The form sends back what GET showed, plus a recipient.
      local _, shown = call("GET", "/KeyfactorAPI/SMTP")
      local test = cjson.decode(shown)
      test.Id, test.TestRecipient = nil, "ops@example.com"
      local before = #relay:messages()
      local answer
      status, answer = call("POST", "/KeyfactorAPI/SMTP/Test", test, nil, { ["X-Kfsmtp-Details"] = "1" })
      assert.are.equal(200, status, answer)
      assert.are.equal(before + 1, #relay:messages())
      assert.are.equal(RELAY_USER, relay:messages()[before + 1].meta.auth_login)
      assert.falsy((answer .. shown .. body):find(FILE_SECRET, 1, true))
    end)

    it("refuses a reference outside what the operator allowed, with a 400 naming the field", function()
      for _, password in ipairs {
        { Provider = 1, Parameters = { Path = "/etc/shadow" } },
        { Provider = 1, Parameters = { Path = "../secrets2/x" } },
        { Provider = 2, Parameters = { Name = "PATH" } },
        { Provider = 3, Parameters = { Path = "relay" } },
      } do
        local status, body = call("PUT", "/KeyfactorAPI/SMTP", relay_body(password), nil, { ["X-Kfsmtp-Details"] = "1" })
        assert.are.equal(400, status, body)
        local doc = cjson.decode(body)
        assert.are.same({ "0xA0530001", "RelayPassword" }, { doc.ErrorCode, doc.Details.field })
      end
    end)

    it("fails a test at stage secret when the file is gone, or the variable is not in nginx's environment", function()
      H.write(dir .. "/secrets/later", "x\n")
      H.sh("chmod 0600 " .. H.q(dir .. "/secrets/later"))
      for _, case in ipairs {
        { { Provider = 1, Parameters = { Path = "later" } }, function() os.remove(dir .. "/secrets/later") end, 'Path "later"' },
        { { Provider = 2, Parameters = { Name = "KFSMTP_NOT_IN_NGINX" } }, function() end, "env directive" },
      } do
        local status, body = call("PUT", "/KeyfactorAPI/SMTP", relay_body(case[1]))
        assert.are.equal(200, status, body)
        case[2]()
        local test = relay_body()
        test.TestRecipient = "ops@example.com"
        local answer
        status, answer = call("POST", "/KeyfactorAPI/SMTP/Test", test, nil, { ["X-Kfsmtp-Details"] = "1" })
        assert.are.equal(502, status, answer)
        local doc = cjson.decode(answer)
        assert.are.same({ "0xA05300C0", "secret", "RelayPassword" }, { doc.ErrorCode, doc.Details.stage, doc.Details.field })
        assert.truthy(doc.Message:find(case[3], 1, true), doc.Message)
      end
    end)
  end)
end)
