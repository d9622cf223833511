-- No leaks under repetition: 1,000 failing and 1,000 successful tests in
-- one process leave the open descriptors where they were and resident
-- memory flat.
local H = require "helpers"

describe("1,000 failing and 1,000 successful tests in one process #rss", function()
  it("leave descriptors unchanged and resident memory within 1 MiB", function()
    local srv = H.start_smtp { mode = "plain" }
    finally(function() srv:stop() end)
    local out, ok = H.sh(("%s spec/support/repeat.lua %d %d 1000"):format(H.lua_run, srv.port, H.closed_port()))
    assert(ok, out)
    local fd0, fd1, rss0, rss1 = out:match("fds (%d+) (%d+) rss (%d+) (%d+)")
    assert.truthy(fd0, out)
    print(("\n# %s: descriptors %s -> %s, resident %s KiB -> %s KiB"):format(H.lua, fd0, fd1, rss0, rss1))
    assert.are.equal(fd0, fd1)
    assert.is_true(tonumber(rss1) - tonumber(rss0) <= 1024, out)
    assert.are.equal(1100, #srv:messages())
  end)
end)
