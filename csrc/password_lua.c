/* The Lua side of password.c: password_hash(password [, iterations]) and
 * password_verify(password, hash). The password is any string (a caller's
 * input); a malformed stored hash is a failure returned, not raised. */
#include "luafield.h"
#include "parts.h"
#include "password.h"

static int lpw_hash(lua_State *L) {
    kf_door in = kf_door_args(L, "password_hash");
    size_t len;
    const char *pw = kf_arg_bytes(&in, 1, "password", &len);
    long iterations = (long)kf_arg_int(&in, 2, "iterations", KF_PASSWORD_MIN_ITERATIONS,
                                       KF_PASSWORD_MAX_ITERATIONS, KF_PASSWORD_ITERATIONS);
    char out[KF_PASSWORD_HASH_SIZE];
    if (kf_password_hash(pw, len, iterations, out, sizeof out) != 0)
        return luaL_error(L, "kfsmtp.core.password_hash: hashing failed");
    lua_pushstring(L, out);
    return 1;
}

static int lpw_verify(lua_State *L) {
    kf_door in = kf_door_args(L, "password_verify");
    size_t len;
    const char *pw = kf_arg_bytes(&in, 1, "password", &len);
    int rc = kf_password_verify(pw, len, kf_arg_text(&in, 2, "hash", KF_ANY_LENGTH));
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "malformed password hash");
        return 2;
    }
    lua_pushboolean(L, rc);
    return 1;
}

const luaL_Reg kf_password_functions[] = {
    {"password_hash", lpw_hash},
    {"password_verify", lpw_verify},
    {NULL, NULL}};
