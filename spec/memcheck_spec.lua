-- valgrind memcheck over the C paths. Runs the Lua 5.4 build (the C code is
-- the same for LuaJIT, which valgrind handles poorly), so check.sh runs it
-- in the Lua 5.4 pass only (tag #memcheck).
local H = require "helpers"

describe("the C core under valgrind #memcheck", function()
  it("loses no memory and makes no invalid access", function()
    local srv = H.start_smtp { mode = "plain" }
    local tokens = H.start_token_server("memcheck-app", "memcheck-secret")
    local oauth_smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    local log = H.tmpdir() .. "/valgrind.log"
    local out, ok = H.sh(("valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --log-file=%s lua5.4 spec/support/memcheck.lua %s %d %d %d %s %s"):format(
      H.q(log), H.q(H.store_path()), srv.port, H.closed_port(), oauth_smtp.port, H.q(tokens.url), H.q(H.certs().ca)))
    srv:stop() oauth_smtp:stop() tokens:stop()
    local report = H.read(log) or ""
    assert.truthy(out:find("memcheck script done", 1, true), out)
    assert.is_true(ok, report)
    assert.truthy(report:find("ERROR SUMMARY: 0 errors", 1, true), report)
    local lost = report:match("definitely lost: ([%d,]+) bytes")
    assert.truthy(lost == nil or lost == "0", report)
  end)
end)
