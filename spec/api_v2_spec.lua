-- Version 2 of the API as Keyfactor Command 25's generated Go client
-- (keyfactor-go-client-sdk, v25/api/keyfactor/v2) defines it: the models
-- SMTPSMTPRequest, SMTPSMTPResponse, SMTPSMTPTestRequest,
-- CSSCMSDataModelModelsKeyfactorAPISecret and SharedRequestHeaderRequest,
-- field for field, in Lua. The same over nginx is in api_v2_http_spec.lua.
local kfsmtp = require "kfsmtp"
local profile = require "kfsmtp.profile"
local cjson = require "cjson"
local H = require "helpers"

local V2 = { api_version = 2 }
local NULL = cjson.null
local NULL_SECRET = { SecretValue = NULL, Parameters = NULL, Provider = NULL }

-- SMTPSMTPResponse: every field and the Lua type its JSON type decodes to.
local RESPONSE_TYPES = { Host = "string", Id = "number", Port = "number", RelayAuthenticationType = "number",
  RelayUsername = "table", RelayPassword = "table", SenderAccount = "string", SenderName = "string",
  UseSSL = "boolean", ClientId = "table", ClientSecret = "table", TokenEndpoint = "string", Scope = "string",
  Audience = "string", RequestHeaders = "table" }
-- SMTPSMTPTestRequest, as kfsmtp.test answers it in Lua under version 2.
local TEST_TYPES = {}
for k, v in pairs(RESPONSE_TYPES) do TEST_TYPES[k] = v end
TEST_TYPES.Id, TEST_TYPES.TestRecipient = nil, "string"

local function has_model_fields(p, types)
  for name, ty in pairs(types) do assert.are.equal(ty, type(p[name]), name) end
  for name in pairs(p) do assert.is_not_nil(types[name], "a field the model does not have: " .. name) end
  for _, name in ipairs(profile.CREDENTIAL_FIELDS) do
    assert.are.same({ "Parameters", "Provider", "SecretValue" }, H.keys(p[name]), name)
  end
end

-- What the Go client's MarshalJSON sends for
--   NewSMTPSMTPRequest() with SetHost, SetPort, SetRelayAuthenticationType,
--   SetRelayUsername(Secret{SecretValue}), SetRelayPassword(...), SetSenderAccount,
--   SetSenderName, SetUseSSL
-- (ToMap: set fields only; a secret's unset members are left out).
local GO_PUT_PASSWORD = [[{"Host":"mail.example.com","Port":587,"RelayAuthenticationType":2,
  "RelayPassword":{"SecretValue":"Go-Client-Pw-1"},"RelayUsername":{"SecretValue":"CORP\\svc"},
  "SenderAccount":"pki@example.com","SenderName":"Keyfactor Command","UseSSL":true}]]
-- The OAuth form, with the nulls SetTokenEndpointNil & co. send, and
-- RequestHeaders.
local GO_PUT_OAUTH = [[{"Host":"smtp.office365.com","Port":587,"RelayAuthenticationType":3,
  "RelayUsername":{"SecretValue":"pki@example.com"},"ClientId":{"SecretValue":"app-1","Parameters":null,"Provider":null},
  "ClientSecret":{"SecretValue":"Go-Client-Secret-2"},"TokenEndpoint":"https://login.example.com/t/oauth2/v2.0/token",
  "Scope":"https://outlook.office365.com/.default","Audience":null,
  "RequestHeaders":[{"Name":"X-Tenant","Value":"contoso"}],
  "SenderAccount":"pki@example.com","SenderName":null,"UseSSL":true}]]
-- NewSMTPSMTPTestRequest(host, port, type, senderAccount, senderName,
-- testRecipient): the required fields are always sent.
local function go_test_body(port)
  return ([[{"Host":"localhost","Port":%d,"RelayAuthenticationType":0,"SenderAccount":"pki@example.com",
    "SenderName":"","TestRecipient":"ops@example.com","UseSSL":false}]]):format(port)
end

describe("version 2's models in Lua", function()
  local store
  before_each(function() store = kfsmtp.open(H.store_path()) end)

  it("GET answers SMTPSMTPResponse field for field, for an empty store too", function()
    local p = assert(store:get(V2))
    has_model_fields(p, RESPONSE_TYPES)
    assert.are.same({ "", 1, 25, 0, false, "", "" }, { p.Host, p.Id, p.Port, p.RelayAuthenticationType, p.UseSSL,
      p.RelayUsername.SecretValue, p.ClientId.SecretValue })
    assert.are.same(NULL_SECRET, p.RelayPassword)
    assert.are.same(NULL_SECRET, p.ClientSecret)
    assert.are.equal('"RequestHeaders":[]', kfsmtp.json.encode(p):match('"RequestHeaders":%[%]'))
  end)

  it("PUT takes the Go client's body (password) and answers without the secret", function()
    local p = assert(store:update(cjson.decode(GO_PUT_PASSWORD), V2))
    has_model_fields(p, RESPONSE_TYPES)
    assert.are.same({ SecretValue = "CORP\\svc", Parameters = NULL, Provider = NULL }, p.RelayUsername)
    assert.are.same(NULL_SECRET, p.RelayPassword)
    assert.is_false(H.mentions(p, "Go-Client-Pw-1"))
    assert.truthy(H.read(store.path):find("Go-Client-Pw-1", 1, true), "the password is stored")
    assert.are.same(p, store:get(V2))
    -- Version 1 sees the same profile in its own shape.
    local v1 = store:get()
    assert.are.same({ "CORP\\svc", "pki@example.com" }, { v1.RelayUsername, v1.SenderAddress })
  end)

  it("PUT takes the Go client's OAuth body with nulls and RequestHeaders, and keeps them", function()
    local p = assert(store:update(cjson.decode(GO_PUT_OAUTH), V2))
    has_model_fields(p, RESPONSE_TYPES)
    assert.are.same({ "app-1", "", "" }, { p.ClientId.SecretValue, p.Audience, p.SenderName })
    assert.are.same({ { Name = "X-Tenant", Value = "contoso" } }, p.RequestHeaders)
    assert.are.same(NULL_SECRET, p.ClientSecret)
    assert.is_false(H.mentions(p, "Go-Client-Secret-2"))
    -- A version 1 PUT has no RequestHeaders: the stored ones stay.
    assert(store:update({ Host = "smtp.office365.com", Port = 587, RelayAuthenticationType = 3, UseSSL = true,
      SenderAccount = "pki@example.com" }))
    assert.are.same({ { Name = "X-Tenant", Value = "contoso" } }, store:get(V2).RequestHeaders)
    -- Not with another endpoint: they may carry a gateway's key.
    assert(store:update({ Host = "smtp.office365.com", Port = 587, RelayAuthenticationType = 3, UseSSL = true,
      SenderAccount = "pki@example.com", TokenEndpoint = "https://elsewhere.example.net/token", ClientSecret = "cs" }))
    assert.are.same({}, store:get(V2).RequestHeaders)
    assert(store:update(cjson.decode(GO_PUT_OAUTH), V2))
    -- An empty list clears them.
    local body = cjson.decode(GO_PUT_OAUTH)
    body.RequestHeaders = {}
    assert.are.same({}, assert(store:update(body, V2)).RequestHeaders)
  end)

  it("takes bare strings for RelayUsername and ClientId, as a courtesy", function()
    local body = cjson.decode(GO_PUT_PASSWORD)
    body.RelayUsername = "plain-user"
    assert.are.equal("plain-user", assert(store:update(body, V2)).RelayUsername.SecretValue)
  end)

  it("has no SenderAddress and no Id in a request: both are ignored as unknown fields", function()
    local p = assert(store:update({ Host = "mail.example.com", SenderAccount = "a@example.com",
      SenderAddress = "ignored@example.com", Id = 7 }, V2))
    assert.are.equal("a@example.com", p.SenderAccount)
    assert.is_nil(p.SenderAddress)
    local _, err = store:update({ Host = "mail.example.com", SenderAddress = "b@example.com" }, V2)
    assert.are.equal("SenderAccount", err.field)
  end)

  describe("null", function()
    local base = { Host = "mail.example.com", Port = 25, SenderAccount = "a@example.com" }
    it("is no value where the models allow it", function()
      for _, name in ipairs { "SenderName", "TokenEndpoint", "Scope", "Audience", "RelayUsername", "RelayPassword",
          "ClientId", "ClientSecret", "RequestHeaders" } do
        local p, err = store:update(H.with(base, { [name] = NULL }), V2)
        assert.is_nil(err, name)
        assert.are.equal("mail.example.com", p.Host, name)
      end
      -- Inside a secret object every member may be null.
      assert(store:update(H.with(base, { RelayPassword = NULL_SECRET }), V2))
    end)

    it("is refused, naming the field, where the models have none", function()
      for _, name in ipairs { "Port", "RelayAuthenticationType", "UseSSL" } do
        local p, err = store:update(H.with(base, { [name] = NULL }), V2)
        assert.is_nil(p)
        assert.are.same({ 400, name }, { err.status, err.field })
        assert.truthy(err.Message:find("not null", 1, true), err.Message)
      end
      -- SMTPSMTPTestRequest's required fields are neither null nor absent.
      local test = { Host = "localhost", Port = 25, RelayAuthenticationType = 0, SenderAccount = "a@example.com",
        SenderName = "", TestRecipient = "ops@example.com" }
      for _, name in ipairs { "Host", "Port", "RelayAuthenticationType", "SenderAccount", "SenderName", "TestRecipient" } do
        local _, err = store:test(H.with(test, { [name] = NULL }), V2)
        assert.are.same({ 400, name }, { err.status, err.field }, name)
        _, err = store:test(H.with(test, { [name] = H.NONE }), V2)
        assert.are.same({ 400, name }, { err.status, err.field }, name)
        assert.truthy(err.Message:find("required", 1, true), err.Message)
      end
    end)

    it("is still no value anywhere in version 1, as before", function()
      assert(store:update(H.with(base, { Port = NULL, UseSSL = NULL })))
    end)
  end)

  it("refuses a wrong JSON type in each field, naming it", function()
    local base = { Host = "mail.example.com", Port = 25, SenderAccount = "a@example.com" }
    local wrong = {
      Host = 5, Port = "x", RelayAuthenticationType = true, UseSSL = "maybe", SenderAccount = {}, SenderName = 1,
      TokenEndpoint = false, Scope = {}, Audience = 3,
      RelayUsername = 7, RelayPassword = true, ClientId = 1.5, ClientSecret = false,
      RequestHeaders = "X-A: b",
    }
    for name, v in pairs(wrong) do
      local p, err = store:update(H.with(base, { [name] = v }), V2)
      assert.is_nil(p, name)
      assert.are.same({ 400, name }, { err.status, err.field }, name .. ": " .. tostring(err and err.Message))
    end
    for name, v in pairs {
      SecretValue = 5, Parameters = "Path=x", Provider = "first",
    } do
      local _, err = store:update(H.with(base, { RelayPassword = { [name] = v } }), V2)
      assert.are.same({ 400, "RelayPassword" }, { err.status, err.field }, name)
      assert.truthy(err.Message:find("RelayPassword." .. name, 1, true), err.Message)
    end
  end)

  it("refuses a secret object with both a value and a provider, or parameters without one", function()
    local base = { Host = "mail.example.com", SenderAccount = "a@example.com", RelayAuthenticationType = 2,
      RelayUsername = { SecretValue = "u" } }
    local _, err = store:update(H.with(base, { RelayPassword = { SecretValue = "x", Provider = 1, Parameters = { Path = "p" } } }),
      { api_version = 2, secret_providers = { [1] = { type = "file", dir = "/run/secrets" } } })
    assert.are.same({ 400, "RelayPassword" }, { err.status, err.field })
    assert.truthy(err.Message:find("not both", 1, true), err.Message)
    _, err = store:update(H.with(base, { RelayPassword = { Parameters = { Path = "p" } } }), V2)
    assert.truthy(err.Message:find("RelayPassword.Parameters needs RelayPassword.Provider", 1, true), err.Message)
  end)

  describe("RequestHeaders", function()
    local base = { Host = "mail.example.com", SenderAccount = "a@example.com" }
    local function refused(headers, needle)
      local p, err = store:update(H.with(base, { RequestHeaders = headers }), V2)
      assert.is_nil(p)
      assert.are.same({ 400, "RequestHeaders" }, { err.status, err.field })
      assert.truthy(err.Message:find(needle, 1, true), err.Message)
    end

    it("are stored and returned as given, Value null as empty", function()
      local p = assert(store:update(H.with(base, { RequestHeaders = {
        { Name = "X-Tenant", Value = "contoso" }, { name = "Ocp-Apim-Trace", value = NULL } } }), V2))
      assert.are.same({ { Name = "X-Tenant", Value = "contoso" }, { Name = "Ocp-Apim-Trace", Value = "" } }, p.RequestHeaders)
      assert.are.same(p.RequestHeaders, store:get(V2).RequestHeaders)
    end)

    it("refuse what would break or bend the token request, naming the entry", function()
      refused({ { Name = "X-A", Value = "1" }, { Name = "Bad Name", Value = "x" } }, "RequestHeaders[2].Name")
      refused({ { Name = "X-A", Value = "a\r\nHost: evil.example" } }, "RequestHeaders[1].Value holds a line break")
      refused({ { Name = "X-A", Value = "a\0b" } }, "RequestHeaders[1].Value holds")
      refused({ { Name = "X-A:", Value = "a" } }, "RequestHeaders[1].Name")
      refused({ { Value = "a" } }, "RequestHeaders[1].Name is required")
      refused({ "X-A: b" }, "RequestHeaders[1] must be an object")
      refused({ { Name = "X-A", Value = "1" }, { Name = "x-a", Value = "2" } }, "given twice")
      for _, name in ipairs { "Host", "Content-Length", "authorization", "Transfer-Encoding", "Content-Type",
          "Connection", "Proxy-Authorization", "Accept" } do
        refused({ { Name = "X-Ok", Value = "1" }, { Name = name, Value = "x" } }, "RequestHeaders[2].Name " .. name)
      end
      local many = {}
      for i = 1, 21 do many[i] = { Name = "X-H" .. i, Value = "v" } end
      refused(many, "at most 20")
      refused({ { Name = "X-Big", Value = ("v"):rep(4097) } }, "longer than 4096")
      local big = {}
      for i = 1, 3 do big[i] = { Name = "X-B" .. i, Value = ("v"):rep(4000) } end
      refused(big, "larger than 8192")
    end)
  end)

  it("a test answers SMTPSMTPTestRequest's fields in Lua, the Go client's body accepted", function()
    local smtp = H.start_smtp { mode = "plain" }
    finally(function() smtp:stop() end)
    local res, info = store:test(cjson.decode(go_test_body(smtp.port)), V2)
    assert.is_nil(info.Message)
    has_model_fields(res, TEST_TYPES)
    assert.are.equal("ops@example.com", res.TestRecipient)
    assert.are.equal(1, #smtp:messages())
  end)

  it("sends RequestHeaders with the token request only, and keys the token cache on them", function()
    local tokens = H.start_token_server("app-hdr", "Hdr-Client-Secret-3")
    local relay = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    local other
    -- One finally: busted keeps only the last one given.
    finally(function()
      relay:stop() tokens:stop()
      if other then other:stop() end
    end)
    local opts = { api_version = 2, ca_file = H.certs().ca }
    local body = { Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = { SecretValue = "pki@example.com" }, ClientId = { SecretValue = "app-hdr" },
      ClientSecret = { SecretValue = "Hdr-Client-Secret-3" }, TokenEndpoint = tokens.url, Scope = "hdr-scope",
      SenderAccount = "pki@example.com", SenderName = "", RequestHeaders = { { Name = "X-Tenant", Value = "contoso" } } }
    assert(store:update(body, opts))
    local function sent_headers()
      local seen = {}
      for _, pair in ipairs(H.decode_json(H.read(tokens.dir .. "/last_request.json")).headers) do
        seen[pair[1]:lower()] = pair[2]
      end
      return seen
    end
    -- What a form that loaded the profile sends: no secret, no headers.
    local test = H.with(body, { ClientSecret = H.NONE, RequestHeaders = H.NONE, TestRecipient = "ops@example.com" })
    local _, info = store:test(test, opts)
    assert.is_nil(info.Message, info.Message)
    assert.are.equal("contoso", sent_headers()["x-tenant"])
    assert.are.equal(1, tokens:requests())
    assert.falsy(relay:commands():find("contoso", 1, true), "the relay never sees them")
    -- The same headers: the cached token. Others: a token of their own.
    assert.is_nil(select(2, store:test(test, opts)).Message)
    assert.are.equal(1, tokens:requests())
    local _, info3 = store:test(H.with(test, { RequestHeaders = { { Name = "X-Tenant", Value = "fabrikam" } } }), opts)
    assert.is_nil(info3.Message, info3.Message)
    assert.are.equal(2, tokens:requests())
    assert.are.equal("fabrikam", sent_headers()["x-tenant"])
    -- Stored headers go with the stored endpoint only.
    other = H.start_token_server("app-hdr", "Hdr-Client-Secret-3")
    -- (The relay takes only the first endpoint's tokens: the test itself
    -- fails at auth, after the token request this is about.)
    store:test(H.with(test, { TokenEndpoint = other.url, ClientSecret = { SecretValue = "Hdr-Client-Secret-3" } }), opts)
    assert.are.equal(1, other:requests())
    local seen = {}
    for _, pair in ipairs(H.decode_json(H.read(other.dir .. "/last_request.json")).headers) do seen[pair[1]:lower()] = pair[2] end
    assert.is_nil(seen["x-tenant"])
  end)
end)
