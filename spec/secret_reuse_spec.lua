-- A caller who may change the profile but is never shown its secrets must
-- not be able to send them anywhere else. Each case is an attack that
-- worked before the rule of SPEC §2 ("only where they were entered"): the
-- attacker's server is a real capture server on loopback, and the spec
-- asserts from its own log that nothing reached it.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"

local USER, PASSWORD = "svc", "Relay-Pw-" .. tostring(os.time())
local CLIENT, CLIENT_SECRET = "app-reuse", "client-Secret-" .. tostring(os.time())
local MAILBOX = "kf-mailbox@example.com"

-- The refusal: a 400 naming the secret and the field that moved.
local function refused(secret, moved, p, err)
  assert.is_nil(p)
  assert.are.equal(400, err.status, err.Message)
  assert.are.equal(secret, err.field)
  assert.truthy(err.Message:find(secret .. " must be entered again: " .. moved, 1, true), err.Message)
end

describe("a stored password", function()
  local relay, attacker, store
  setup(function()
    relay = H.start_smtp { mode = "starttls", auth = USER .. ":" .. PASSWORD }
    attacker = H.start_smtp { mode = "plain", auth = USER .. ":anything", auth_plaintext = true }
  end)
  teardown(function() relay:stop() attacker:stop() end)

  local function profile(over)
    local t = { Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = USER, SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end

  before_each(function()
    store = kfsmtp.open(H.store_path())
    assert(store:update(profile { RelayPassword = PASSWORD }))
  end)

  local function nothing_reached_the_attacker()
    assert.are.equal("", attacker:commands(), "the attacker's server saw a connection")
  end

  it("is used by a test that goes where it was entered", function()
    local _, info = store:test(profile(), { ca_file = H.certs().ca })
    assert.is_nil(info.Message)
    assert.are.equal(USER, relay:messages()[#relay:messages()].meta.auth_login)
  end)

  it("is not sent to another Host, not even by a test after an update", function()
    refused("RelayPassword", "Host", store:update(profile { Host = "127.0.0.2", Port = attacker.port }))
    refused("RelayPassword", "Host", store:test(profile { Host = "127.0.0.2", Port = attacker.port, UseSSL = false }))
    nothing_reached_the_attacker()
    assert.truthy(H.read(store.path):find(PASSWORD, 1, true), "the stored profile is unchanged")
  end)

  it("is not sent to another port of the same host, or in clear", function()
    refused("RelayPassword", "Port", store:test(profile { Port = attacker.port }))
    refused("RelayPassword", "UseSSL", store:test(profile { UseSSL = false }))
    refused("RelayPassword", "tls_mode", store:test(profile(), { tls_mode = "none" }))
    nothing_reached_the_attacker()
  end)

  it("is refused the same way over HTTP", function()
    local srv = H.start_nginx { users = { { "admin", "admin-pass-1", { "all" } } }, workers = 1 }
    finally(function() srv:stop() end)
    assert(kfsmtp.open(srv.store):update(profile { RelayPassword = PASSWORD }))
    local status, body = srv:request { method = "PUT", user = "admin:admin-pass-1",
      body = cjson.encode(profile { Host = "127.0.0.1", Port = attacker.port, UseSSL = false }) }
    assert.are.equal(400, status, body)
    assert.truthy(body:find("RelayPassword must be entered again: Host", 1, true), body)
    status, body = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = "admin:admin-pass-1",
      body = cjson.encode(profile { Port = attacker.port }) }
    assert.are.equal(400, status, body)
    nothing_reached_the_attacker()
  end)
end)

describe("a stored OAuth client secret", function()
  local tokens, relay, attacker, store
  setup(function()
    tokens = H.start_token_server(CLIENT, CLIENT_SECRET)
    relay = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    attacker = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file }
  end)
  teardown(function() relay:stop() attacker:stop() tokens:stop() end)

  local function profile(over)
    local t = { Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, TokenEndpoint = tokens.url, Scope = "https://outlook.office365.com/.default" }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end
  local function opts() return { ca_file = H.certs().ca } end

  before_each(function()
    store = kfsmtp.open(H.store_path())
    assert(store:update(profile { ClientSecret = CLIENT_SECRET }))
  end)

  it("mints no token for another Host, Port, scope or audience", function()
    local fetched = tokens:requests()
    refused("ClientSecret", "Host", store:test(profile { Host = "127.0.0.1", Port = attacker.port }, opts()))
    refused("ClientSecret", "Port", store:test(profile { Port = attacker.port }, opts()))
    refused("ClientSecret", "Scope", store:test(profile { Scope = "https://graph.microsoft.com/.default" }, opts()))
    refused("ClientSecret", "Audience", store:test(profile { Audience = "api://elsewhere" }, opts()))
    refused("ClientSecret", "UseSSL", store:test(profile { UseSSL = false }, opts()))
    assert.are.equal(fetched, tokens:requests(), "the token endpoint was not asked")
    assert.are.equal("", attacker:commands(), "the attacker's server saw a connection")
  end)

  it("is used where it was entered", function()
    local _, info = store:test(profile(), opts())
    assert.is_nil(info.Message)
    assert.are.equal(MAILBOX, relay:messages()[#relay:messages()].meta.auth_login)
  end)
end)
