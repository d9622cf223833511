-- Every input rule of SPEC §2, each failure a 400 (404 for Id) naming its
-- field. These never reach a server: validation comes first.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"

local function valid(over)
  local t = { Host = "mail.example.com", Port = 25, SenderAccount = "kf@example.com",
    TestRecipient = "ops@example.com" }
  for k, v in pairs(over or {}) do
    if v == "<nil>" then t[k] = nil else t[k] = v end
  end
  return t
end

local store
before_each(function() store = kfsmtp.open(H.store_path()) end)

local function rejects(field, over, status, fn)
  local p, err = (fn or store.update)(store, valid(over))
  assert.is_nil(p)
  assert.is_table(err, "expected an error table")
  assert.are.equal(status or 400, err.status)
  assert.are.equal(field, err.field)
  assert.are.equal("validate", err.stage)
  assert.is_string(err.ErrorCode)
  assert.truthy(err.ErrorCode:match("^0x%x+$"))
  assert.truthy(err.Message:find(field, 1, true), "Message names the field: " .. err.Message)
  assert.are.equal(err.Message, tostring(err))
  return err
end

local function accepts(over)
  local p, err = store:update(valid(over))
  assert.is_nil(err and tostring(err))
  return p
end

describe("Host", function()
  it("is required", function() rejects("Host", { Host = "<nil>" }) end)
  it("may not be empty", function() rejects("Host", { Host = "" }) end)
  it("refuses a URL scheme, saying to drop it", function()
    local err = rejects("Host", { Host = "smtp://mail.example.com" })
    assert.truthy(err.Message:find("scheme"))
  end)
  it("refuses a path", function() rejects("Host", { Host = "mail.example.com/relay" }) end)
  it("refuses a port suffix, pointing at Port", function()
    local err = rejects("Host", { Host = "mail.example.com:587" })
    assert.truthy(err.Message:find("Port"))
  end)
  it("refuses whitespace", function()
    rejects("Host", { Host = " mail.example.com" })
    rejects("Host", { Host = "mail example.com" })
  end)
  it("refuses control characters", function() rejects("Host", { Host = "mail\tex.com" }) end)
  it("refuses a label over 63 characters", function()
    rejects("Host", { Host = ("a"):rep(64) .. ".example.com" })
    accepts { Host = ("a"):rep(63) .. ".example.com" }
  end)
  it("refuses a name over 253 characters", function()
    local label = ("a"):rep(50)
    rejects("Host", { Host = table.concat({ label, label, label, label, label, "com" }, ".") })
  end)
  it("refuses empty labels and edge hyphens", function()
    rejects("Host", { Host = "mail..example.com" })
    rejects("Host", { Host = "-mail.example.com" })
  end)
  it("accepts IPv4, IPv6 with and without brackets, a trailing dot and IDN", function()
    for _, h in ipairs { "192.0.2.10", "::1", "[2001:db8::25]", "mail.example.com.", "smtp.münchen.example" } do
      local p = accepts { Host = h }
      assert.are.equal(h, p.Host) -- echoed as given
    end
  end)
  it("refuses a malformed IPv4 or IPv6 literal", function()
    rejects("Host", { Host = "999.1.1.1" })
    rejects("Host", { Host = "[2001:db8::zz]" })
  end)
  it("must be a string", function() rejects("Host", { Host = 42 }) end)
  it("refuses invalid UTF-8", function() rejects("Host", { Host = "mail.\255.com" }) end)
end)

describe("Port", function()
  it("must be 1 to 65535", function()
    rejects("Port", { Port = 0 })
    rejects("Port", { Port = 65536 })
    rejects("Port", { Port = -25 })
  end)
  it("accepts an integral float and a decimal string, and gives an integer", function()
    for _, v in ipairs { 2525.0, "2525" } do
      local p = accepts { Port = v }
      assert.are.equal(2525, p.Port)
      if math.type then assert.are.equal("integer", math.type(p.Port)) end
    end
  end)
  it("refuses fractions, words and booleans", function()
    rejects("Port", { Port = 25.5 })
    rejects("Port", { Port = "twenty-five" })
    rejects("Port", { Port = true })
  end)
  it("defaults to 25 on update", function()
    assert.are.equal(25, accepts({ Port = "<nil>" }).Port)
  end)
  it("is required for test", function()
    rejects("Port", { Port = "<nil>" }, 400, store.test)
  end)
end)

describe("RelayAuthenticationType", function()
  it("refuses unsupported values and lists the supported ones", function()
    local err = rejects("RelayAuthenticationType", { RelayAuthenticationType = 1 })
    assert.truthy(err.Message:find("0", 1, true) and err.Message:find("2", 1, true))
    rejects("RelayAuthenticationType", { RelayAuthenticationType = 7 })
  end)
  it("defaults to 0 and accepts a decimal string", function()
    assert.are.equal(0, accepts({}).RelayAuthenticationType)
    assert.are.equal(2, accepts({ RelayAuthenticationType = "2", RelayUsername = "u", RelayPassword = "p" }).RelayAuthenticationType)
  end)
end)

describe("RelayUsername and RelayPassword", function()
  it("the username is required with type 2", function()
    rejects("RelayUsername", { RelayAuthenticationType = 2, RelayPassword = "pw" })
  end)
  it("the password is required with type 2 when none is stored", function()
    rejects("RelayPassword", { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc" })
  end)
  it("DOMAIN\\user passes through unchanged", function()
    local p = accepts { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc-mail", RelayPassword = "pw" }
    assert.are.equal("CORP\\svc-mail", p.RelayUsername)
  end)
  it("an update without password keeps the stored one while Host, Port, username and TLS are unchanged", function()
    accepts { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "first-secret" }
    accepts { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", SenderName = "PKI" }
    assert.truthy(H.read(store.path):find("first-secret", 1, true))
    rejects("RelayPassword", { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", Port = 587 })
    assert.truthy(H.read(store.path):find("first-secret", 1, true), "nothing lost on a refused update")
  end)
  it("an update that changes the username needs a new password", function()
    accepts { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "first-secret" }
    rejects("RelayPassword", { RelayAuthenticationType = 2, RelayUsername = "CORP\\other" })
    assert.truthy(H.read(store.path):find("first-secret", 1, true), "nothing lost on a refused update")
  end)
  it("a test without password reuses the stored one only for the stored Host and username", function()
    accepts { RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "first-secret" }
    rejects("RelayPassword", { Host = "other.example.com", RelayAuthenticationType = 2, RelayUsername = "CORP\\svc" }, 400, store.test)
    rejects("RelayPassword", { RelayAuthenticationType = 2, RelayUsername = "CORP\\else" }, 400, store.test)
  end)
end)

describe("SenderAccount and SenderAddress", function()
  it("SenderAccount is required", function() rejects("SenderAccount", { SenderAccount = "<nil>" }) end)
  it("must be an RFC 5321 mailbox", function()
    for _, bad in ipairs { "not-an-address", "a b@example.com", "<kf@example.com>",
      "Keyfactor <kf@example.com>", "kf@", "@example.com", "kf..x@example.com",
      "kf@example..com", "kf@192.0.2.1", ("a"):rep(65) .. "@example.com" } do
      rejects("SenderAccount", { SenderAccount = bad })
    end
  end)
  it("accepts quoted local parts and address literals", function()
    accepts { SenderAccount = '"john smith"@example.com' }
    accepts { SenderAccount = "kf@[192.0.2.1]" }
    accepts { SenderAccount = "kf@[IPv6:2001:db8::1]" }
  end)
  it("SenderAddress stands in when SenderAccount is absent, and is echoed", function()
    local p = accepts { SenderAccount = "<nil>", SenderAddress = "legacy@example.com" }
    assert.are.equal("legacy@example.com", p.SenderAccount)
    assert.are.equal("legacy@example.com", p.SenderAddress)
  end)
  it("a bad SenderAddress is named as such", function()
    rejects("SenderAddress", { SenderAccount = "<nil>", SenderAddress = "nope" })
  end)
end)

describe("SenderName", function()
  it("refuses CR, LF and NUL", function()
    rejects("SenderName", { SenderName = "Keyfactor\r\nBcc: victim@example.com" })
    rejects("SenderName", { SenderName = "Key\0factor" })
  end)
  it("refuses other control characters and invalid UTF-8", function()
    rejects("SenderName", { SenderName = "Key\27factor" })
    rejects("SenderName", { SenderName = "Key\192\128factor" })
  end)
  it("accepts non-ASCII names", function()
    assert.are.equal("Zertifikatsdienst Köln", accepts({ SenderName = "Zertifikatsdienst Köln" }).SenderName)
  end)
end)

describe("TestRecipient", function()
  it("is required for test", function()
    rejects("TestRecipient", { TestRecipient = "<nil>" }, 400, store.test)
  end)
  it("must be exactly one mailbox", function()
    rejects("TestRecipient", { TestRecipient = "a@example.com, b@example.com" }, 400, store.test)
    rejects("TestRecipient", { TestRecipient = "a@example.com;b@example.com" }, 400, store.test)
    rejects("TestRecipient", { TestRecipient = "ops" }, 400, store.test)
  end)
end)

describe("UseSSL", function()
  it("accepts booleans and the strings true/false", function()
    assert.is_true(accepts({ UseSSL = "true" }).UseSSL)
    assert.is_false(accepts({ UseSSL = "False" }).UseSSL)
    assert.is_true(accepts({ UseSSL = true }).UseSSL)
  end)
  it("refuses anything else", function()
    rejects("UseSSL", { UseSSL = "yes" })
    rejects("UseSSL", { UseSSL = 1 })
  end)
end)

describe("Id", function()
  it("absent means 1, and 1 is accepted as number or string", function()
    assert.are.equal(1, accepts({}).Id)
    assert.are.equal(1, accepts({ Id = "1" }).Id)
  end)
  it("any other Id is a 404", function()
    local err = rejects("Id", { Id = 2 }, 404)
    assert.are.equal("0xA0530003", err.ErrorCode)
  end)
end)

describe("every field", function()
  it("refuses CR, LF and NUL", function()
    for _, field in ipairs { "Host", "RelayUsername", "RelayPassword", "SenderAccount", "SenderName", "TestRecipient" } do
      for _, bad in ipairs { "x\r", "x\n", "x\0y", "a@example.com\r\nRCPT TO:<x@evil.example>" } do
        local over = { RelayAuthenticationType = 2, RelayUsername = "u", RelayPassword = "p" }
        over[field] = bad
        local err = rejects(field, over, 400, store.test)
        assert.falsy(err.Message:find(bad, 1, true), "the hostile value is not echoed")
      end
    end
  end)
  it("refuses the Unicode line breaks U+0085, U+2028 and U+2029, in Host and mailbox domains too", function()
    local breaks = { "\194\133", "\226\128\168", "\226\128\169" }
    local places = {
      Host = function(b) return "mail" .. b .. ".example.com" end,
      SenderAccount = function(b) return "kf@example" .. b .. ".com" end,
      TestRecipient = function(b) return "ops@exam" .. b .. "ple.com" end,
      SenderName = function(b) return "PKI" .. b .. "Bcc: victim@example.com" end,
      RelayUsername = function(b) return "svc" .. b end,
    }
    for field, value in pairs(places) do
      for _, b in ipairs(breaks) do
        local over = { RelayAuthenticationType = 2, RelayUsername = "u", RelayPassword = "p" }
        over[field] = value(b)
        local err = rejects(field, over, 400, store.test)
        assert.truthy(err.Message:find("Unicode line break", 1, true), err.Message)
        rejects(field, over, 400)
      end
    end
  end)
end)

describe("field names", function()
  it("match case-insensitively", function()
    local p = assert(store:update { host = "mail.example.com", PORT = "587", senderaccount = "kf@example.com",
      usessl = "true", SENDERNAME = "KF" })
    assert.are.same({ "mail.example.com", 587, "kf@example.com", true, "KF" },
      { p.Host, p.Port, p.SenderAccount, p.UseSSL, p.SenderName })
  end)
  it("two keys differing only in case are ambiguous", function()
    local p, err = store:update { Host = "a.example.com", host = "b.example.com", SenderAccount = "kf@example.com" }
    assert.is_nil(p)
    assert.are.equal(400, err.status)
    assert.are.equal("Host", err.field)
  end)
  it("unknown fields are ignored and JSON null is absent", function()
    local p = assert(store:update(cjson.decode(
      '{"Host":"mail.example.com","SenderAccount":"kf@example.com","Colour":"blue","SenderName":null}')))
    assert.are.equal("", p.SenderName)
    assert.is_nil(p.Colour)
  end)
end)

describe("programmer misuse", function()
  it("raises instead of returning", function()
    assert.has_error(function() kfsmtp.update(42) end)
    assert.has_error(function() kfsmtp.test(valid(), "fast") end)
    assert.has_error(function() kfsmtp.test(valid(), { tls_mode = "sometimes" }) end)
    assert.has_error(function() kfsmtp.test(valid(), { timeout_ms = "soon" }) end)
    for _, ms in ipairs { 1500.5, 0, -1, 1e300, 0 / 0 } do
      assert.has_error(function() kfsmtp.test(valid(), { timeout_ms = ms }) end,
        "kfsmtp.test: timeout_ms must be a whole, positive number of milliseconds (at most a day)")
    end
    assert.has_error(function() kfsmtp.configure { colour = "blue" } end)
    assert.has_error(function() kfsmtp.open(nil) end)
  end)
end)
