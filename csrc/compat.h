/* Differences between Lua 5.4 and LuaJIT (which reports 5.1) kept in one
 * place, under kf_-prefixed names so nothing collides with Lua's symbols. */
#ifndef KFSMTP_COMPAT_H
#define KFSMTP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 504
#define kf_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)
#else
#define kf_newuserdata(L, size) lua_newuserdata((L), (size))
#endif

#if LUA_VERSION_NUM >= 503
#define kf_pushint(L, n) lua_pushinteger((L), (lua_Integer)(n))
#else
/* LuaJIT has no integer subtype: a double holds every value we push. */
#define kf_pushint(L, n) lua_pushnumber((L), (lua_Number)(n))
#endif

/* An integer from the number at index i (callers check that it is one);
 * *isnum is 0 when it is fractional, NaN, infinite or out of range. */
#if LUA_VERSION_NUM >= 503
#define kf_tointegerx(L, i, isnum) lua_tointegerx((L), (i), (isnum))
#else
/* LuaJIT: every number is a double, whole within +-2^53 where each integer
 * is exact. The range is checked before the cast (NaN fails it). */
static inline lua_Integer kf_tointegerx(lua_State *L, int i, int *isnum) {
    lua_Number n = lua_tonumber(L, i);
    *isnum = n >= -9007199254740992.0 && n <= 9007199254740992.0 &&
             n == (lua_Number)(lua_Integer)n;
    return *isnum ? (lua_Integer)n : 0;
}
#endif

#if LUA_VERSION_NUM < 502
#define kf_rawlen(L, i) lua_objlen((L), (i))
#else
#define kf_rawlen(L, i) lua_rawlen((L), (i))
#endif

#endif
