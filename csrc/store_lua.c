/* The Lua side of store.c: store_read, store_stat, store_write,
 * store_lock, store_sweep and store_generation, the lock object
 * (release = __gc = __close, idempotent) and the generation counter object.
 * Failures of the file system return nil, message, errno. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "luafield.h"
#include "parts.h"
#include "store.h"

#define LSTORE_LOCK_MT "kfsmtp.lock"
#define LSTORE_GEN_MT "kfsmtp.generation"

static int lstore_read(lua_State *L) {
    kf_door in = kf_door_args(L, "store_read");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    char sig[KF_SIG_SIZE];
    kf_buf *content = kf_newbuf(L);
    int rc = kf_store_read(path, content, sig);
    if (rc < 0) {
        kf_buf_wipe_free(content);
        return kf_fail(L, "cannot read the store", -rc);
    }
    if (rc == 1) lua_pushboolean(L, 0);
    else lua_pushlstring(L, content->data, content->len);
    /* The store holds the relay password: leave no copy in freed memory. */
    kf_buf_wipe_free(content);
    lua_pushstring(L, sig);
    return 2;
}

static int lstore_stat(lua_State *L) {
    char sig[KF_SIG_SIZE];
    kf_door in = kf_door_args(L, "store_stat");
    int rc = kf_store_stat(kf_arg_text(&in, 1, "path", KF_ANY_LENGTH), sig);
    if (rc < 0) return kf_fail(L, "cannot stat the store", -rc);
    lua_pushstring(L, sig);
    return 1;
}

static int lstore_write(lua_State *L) {
    kf_door in = kf_door_args(L, "store_write");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    size_t len;
    const char *data = kf_arg_bytes(&in, 2, "data", &len);
    const char *step = "write";
    int rc = kf_store_write(path, data, len, &step);
    if (rc < 0) {
        char what[96];
        snprintf(what, sizeof what, "cannot %s for the store", step);
        return kf_fail(L, what, -rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int lstore_sweep(lua_State *L) {
    kf_door in = kf_door_args(L, "store_sweep");
    int rc = kf_store_sweep(kf_arg_text(&in, 1, "path", KF_ANY_LENGTH));
    if (rc < 0) return kf_fail(L, "cannot list the store's folder", -rc);
    lua_pushinteger(L, rc);
    return 1;
}

static int lstore_lock_release(lua_State *L) {
    kf_door in = kf_door_args(L, "lock:release");
    int *fd = kf_arg_object(&in, 1, "self", LSTORE_LOCK_MT);
    if (*fd >= 0) { close(*fd); *fd = -1; }
    return 0;
}

static int lstore_lock(lua_State *L) {
    kf_door in = kf_door_args(L, "store_lock");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    int *fd = kf_newuserdata(L, sizeof *fd);
    *fd = kf_store_lock(path);
    if (*fd < 0) return kf_fail(L, "cannot lock the store", -*fd);
    luaL_getmetatable(L, LSTORE_LOCK_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int lstore_gen_gc(lua_State *L) {
    kf_door in = kf_door_args(L, "generation:__gc");
    void **map = kf_arg_object(&in, 1, "self", LSTORE_GEN_MT);
    if (*map) { kf_store_generation_unmap(*map); *map = NULL; }
    return 0;
}

static int lstore_gen_value(lua_State *L) {
    kf_door in = kf_door_args(L, "generation:value");
    void **map = kf_arg_object(&in, 1, "self", LSTORE_GEN_MT);
    /* Wraps past 2^53 on LuaJIT only after that many writes: never. */
    kf_pushint(L, *map ? kf_store_generation(*map) : 0);
    return 1;
}

static int lstore_gen_bump(lua_State *L) {
    kf_door in = kf_door_args(L, "generation:bump");
    void **map = kf_arg_object(&in, 1, "self", LSTORE_GEN_MT);
    if (*map) kf_store_generation_bump(*map);
    return 0;
}

/* The reader's hot path: a closure over the mapping, so a call costs no
 * method lookup and no metatable check. */
static int lstore_gen_read(lua_State *L) {
    void **map = lua_touserdata(L, lua_upvalueindex(1));
    kf_pushint(L, *map ? kf_store_generation(*map) : 0);
    return 1;
}

/* store_generation(path) --> counter, read | nil, message
 * counter:bump() after a write; read() --> the current value. */
static int lstore_generation(lua_State *L) {
    kf_door in = kf_door_args(L, "store_generation");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    void **map = kf_newuserdata(L, sizeof *map);
    *map = kf_store_generation_map(path);
    if (!*map) return kf_fail(L, "cannot map the store's lock file", errno);
    luaL_getmetatable(L, LSTORE_GEN_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, lstore_gen_read, 1);
    return 2;
}

static const luaL_Reg lstore_functions[] = {
    {"store_read", lstore_read},
    {"store_stat", lstore_stat},
    {"store_write", lstore_write},
    {"store_lock", lstore_lock},
    {"store_sweep", lstore_sweep},
    {"store_generation", lstore_generation},
    {NULL, NULL}};

static const luaL_Reg lstore_gen_methods[] = {
    {"value", lstore_gen_value},
    {"bump", lstore_gen_bump},
    {"__gc", lstore_gen_gc},
    {NULL, NULL}};

static const luaL_Reg lstore_lock_methods[] = {
    {"release", lstore_lock_release},
    {"__gc", lstore_lock_release},
    {"__close", lstore_lock_release},
    {NULL, NULL}};

static void lstore_metatable(lua_State *L, const char *name, const luaL_Reg *methods) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int kf_open_store(lua_State *L) {
    lstore_metatable(L, LSTORE_GEN_MT, lstore_gen_methods);
    lstore_metatable(L, LSTORE_LOCK_MT, lstore_lock_methods);
    luaL_setfuncs(L, lstore_functions, 0);
    return 0;
}
