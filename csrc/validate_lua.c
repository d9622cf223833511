/* The Lua side of validate.c: check_text, check_host, check_mailbox and
 * check_display_name(value) --> nil when acceptable, else the reason. */
#include "luafield.h"
#include "parts.h"
#include "validate.h"

static int lval_check(lua_State *L, const char *fn, const char *(*check)(const char *, size_t)) {
    kf_door in = kf_door_args(L, fn);
    size_t len;
    const char *s = kf_arg_bytes(&in, 1, "value", &len);
    const char *why = check(s, len);
    if (why) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 1;
}

static int lval_text(lua_State *L) { return lval_check(L, "check_text", kf_check_text); }
static int lval_host(lua_State *L) { return lval_check(L, "check_host", kf_check_host); }
static int lval_mailbox(lua_State *L) { return lval_check(L, "check_mailbox", kf_check_mailbox); }
static int lval_display_name(lua_State *L) {
    return lval_check(L, "check_display_name", kf_check_display_name);
}

const luaL_Reg kf_validate_functions[] = {
    {"check_text", lval_text},
    {"check_host", lval_host},
    {"check_mailbox", lval_mailbox},
    {"check_display_name", lval_display_name},
    {NULL, NULL}};
