/* libFuzzer target: the store reader. Arbitrary bytes as the store file's
 * text go through kfsmtp.lua's decoder (lua-cjson, then the input rules),
 * in an embedded Lua 5.4 with the C core linked in. It must return a record
 * or an error, never raise. Run from the repository root (lua/ on the path). */
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int luaopen_kfsmtp_core(lua_State *L);

static lua_State *fz_L;

static lua_State *fz_state(void) {
    if (fz_L) return fz_L;
    fz_L = luaL_newstate();
    luaL_openlibs(fz_L);
    luaL_requiref(fz_L, "kfsmtp.core", luaopen_kfsmtp_core, 0);
    lua_pop(fz_L, 1);
    if (luaL_dostring(fz_L, "package.path = 'lua/?.lua;' .. package.path\n"
                            "local k = require 'kfsmtp'\n"
                            "fuzz_decode = function(s)\n"
                            "  local r, err = k._decode_store(s)\n"
                            "  assert(r or (err and err.status == 500 and err.ErrorCode))\n"
                            "end") != LUA_OK)
        abort();
    return fz_L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fz_state();
    lua_getglobal(L, "fuzz_decode");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) abort();
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
