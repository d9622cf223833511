/* The Lua side of store.c: store_read, store_stat, store_write,
 * store_lock, store_sweep and the lock object (release = __gc = __close,
 * idempotent). Failures of the file system return nil, message, errno. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "luafield.h"
#include "parts.h"
#include "store.h"

#define LSTORE_LOCK_MT "kfsmtp.lock"

/* kf_fail, or for something other than a regular file at the path:
 * nil, "WHAT: it is a FIFO, not a regular file", KF_ENOTFILE. */
static int lstore_fail(lua_State *L, const char *what, int rc, const char *kind) {
    if (rc == -KF_ELOCKED) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: another process has held its lock for over %d s", what, KF_LOCK_WAIT_MS / 1000);
        kf_pushint(L, KF_ELOCKED);
        return 3;
    }
    if (rc != -KF_ENOTFILE) return kf_fail(L, what, -rc);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: it is a %s, not a regular file", what, kind);
    kf_pushint(L, KF_ENOTFILE);
    return 3;
}

static int lstore_read(lua_State *L) {
    kf_door in = kf_door_args(L, "store_read");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    char sig[KF_SIG_SIZE];
    const char *kind = NULL;
    kf_buf *content = kf_newbuf(L);
    int rc = kf_store_read(path, content, sig, &kind);
    if (rc < 0) {
        kf_buf_wipe_free(content);
        return lstore_fail(L, "cannot read the store", rc, kind);
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
    const char *kind = NULL;
    kf_door in = kf_door_args(L, "store_stat");
    int rc = kf_store_stat(kf_arg_text(&in, 1, "path", KF_ANY_LENGTH), sig, &kind);
    if (rc < 0) return lstore_fail(L, "cannot stat the store", rc, kind);
    lua_pushstring(L, sig);
    return 1;
}

static int lstore_write(lua_State *L) {
    kf_door in = kf_door_args(L, "store_write");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    size_t len;
    const char *data = kf_arg_bytes(&in, 2, "data", &len);
    const char *step = "write";
    char sig[KF_SIG_SIZE];
    int rc = kf_store_write(path, data, len, sig, &step);
    if (rc < 0) {
        char what[96];
        snprintf(what, sizeof what, "cannot %s for the store", step);
        return kf_fail(L, what, -rc);
    }
    lua_pushboolean(L, 1);
    lua_pushstring(L, sig);
    return 2;
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

static const luaL_Reg lstore_lock_methods[] = {
    {"release", lstore_lock_release},
    {"__gc", lstore_lock_release},
    {"__close", lstore_lock_release},
    {NULL, NULL}};

static int lstore_lock(lua_State *L) {
    kf_door in = kf_door_args(L, "store_lock");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    const char *kind = NULL;
    int *fd = kf_newuserdata(L, sizeof *fd);
    *fd = kf_store_lock(path, &kind);
    if (*fd < 0) return lstore_fail(L, "cannot lock the store", *fd, kind);
    /* The metatable goes on only once the lock is held (lua-zlib's rule);
     * it is made on the first lock of the state. */
    if (luaL_newmetatable(L, LSTORE_LOCK_MT)) {
        luaL_setfuncs(L, lstore_lock_methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
    return 1;
}

const luaL_Reg kf_store_functions[] = {
    {"store_read", lstore_read},
    {"store_stat", lstore_stat},
    {"store_write", lstore_write},
    {"store_lock", lstore_lock},
    {"store_sweep", lstore_sweep},
    {NULL, NULL}};
