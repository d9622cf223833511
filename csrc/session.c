/* The libcurl handles one Lua state keeps, in one userdata in the registry:
 * the delivery handle and the token handle keep their parsed CA bundles
 * from one test to the next, and __gc closes both when the state closes.
 * Also what the two bindings report the same way: time limits read at the
 * door, the outcome fields, and an option libcurl refused. */
#include <string.h>

#include "session.h"
#include "vocab.h"

#define SES_MT "kfsmtp.session"

static char ses_key;

static int ses_gc(lua_State *L) {
    kf_session *s = lua_touserdata(L, 1);
    kf_delivery_close(&s->delivery);
    if (s->token) curl_easy_cleanup(s->token);
    s->token = NULL;
    return 0;
}

kf_session *kf_session_get(lua_State *L, const char *fn) {
    kf_session *s;
    lua_pushlightuserdata(L, &ses_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (s) return s;
    s = kf_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    if (kf_delivery_init(&s->delivery) != 0) {
        luaL_error(L, "kfsmtp.core.%s: curl_easy_init failed", fn);
        return NULL;
    }
    /* The metatable goes on only once the handle exists (lua-zlib's rule). */
    if (luaL_newmetatable(L, SES_MT)) {
        lua_pushcfunction(L, ses_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, &ses_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return s;
}

void kf_session_timeouts(const kf_door *in, long *connect_timeout_ms, long *timeout_ms) {
    *connect_timeout_ms = (long)kf_field_int(in, "connect_timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                             KF_DEFAULT_CONNECT_TIMEOUT_MS);
    *timeout_ms = (long)kf_field_int(in, "timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                     KF_DEFAULT_TIMEOUT_MS);
}

void kf_session_outcome(lua_State *L, CURLcode code, const char *errbuf) {
    lua_pushboolean(L, code == CURLE_OK);
    lua_setfield(L, -2, "ok");
    kf_pushint(L, code);
    lua_setfield(L, -2, "curl_code");
    lua_pushstring(L, errbuf[0] ? errbuf : curl_easy_strerror(code));
    lua_setfield(L, -2, "curl_error");
}

int kf_session_refused(lua_State *L, const char *fn, const kf_curlopt *o) {
    return luaL_error(L, "kfsmtp.core.%s: libcurl refused %s: %s", fn, o->name,
                      curl_easy_strerror(o->code));
}
