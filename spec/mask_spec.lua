-- kfsmtp.mask without servers: a secret is found in clear, URL-encoded as
-- libcurl sends it, and in base64 at whatever offset it had in a payload.
local core = require "kfsmtp.core"
local mask = require "kfsmtp.mask"

local SECRET = "s3cr/+t é~!"

describe("kfsmtp.mask", function()
  local needles = mask.needles { SECRET, false }

  it("masks the secret in clear and URL-encoded, in nested tables", function()
    local t = { a = "pw " .. SECRET .. " end", nested = { core.url_escape(SECRET) }, n = 5 }
    mask.mask(t, needles)
    assert.are.equal("pw *** end", t.a)
    assert.are.equal("***", t.nested[1])
    assert.are.equal(5, t.n)
  end)

  it("masks the secret inside any base64 payload, at every offset", function()
    for prefix = 0, 5 do
      for suffix = 0, 3 do
        local payload = core.base64(("u"):rep(prefix) .. SECRET .. ("x"):rep(suffix))
        local masked = mask.mask(payload, needles)
        assert.truthy(masked:find("***", 1, true), ("prefix %d, suffix %d: %s"):format(prefix, suffix, masked))
        -- What is left is at most the characters shared with the
        -- neighbouring bytes: fewer than two on each side.
        local left = #masked - 3
        assert.is_true(left <= #payload - #core.base64(SECRET) + 6, masked)
      end
    end
  end)

  it("leaves text without the secret alone; a secret under 4 characters is masked only where encoded", function()
    assert.are.equal("nothing here", mask.mask("nothing here", needles))
    -- "abc" in clear would mask ordinary words; its base64 is 4 characters.
    assert.are.same({ "YWJj" }, mask.needles { "abc", false })
    assert.are.equal("abc", mask.mask("abc", mask.needles { "abc" }))
    assert.are.same({}, mask.needles { false, "" })
  end)
end)
