/* read_secret_file{dir, path, max}: the Lua side of secretfile.c. A file
 * the world got wrong is returned as nil, message, kind (the operator
 * fixes it and the caller says so); only a wrong argument raises. Both
 * buffers live in userdata, so nothing leaks if pushing the result
 * raises, and the value's is wiped. */
#include "luafield.h"
#include "parts.h"
#include "secretfile.h"

static int lsecret_read(lua_State *L) {
    kf_door in = kf_door_fields(L, "read_secret_file", 3);
    const char *dir = kf_field_text(&in, "dir", KF_SECRET_MAX_PATH), *path;
    size_t max;
    kf_buf *value, *why;
    kf_secret_kind kind;
    /* A relative folder would be read from wherever the process stands. */
    if (dir[0] != '/')
        return luaL_error(L, "kfsmtp.core.read_secret_file: field 'dir' must be an absolute path");
    path = kf_field_text(&in, "path", KF_SECRET_MAX_PATH);
    max = (size_t)kf_field_int(&in, "max", 1, KF_SECRET_MAX_LIMIT, KF_SECRET_MAX_DEFAULT);
    value = kf_newbuf(L);
    why = kf_newbuf(L);
    kind = kf_secret_read(dir, path, max, value, why);
    if (kind == KF_SECRET_OK) {
        lua_pushlstring(L, value->data ? value->data : "", value->len);
        kf_buf_wipe_free(value);
        kf_buf_free(why);
        return 1;
    }
    kf_buf_wipe_free(value);
    lua_pushnil(L);
    lua_pushlstring(L, why->data ? why->data : "", why->len);
    lua_pushstring(L, kf_secret_kind_names[kind]);
    kf_buf_free(why);
    return 3;
}

const luaL_Reg kf_secretfile_functions[] = {
    {"read_secret_file", lsecret_read},
    {NULL, NULL}};
