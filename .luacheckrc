-- luacheck configuration (make lint: luacheck lua bin/kfsmtp spec bench scripts).
-- Every warning class stays on: unused variables, values and arguments,
-- shadowing, redefinitions, undefined and mutated globals.

-- The module, the command line and the specs run unchanged under Lua 5.4
-- and LuaJIT, so the baseline is "min": only the globals that every Lua
-- version and LuaJIT share. "max" (their union) would let LuaJIT-only names
-- (unpack, loadstring, setfenv, bit) and 5.4-only ones (utf8, warn) through.
--
-- On top of it, the few names that exist in one interpreter only and that
-- the code feature-tests before use:
--   jit             LuaJIT only: `type(jit) == "table"` picks the build
--   math.type       Lua 5.3+ only: `if math.type then ... end`
--   math.tointeger  Lua 5.3+ only: `math.tointeger or function(x) ... end`
--   table.unpack    Lua 5.2+, and unpack in LuaJIT: `table.unpack or unpack`
-- luacheck cannot see the test, so any new use of these must come with one.
stds.feature_tested = {
  read_globals = {
    jit = { other_fields = true },
    math = { fields = { "type", "tointeger" } },
    table = { fields = { "unpack" } },
    "unpack",
  },
}
std = "min+feature_tested"

-- No line length limit: error messages, README-style sentences and
-- JSON fixtures are kept on one line each so that they can be grepped,
-- and wrapping them would only split the strings (lua-resty-mail and
-- LuaSocket make the same choice).
max_line_length = false

-- The OpenResty handler runs only inside nginx, under OpenResty's LuaJIT,
-- with the `ngx` API of lua-nginx-module. luacheck's "ngx_lua" std is
-- LuaJIT plus that API as a read-only global whose writable parts are the
-- ones lua-nginx-module lets handlers write (ngx.status, ngx.header,
-- ngx.ctx, ngx.var, ngx.arg, ngx.shared). It describes lua-nginx-module
-- 0.10.10; ngx_lua_0_10_21 adds what the handler uses from later releases.
stds.ngx_lua_0_10_21 = {
  read_globals = {
    ngx = { fields = { "run_worker_thread" } },
  },
}
for _, f in ipairs { "openresty", "callers", "worker_thread" } do
  files["lua/kfsmtp/" .. f .. ".lua"] = { std = "ngx_lua+ngx_lua_0_10_21" }
end

-- Specs: busted's globals (describe, it, setup, teardown, finally, the
-- luassert assert/spy/stub/mock, ...).
files["spec/**/*_spec.lua"] = { std = "+busted" }

-- LuaSocket's SMTP loop is run by bench/bench.py under lua5.4 only.
files["bench/luasocket_loop.lua"] = { std = "lua54" }

-- A wrk script: wrk's LuaJIT with its `wrk` table, whose request fields the
-- script sets (https://github.com/wg/wrk/blob/master/SCRIPTING).
files["bench/wrk_put.lua"] = {
  std = "luajit",
  read_globals = {
    wrk = {
      fields = {
        scheme = { read_only = false },
        host = { read_only = false },
        port = { read_only = false },
        method = { read_only = false },
        path = { read_only = false },
        headers = { read_only = false, other_fields = true },
        body = { read_only = false },
        thread = { other_fields = true },
        "format", "lookup", "connect",
      },
    },
  },
}
