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

#if LUA_VERSION_NUM < 502
#define kf_rawlen(L, i) lua_objlen((L), (i))
#else
#define kf_rawlen(L, i) lua_rawlen((L), (i))
#endif

#endif
