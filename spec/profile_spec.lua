-- Unit specs for kfsmtp.profile: the fields and their coercion, the input
-- rules, which stored secret a request may reuse, and the shapes kfsmtp
-- answers with and stores. Pure functions over tables: no server, no file.
local profile = require "kfsmtp.profile"
local errors = require "kfsmtp.errors"
local core = require "kfsmtp.core"
local H = require "helpers"
local cjson = require "cjson"
local with = H.with

local null = cjson.null

local NONE = H.NONE


-- A request that passes every rule of an update; a test adds TestRecipient.
local UPDATE = { Host = "mail.example.com", Port = 587, SenderAccount = "kf@example.com" }
local TEST = with(UPDATE, { TestRecipient = "ops@example.com" })

-- The error is a 400 (or the status given) of kind `kind` (invalid_field
-- by default) for `field`, found while validating, and its Message names
-- the field.
local function is_field_error(err, field, kind, status)
  kind = kind or "invalid_field"
  assert.is_table(err, "expected an error table")
  assert.is_true(errors.is_error(err))
  assert.are.equal(kind, err.kind)
  assert.are.equal(errors.CODES[kind][1], err.ErrorCode)
  assert.are.equal(status or 400, err.status)
  assert.are.equal(field, err.field)
  assert.are.equal("validate", err.stage)
  assert.truthy(err.Message:find(field, 1, true), "Message names " .. field .. ": " .. err.Message)
  return err
end

-- fn(...) returns nil, err: err must be a field error as above.
local function refuses(field, fn, ...)
  local value, err = fn(...)
  assert.is_nil(value)
  return is_field_error(err, field)
end

local function says(err, phrase)
  assert.truthy(err.Message:find(phrase, 1, true), ("Message %q lacks %q"):format(err.Message, phrase))
end

local function is_integer(n)
  assert.is_number(n)
  assert.are.equal(math.floor(n), n)
  if math.type then assert.are.equal("integer", math.type(n)) end
end

describe("profile.normalize", function()
  it("matches field names case-insensitively and gives the canonical names", function()
    local t = assert(profile.normalize { host = "mail.example.com", PORT = "587", usessl = "TRUE",
      relayauthenticationtype = "2", SENDERACCOUNT = "kf@example.com", relayPassword = "pw" })
    assert.are.same({ Host = "mail.example.com", Port = 587, UseSSL = true, RelayAuthenticationType = 2,
      SenderAccount = "kf@example.com", RelayPassword = "pw" }, t)
    is_integer(t.Port)
    is_integer(t.RelayAuthenticationType)
  end)

  it("ignores unknown names and keys that are not strings", function()
    local t = assert(profile.normalize { Host = "mail.example.com", Colour = "blue", HostName = "x", [1] = "Port", [true] = 1 })
    assert.are.same({ Host = "mail.example.com" }, t)
  end)

  it("takes JSON null as absent, for plain and SecretValue fields", function()
    local t = assert(profile.normalize(cjson.decode(
      '{"Host":null,"SenderName":null,"Port":587,"UseSSL":null,"RelayPassword":{"SecretValue":null}}')))
    assert.are.same({ Port = 587 }, t)
    assert.are.same({}, assert(profile.normalize { ClientSecret = { SecretValue = null }, Id = null }))
  end)

  it("refuses a field given twice in two letter cases, as ambiguous_field", function()
    local t, err = profile.normalize { Host = "a.example.com", host = "b.example.com" }
    assert.is_nil(t)
    is_field_error(err, "Host", "ambiguous_field")
    assert.are.equal("0xA0530002", err.ErrorCode)
    says(err, '"Host"')
    says(err, '"host"')
    says(err, "send it once")
  end)

  it("counts a null as given when the other letter case is also given", function()
    local _, err = profile.normalize { SenderName = null, sendername = "KF" }
    is_field_error(err, "SenderName", "ambiguous_field")
  end)

  it("coerces decimal strings and whole floats to integers", function()
    local t = assert(profile.normalize { Port = "587", Id = "1", RelayAuthenticationType = 3.0 })
    assert.are.same({ Port = 587, Id = 1, RelayAuthenticationType = 3 }, t)
    is_integer(t.Port)
    is_integer(t.Id)
    is_integer(t.RelayAuthenticationType)
    assert.are.equal(25, profile.normalize({ Port = "+25" }).Port)
  end)

  it("coerces the strings true and false in any case to booleans", function()
    assert.is_true(profile.normalize({ UseSSL = "true" }).UseSSL)
    assert.is_true(profile.normalize({ UseSSL = "True" }).UseSSL)
    assert.is_false(profile.normalize({ UseSSL = "FALSE" }).UseSSL)
    assert.is_false(profile.normalize({ UseSSL = false }).UseSSL)
  end)

  it("refuses what is not a whole number, naming the field and what was given", function()
    says(refuses("Port", profile.normalize, { Port = "x" }), "Port must be a whole number, not the text given.")
    says(refuses("Port", profile.normalize, { Port = 25.5 }), "not a number")
    says(refuses("Port", profile.normalize, { Port = true }), "not a boolean")
    says(refuses("Id", profile.normalize, { Id = { 1 } }), "not a table")
    refuses("Port", profile.normalize, { Port = "25 " })
    refuses("Port", profile.normalize, { Port = "1234567890123456" }) -- over 15 digits
    refuses("RelayAuthenticationType", profile.normalize, { RelayAuthenticationType = "2.0" })
  end)

  it("refuses booleans other than true, false and their strings", function()
    says(refuses("UseSSL", profile.normalize, { UseSSL = "yes" }), "UseSSL must be true or false, not the text given.")
    says(refuses("UseSSL", profile.normalize, { UseSSL = 1 }), "not a number")
  end)

  it("refuses a string field given as another type", function()
    says(refuses("Host", profile.normalize, { Host = 42 }), "Host must be a string, not a number.")
    says(refuses("SenderName", profile.normalize, { SenderName = false }), "not a boolean")
    says(refuses("Host", profile.normalize, { Host = { SecretValue = "mail.example.com" } }), "not a table")
  end)

  it("refuses control characters in a string field without echoing it", function()
    local err = refuses("RelayUsername", profile.normalize, { RelayUsername = "svc\r\nRCPT TO:<x@evil.example>" })
    assert.falsy(err.Message:find("evil", 1, true))
  end)

  it("unwraps {SecretValue = ...} for RelayPassword and ClientSecret, in any letter case", function()
    local t = assert(profile.normalize { RelayPassword = { SecretValue = "pw" }, ClientSecret = { secretvalue = "cs" } })
    assert.are.same({ RelayPassword = "pw", ClientSecret = "cs" }, t)
    assert.are.same({ RelayPassword = "plain" }, profile.normalize { relaypassword = "plain" })
  end)

  it("refuses a SecretValue that is not a string", function()
    says(refuses("RelayPassword", profile.normalize, { RelayPassword = { SecretValue = 5 } }),
      "RelayPassword.SecretValue must be a string.")
    says(refuses("ClientSecret", profile.normalize, { ClientSecret = { SecretValue = true } }),
      "ClientSecret.SecretValue must be a string.")
    refuses("ClientSecret", profile.normalize, { ClientSecret = { SecretValue = { "nested" } } })
  end)

  it("checks the string inside a SecretValue like any string", function()
    refuses("RelayPassword", profile.normalize, { RelayPassword = { SecretValue = "pw\0x" } })
  end)
end)

describe("profile.read and profile.check", function()
  it("fills the defaults of an update: Id 1, Port from core.DEFAULTS, type 0, UseSSL false", function()
    local t = assert(profile.read({ Host = "mail.example.com", SenderAccount = "kf@example.com" }, false))
    assert.are.same({ Id = 1, Host = "mail.example.com", Port = core.DEFAULTS.port, RelayAuthenticationType = 0,
      RelayUsername = "", SenderAccount = "kf@example.com", SenderName = "", UseSSL = false }, t)
    assert.are.equal(25, t.Port)
    is_integer(t.Port)
  end)

  it("check fills the defaults in place and returns nothing for a good profile", function()
    local t = with(UPDATE)
    assert.is_nil(profile.check(t, false))
    assert.are.same({ 1, 587, 0, "", "", false }, { t.Id, t.Port, t.RelayAuthenticationType, t.RelayUsername, t.SenderName, t.UseSSL })
  end)

  it("keeps what was given over the defaults", function()
    local t = assert(profile.read(with(TEST, { Port = "465", UseSSL = "true", SenderName = "Keyfactor" }), true))
    assert.are.same({ 465, true, "Keyfactor", "ops@example.com" }, { t.Port, t.UseSSL, t.SenderName, t.TestRecipient })
  end)

  it("requires Port for a test but not for an update", function()
    says(refuses("Port", profile.read, with(TEST, { Port = NONE }), true), "Port is required")
    assert.are.equal(25, assert(profile.read(with(TEST, { Port = NONE }), false)).Port)
  end)

  it("refuses a Port outside 1 to 65535", function()
    for _, port in ipairs { 0, 65536, -25 } do
      says(refuses("Port", profile.read, with(UPDATE, { Port = port }), false), "from 1 to 65535")
    end
    assert.are.equal(65535, assert(profile.read(with(UPDATE, { Port = 65535 }))).Port)
  end)

  it("requires Host and checks it", function()
    says(refuses("Host", profile.read, with(UPDATE, { Host = NONE }), false), "Host is required")
    refuses("Host", profile.read, with(UPDATE, { Host = "" }), false)
    refuses("Host", profile.read, with(UPDATE, { Host = "smtp://mail.example.com" }), false)
    refuses("Host", profile.read, with(UPDATE, { Host = "mail.example.com:587" }), false)
  end)

  it("requires SenderAccount, a mailbox", function()
    says(refuses("SenderAccount", profile.read, with(UPDATE, { SenderAccount = NONE }), false), "SenderAccount is required")
    refuses("SenderAccount", profile.read, with(UPDATE, { SenderAccount = "Keyfactor <kf@example.com>" }), false)
  end)

  it("takes SenderAddress for SenderAccount when SenderAccount is absent, and drops it", function()
    local t = assert(profile.read(with(UPDATE, { SenderAccount = NONE, SenderAddress = "legacy@example.com" }), false))
    assert.are.equal("legacy@example.com", t.SenderAccount)
    assert.is_nil(t.SenderAddress)
    t = assert(profile.read(with(UPDATE, { SenderAccount = "", senderaddress = "legacy@example.com" }), false))
    assert.are.equal("legacy@example.com", t.SenderAccount)
  end)

  it("names SenderAddress when the fallback is not a mailbox", function()
    refuses("SenderAddress", profile.read, with(UPDATE, { SenderAccount = NONE, SenderAddress = "nope" }), false)
  end)

  it("prefers SenderAccount over SenderAddress", function()
    local t = assert(profile.read(with(UPDATE, { SenderAddress = "legacy@example.com" }), false))
    assert.are.equal("kf@example.com", t.SenderAccount)
    assert.is_nil(t.SenderAddress)
  end)

  it("refuses a SenderName with a line break", function()
    refuses("SenderName", profile.read, with(UPDATE, { SenderName = "Keyfactor\r\nBcc: victim@example.com" }), false)
  end)

  it("refuses an unsupported RelayAuthenticationType and lists the supported ones", function()
    for _, auth in ipairs { 1, 4, -1 } do
      local err = refuses("RelayAuthenticationType", profile.read, with(UPDATE, { RelayAuthenticationType = auth }), false)
      says(err, ("RelayAuthenticationType %d is not supported"):format(auth))
      says(err, "0 (anonymous), 2 (username and password) and 3 (OAuth 2.0 client credentials)")
    end
  end)

  it("requires RelayUsername with type 2, but not the password (checked with the stored one later)", function()
    says(refuses("RelayUsername", profile.read, with(UPDATE, { RelayAuthenticationType = 2 }), false),
      "RelayUsername is required when RelayAuthenticationType is 2")
    refuses("RelayUsername", profile.read, with(UPDATE, { RelayAuthenticationType = 2, RelayUsername = "" }), false)
    local t = assert(profile.read(with(UPDATE, { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc" }), false))
    assert.are.equal("CORP\\svc", t.RelayUsername)
    assert.is_nil(t.RelayPassword)
  end)

  it("leaves the OAuth fields of type 3 to resolve_oauth", function()
    local t = assert(profile.read(with(UPDATE, { RelayAuthenticationType = 3 }), false))
    assert.are.equal(3, t.RelayAuthenticationType)
    assert.is_nil(t.ClientId)
  end)

  it("requires TestRecipient, one mailbox, for a test only", function()
    says(refuses("TestRecipient", profile.read, with(TEST, { TestRecipient = NONE }), true), "TestRecipient is required")
    refuses("TestRecipient", profile.read, with(TEST, { TestRecipient = "ops" }), true)
    refuses("TestRecipient", profile.read, with(TEST, { TestRecipient = "a@example.com, b@example.com" }), true)
    assert.is_table(profile.read(with(UPDATE, { TestRecipient = NONE }), false))
  end)

  it("answers any Id other than 1 with unknown_id, a 404", function()
    for _, id in ipairs { 2, "2", 0 } do
      local t, err = profile.read(with(UPDATE, { Id = id }), false)
      assert.is_nil(t)
      is_field_error(err, "Id", "unknown_id", 404)
      assert.are.equal("0xA0530003", err.ErrorCode)
      says(err, "only profile 1 exists")
    end
    assert.are.equal(1, assert(profile.read(with(UPDATE, { Id = "1" }), false)).Id)
  end)

  it("passes a coercion error through", function()
    says(refuses("Port", profile.read, with(TEST, { Port = "x" }), true), "whole number")
  end)
end)

describe("profile.resolve_oauth", function()
  local STORED = { ClientId = "app-1", ClientSecret = "stored-secret",
    TokenEndpoint = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
    Scope = "https://outlook.office365.com/.default", Audience = "api://mail" }

  -- resolve_oauth(t, stored) must refuse with an error naming `field`.
  local function refuses_oauth(field, t, stored)
    local err = profile.resolve_oauth(t, stored or {})
    return is_field_error(err, field)
  end

  it("fills every absent OAuth field, the secret too, from the stored record", function()
    local t = {}
    assert.is_nil(profile.resolve_oauth(t, STORED))
    assert.are.same(STORED, t)
  end)

  it("keeps what the request gives over the stored values", function()
    local t = { Scope = "https://graph.example.com/.default", ClientSecret = "new-secret" }
    assert.is_nil(profile.resolve_oauth(t, STORED))
    assert.are.equal("https://graph.example.com/.default", t.Scope)
    assert.are.equal("new-secret", t.ClientSecret)
    assert.are.equal(STORED.ClientId, t.ClientId)
  end)

  it("reuses the stored ClientSecret while ClientId and TokenEndpoint are the stored ones", function()
    local t = { ClientId = STORED.ClientId, TokenEndpoint = STORED.TokenEndpoint, ClientSecret = "" }
    assert.is_nil(profile.resolve_oauth(t, STORED))
    assert.are.equal("stored-secret", t.ClientSecret)
  end)

  it("reuses the stored ClientSecret only for the stored client, endpoint, scope, audience, Host, Port and TLS", function()
    local moves = { ClientId = "app-2", TokenEndpoint = "https://login.example.net/token",
      Scope = "https://graph.microsoft.com/.default", Audience = "api://other", Host = "attacker.example.net",
      Port = 2525 }
    for field, value in pairs(moves) do
      local t = { [field] = value }
      local err = refuses_oauth("ClientSecret", t, STORED)
      says(err, "ClientSecret must be entered again: " .. field .. " differs from the stored profile")
      assert.is_nil(t.ClientSecret)
    end
    local tls_stored = with(STORED, { UseSSL = true })
    says(refuses_oauth("ClientSecret", { UseSSL = false }, tls_stored), "UseSSL differs")
    local err = profile.resolve_oauth({ UseSSL = true }, tls_stored, "none")
    says(is_field_error(err, "ClientSecret"), "tls_mode \"none\" differs")
  end)

  it("needs a ClientSecret when none is stored", function()
    says(refuses_oauth("ClientSecret", { ClientId = "app-2" }, with(STORED, { ClientSecret = NONE })),
      "ClientSecret is required when RelayAuthenticationType is 3")
  end)

  it("names each missing required field; Audience is optional", function()
    local full = { ClientId = "app-1", ClientSecret = "s", TokenEndpoint = "https://login.example.com/token", Scope = "mail" }
    for _, name in ipairs { "ClientId", "TokenEndpoint", "Scope" } do
      local err = refuses_oauth(name, with(full, { [name] = NONE }))
      says(err, name .. " is required when RelayAuthenticationType is 3 (OAuth 2.0 client credentials).")
      refuses_oauth(name, with(full, { [name] = "" }))
    end
    refuses_oauth("ClientSecret", with(full, { ClientSecret = NONE }))
    local t = with(full)
    assert.is_nil(profile.resolve_oauth(t, {}))
    assert.is_nil(t.Audience)
  end)

  local function endpoint(url)
    return profile.resolve_oauth({ ClientId = "app", ClientSecret = "s", Scope = "mail", TokenEndpoint = url }, {})
  end

  it("accepts https endpoints, and http only to a loopback host", function()
    for _, url in ipairs { "https://login.microsoftonline.com/tenant/oauth2/v2.0/token", "HTTPS://login.example.com:8443/token",
      "https://[2001:db8::1]/token", "http://127.0.0.1:8080/token", "http://127.10.0.2/token",
      "http://localhost:9000/token", "http://LOCALHOST/token", "http://[::1]:9000/token" } do
      assert.is_nil(endpoint(url), url)
    end
  end)

  it("refuses other endpoints, saying why", function()
    for url, why in pairs {
      ["http://login.example.com/token"] = "must use https (plain http is accepted only for a loopback host",
      ["http://127.0.0.1.example.com/token"] = "must use https",
      ["http://192.0.2.1/token"] = "must use https",
      ["ftp://login.example.com/token"] = "must use https",
      ["https://user:pw@login.example.com/token"] = "must not carry a user or password",
      ["https://user@login.example.com/token"] = "must not carry a user or password",
      ["login.example.com/token"] = "must be the token endpoint's https:// URL",
      ["//login.example.com/token"] = "must be the token endpoint's https:// URL",
      ["https:///token"] = "has no host",
      ["https://login.example.com/a token"] = "contains whitespace",
    } do
      local err = is_field_error(endpoint(url), "TokenEndpoint")
      says(err, "TokenEndpoint " .. why)
    end
  end)
end)

describe("profile.stored_password", function()
  local STORED = { Host = "mail.example.com", Port = 587, UseSSL = true, RelayUsername = "CORP\\svc",
    RelayPassword = "stored-pw" }

  local function request(over)
    return with({ Host = "mail.example.com", Port = 587, UseSSL = true, RelayUsername = "CORP\\svc" }, over)
  end

  it("gives the request's password first, wherever it goes", function()
    assert.are.equal("new-pw", profile.stored_password(request { RelayPassword = "new-pw" }, STORED))
    assert.are.equal("new-pw", profile.stored_password(request { RelayPassword = "new-pw", Host = "other.example.com" }, STORED, "none"))
    assert.are.equal("new-pw", profile.stored_password(request { RelayPassword = "new-pw" }, {}))
  end)

  it("reuses the stored one while Host, Port, RelayUsername and TLS are the stored ones", function()
    assert.are.equal("stored-pw", profile.stored_password(request {}, STORED))
    assert.are.equal("stored-pw", profile.stored_password(request { RelayPassword = "" }, STORED))
    assert.are.equal("stored-pw", profile.stored_password(request {}, STORED, "implicit"))
    -- Stronger TLS than stored is fine.
    local plain = with(STORED, { UseSSL = false })
    assert.are.equal("stored-pw", profile.stored_password(request {}, plain))
    assert.are.equal("stored-pw", profile.stored_password(request { UseSSL = false }, plain, "none"))
  end)

  it("names the field that moved and asks for the password again", function()
    for field, value in pairs { Host = "attacker.example.net", Port = 2525, RelayUsername = "CORP\\other" } do
      local err = refuses("RelayPassword", profile.stored_password, request { [field] = value }, STORED)
      says(err, "RelayPassword must be entered again: " .. field .. " differs from the stored profile")
    end
  end)

  it("is not sent over weaker TLS than it was entered for", function()
    local err = refuses("RelayPassword", profile.stored_password, request { UseSSL = false }, STORED)
    says(err, "UseSSL differs")
    err = refuses("RelayPassword", profile.stored_password, request {}, STORED, "none")
    says(err, "tls_mode \"none\" differs")
  end)

  it("is not sent in clear by forcing a mechanism that carries it", function()
    local plain = with(STORED, { UseSSL = false })
    for _, mech in ipairs { "PLAIN", "LOGIN" } do
      local err = refuses("RelayPassword", profile.stored_password, request { UseSSL = false }, plain, nil, mech)
      says(err, "auth_mechanism " .. mech .. " would send the stored password in clear")
      refuses("RelayPassword", profile.stored_password, request { UseSSL = false }, plain, "none", mech)
    end
    assert.are.equal("stored-pw", profile.stored_password(request { UseSSL = false }, plain, nil, "CRAM-MD5"))
    assert.are.equal("stored-pw", profile.stored_password(request {}, STORED, nil, "PLAIN"))
    assert.are.equal("typed", profile.stored_password(request { UseSSL = false, RelayPassword = "typed" }, plain, nil, "PLAIN"))
  end)

  it("needs a password when none, or an empty one, is stored", function()
    local err = refuses("RelayPassword", profile.stored_password, request {}, {})
    says(err, "RelayPassword is required when RelayAuthenticationType is 2")
    refuses("RelayPassword", profile.stored_password, request {}, with(STORED, { RelayPassword = "" }))
  end)
end)

describe("profile.record", function()
  local FULL = { Host = "mail.example.com", Id = 1, Port = 587, RelayUsername = "CORP\\svc", RelayPassword = "pw",
    SenderAccount = "kf@example.com", SenderAddress = "kf@example.com", SenderName = "KF", UseSSL = true,
    TestRecipient = "ops@example.com", ClientId = "app", ClientSecret = "cs", TokenEndpoint = "https://login.example.com/token",
    Scope = "mail", Audience = "aud" }
  local BASE = { Host = "mail.example.com", Id = 1, Port = 587, RelayUsername = "CORP\\svc",
    SenderAccount = "kf@example.com", SenderName = "KF", UseSSL = true }

  it("type 0 keeps no secret and no OAuth field", function()
    assert.are.same(with(BASE, { RelayAuthenticationType = 0 }), profile.record(with(FULL, { RelayAuthenticationType = 0 })))
  end)

  it("type 2 keeps RelayPassword only", function()
    assert.are.same(with(BASE, { RelayAuthenticationType = 2, RelayPassword = "pw" }),
      profile.record(with(FULL, { RelayAuthenticationType = 2 })))
  end)

  it("type 3 keeps the OAuth fields and ClientSecret, not RelayPassword", function()
    assert.are.same(with(BASE, { RelayAuthenticationType = 3, ClientId = "app", ClientSecret = "cs",
      TokenEndpoint = "https://login.example.com/token", Scope = "mail", Audience = "aud" }),
      profile.record(with(FULL, { RelayAuthenticationType = 3 })))
  end)
end)

describe("profile.profile_out", function()
  local V1_TYPES = { Host = "string", Id = "number", Port = "number", RelayAuthenticationType = "number",
    RelayUsername = "string", SenderAccount = "string", SenderAddress = "string", SenderName = "string",
    UseSSL = "boolean" }

  -- Exactly the fields of `types`, each of its type.
  local function has_fields(p, types)
    for name, ty in pairs(types) do assert.are.equal(ty, type(p[name]), name) end
    for name in pairs(p) do assert.is_not_nil(types[name], "unexpected field " .. name) end
  end

  local STORED = { Host = "mail.example.com", Id = 1, Port = 587, RelayAuthenticationType = 3,
    RelayUsername = "kf@example.com", RelayPassword = "pw", SenderAccount = "kf@example.com", SenderName = "KF",
    UseSSL = true, ClientId = "app", ClientSecret = "cs", TokenEndpoint = "https://login.example.com/token", Scope = "mail" }

  it("v1: every field with its type and default for an empty record", function()
    local p = profile.profile_out({}, 1)
    assert.are.same({ Host = "", Id = 1, Port = core.DEFAULTS.port, RelayAuthenticationType = 0, RelayUsername = "",
      SenderAccount = "", SenderAddress = "", SenderName = "", UseSSL = false }, p)
    has_fields(p, V1_TYPES)
  end)

  it("v1: the stored values, SenderAddress echoing SenderAccount, no secret and no OAuth field", function()
    local p = profile.profile_out(STORED, 1)
    has_fields(p, V1_TYPES)
    assert.are.same({ "mail.example.com", 587, 3, "kf@example.com", "kf@example.com", "KF", true },
      { p.Host, p.Port, p.RelayAuthenticationType, p.SenderAccount, p.SenderAddress, p.SenderName, p.UseSSL })
    is_integer(p.Port)
    assert.are.same(profile.profile_out(STORED, 1), profile.profile_out(STORED))
  end)

  -- SMTPSMTPResponse of Keyfactor's version 2 client, field for field.
  local V2_TYPES = { Host = "string", Id = "number", Port = "number", RelayAuthenticationType = "number",
    RelayUsername = "table", RelayPassword = "table", SenderAccount = "string", SenderName = "string",
    UseSSL = "boolean", ClientId = "table", ClientSecret = "table", TokenEndpoint = "string", Scope = "string",
    Audience = "string", RequestHeaders = "table" }
  local NULL_SECRET = { SecretValue = cjson.null, Parameters = cjson.null, Provider = cjson.null }

  it("v2: SMTPSMTPResponse's fields, credentials as secret objects, never a secret's value", function()
    local p = profile.profile_out(STORED, 2)
    has_fields(p, V2_TYPES)
    assert.are.same({ "https://login.example.com/token", "mail", "" }, { p.TokenEndpoint, p.Scope, p.Audience })
    assert.are.same({ SecretValue = "app", Parameters = cjson.null, Provider = cjson.null }, p.ClientId)
    assert.are.same({ SecretValue = "kf@example.com", Parameters = cjson.null, Provider = cjson.null }, p.RelayUsername)
    assert.are.same(NULL_SECRET, p.RelayPassword)
    assert.are.same(NULL_SECRET, p.ClientSecret)
    assert.are.same({}, p.RequestHeaders)
    assert.are.equal("[]", require("kfsmtp.json").encode(p.RequestHeaders))
    local empty = profile.profile_out({}, 2)
    has_fields(empty, V2_TYPES)
    assert.are.equal("", empty.ClientId.SecretValue)
  end)

  it("v2: a reference shows its provider and parameters; version 1 shows it as \"\"", function()
    local ref = { Provider = 2, Parameters = { Name = "SMTP_USER" } }
    local record = with(STORED, { RelayUsername = ref, RelayPassword = { Provider = 1, Parameters = { Path = "pw" } } })
    local p = profile.profile_out(record, 2)
    assert.are.same({ SecretValue = cjson.null, Parameters = { Name = "SMTP_USER" }, Provider = 2 }, p.RelayUsername)
    assert.are.same({ SecretValue = cjson.null, Parameters = { Path = "pw" }, Provider = 1 }, p.RelayPassword)
    assert.are.equal("", profile.profile_out(record, 1).RelayUsername)
  end)
end)

describe("profile.test_out", function()
  it("echoes the test's profile with TestRecipient, without secrets or SenderAddress", function()
    local t = assert(profile.read(with(TEST, { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc",
      RelayPassword = "pw", SenderName = "KF", UseSSL = true }), true))
    assert.are.same({ Host = "mail.example.com", Id = 1, Port = 587, RelayAuthenticationType = 2, RelayUsername = "CORP\\svc",
      SenderAccount = "kf@example.com", SenderName = "KF", TestRecipient = "ops@example.com", UseSSL = true }, profile.test_out(t))
  end)
end)

describe("profile.stored_text and profile.from_stored_text", function()
  local function round_trip(record)
    local text = profile.stored_text(record)
    assert.are.equal("{\n", text:sub(1, 2))
    assert.are.equal("}\n", text:sub(-2))
    assert.are.same(record, assert(profile.from_stored_text(text)))
  end

  it("a record survives the round trip, for each scheme", function()
    local t = assert(profile.read(with(UPDATE, { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "pw/ü\"x",
      SenderName = "Zertifikatsdienst Köln", UseSSL = true }), false))
    round_trip(profile.record(t))
    t = assert(profile.read(with(UPDATE, { RelayAuthenticationType = 3, ClientId = "app", ClientSecret = "cs",
      TokenEndpoint = "https://login.example.com/token", Scope = "mail" }), false))
    round_trip(profile.record(t))
    round_trip(profile.record(assert(profile.read(UPDATE, false))))
  end)

  it("writes the slash of a URL unescaped", function()
    local text = profile.stored_text { TokenEndpoint = "https://login.example.com/token" }
    assert.truthy(text:find('"https://login.example.com/token"', 1, true), text)
  end)

  it("refuses a JSON array, which lua-cjson also decodes to a table", function()
    for _, text in ipairs { "[1,2,3]", " []", '[{"Host":"a"}]' } do
      local t, why = profile.from_stored_text(text)
      assert.is_nil(t)
      assert.are.equal("is not a JSON object (found an array)", why)
    end
    assert.are.equal("is not a JSON object (found null)", select(2, profile.from_stored_text("null")))
  end)

  it("refuses text that is not JSON, or not an object, with a reason and without raising", function()
    for _, text in ipairs { "not json", "", "{", '{"Host":"a"' } do
      local t, why = profile.from_stored_text(text)
      assert.is_nil(t)
      assert.is_string(why)
      assert.truthy(why:match("^is not a JSON object %(.+%)$"), why)
    end
    local _, why = profile.from_stored_text("42")
    assert.are.equal("is not a JSON object (found a number)", why)
  end)

  it("refuses a record with a bad value, with the field's message", function()
    local t, why = profile.from_stored_text('{"Port":"x"}')
    assert.is_nil(t)
    assert.are.equal("holds a bad value (Port must be a whole number, not the text given.)", why)
    local _, twice = profile.from_stored_text('{"Host":"a","host":"b"}')
    assert.truthy(twice:find("^holds a bad value %(Host is given twice"), twice)
  end)
end)
