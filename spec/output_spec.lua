-- Output shapes: every documented field, always, with its type; numbers as
-- integers even after the store's JSON; the password in no output.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"

local GET_FIELDS = { "Host", "Id", "Port", "RelayAuthenticationType", "RelayUsername",
  "SenderAccount", "SenderAddress", "SenderName", "UseSSL" }
local TYPES = { Host = "string", Id = "number", Port = "number", RelayAuthenticationType = "number",
  RelayUsername = "string", SenderAccount = "string", SenderAddress = "string",
  SenderName = "string", UseSSL = "boolean" }

local keys = H.keys

local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v % 1 == 0
end

describe("get()", function()
  it("has every documented field with its type and default on an empty store", function()
    local p = assert(kfsmtp.open(H.store_path()):get())
    assert.are.same(GET_FIELDS, keys(p))
    for k, ty in pairs(TYPES) do assert.are.equal(ty, type(p[k]), k) end
    assert.are.same({ Host = "", Id = 1, Port = 25, RelayAuthenticationType = 0, RelayUsername = "",
      SenderAccount = "", SenderAddress = "", SenderName = "", UseSSL = false }, p)
  end)

  it("encodes with cjson to exactly the documented response body", function()
    local p = assert(kfsmtp.open(H.store_path()):get())
    local body = cjson.decode(cjson.encode(p))
    assert.are.same(GET_FIELDS, keys(body))
  end)

  it("returns what update stored, with integers after a fresh read of the file", function()
    local path = H.store_path()
    local sent = { Host = "Mail.Example.COM.", Port = "2525", SenderAccount = "kf@example.com",
      SenderName = "Keyfactor Command", UseSSL = "true", RelayAuthenticationType = 2.0,
      RelayUsername = "CORP\\svc", RelayPassword = "Pa55-w0rd!" }
    local updated = assert(kfsmtp.open(path):update(sent))
    -- A second process decodes the file with lua-cjson (floats) and must
    -- still hand out integers.
    local code = ([[package.path="lua/?.lua;"..package.path; package.cpath="%s/?.so;"..package.cpath
      local p = require("kfsmtp").open(%q):get()
      io.write(require("kfsmtp.json").encode(p), " ", tostring(math.type and math.type(p.Port) or "n/a"),
        " ", tostring(math.type and math.type(p.Id) or "n/a"), " ", tostring(math.type and math.type(p.RelayAuthenticationType) or "n/a"))]]):format(H.build, path)
    local out, ok = H.sh(H.lua_run .. " -e " .. H.q(code))
    assert(ok, out)
    local doc, t1, t2, t3 = out:match("^(%b{}) (%S+) (%S+) (%S+)")
    local fresh = cjson.decode(doc)
    assert.are.same(GET_FIELDS, keys(fresh))
    if H.lua ~= "luajit" then assert.are.same({ "integer", "integer", "integer" }, { t1, t2, t3 }) end
    assert.are.equal("Mail.Example.COM.", fresh.Host)
    assert.are.equal(2525, fresh.Port)
    local p = assert(kfsmtp.open(path):get())
    assert.are.same(updated, p)
    for _, k in ipairs { "Port", "Id", "RelayAuthenticationType" } do assert.is_true(is_integer(p[k]), k) end
  end)

  it("never returns RelayPassword", function()
    local path = H.store_path()
    local store = kfsmtp.open(path)
    local updated = assert(store:update { Host = "mail.example.com", SenderAccount = "kf@example.com",
      RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = "Unique-Secret-4711" })
    assert.is_nil(updated.RelayPassword)
    assert.is_false(H.mentions(updated, "Unique-Secret-4711"))
    assert.is_false(H.mentions(store:get(), "Unique-Secret-4711"))
    assert.is_nil(store:get().RelayPassword)
    local _, err = store:update { Host = "bad host", SenderAccount = "kf@example.com",
      RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = "Unique-Secret-4711" }
    assert.is_false(H.mentions(err, "Unique-Secret-4711"))
    assert.truthy(H.read(path):find("Unique-Secret-4711", 1, true), "the store does keep it")
  end)

  it("an anonymous profile keeps no password", function()
    local path = H.store_path()
    assert(kfsmtp.open(path):update { Host = "mail.example.com", SenderAccount = "kf@example.com",
      RelayAuthenticationType = 0, RelayUsername = "svc", RelayPassword = "Unneeded-Secret" })
    assert.falsy(H.read(path):find("Unneeded-Secret", 1, true))
  end)
end)

describe("the module", function()
  it("carries one version string, the one in csrc/version.h and no other", function()
    local header = H.read("csrc/version.h"):match('#define KFSMTP_VERSION "([^"]+)"')
    assert.are.equal("kfsmtp " .. header, kfsmtp._VERSION)
    for name in H.sh("ls rockspec"):gmatch("[^\n]+") do
      local v = name:match("^kfsmtp%-(.+)%-%d+%.rockspec$")
      assert.truthy(v == "scm" or v == header, "rockspec " .. name .. " drifts from " .. header)
      assert.truthy(H.read("rockspec/" .. name):find('version = "' .. v .. '-', 1, true), name)
    end
  end)
end)
