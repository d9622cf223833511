/* The strict door into C. A value crossing from Lua is taken only in the
 * type meant: a string only when it is a Lua string (a number is never
 * converted, so no converted temporary is popped while C keeps its
 * pointer), text without NUL bytes and within its length, an integer only
 * when whole and in range, a boolean only as a boolean; nil means absent.
 * Anything else raises an error naming the function and the field or
 * argument, before any I/O. Also here: the helpers the bindings share to
 * return failures and results. */
#include <stdio.h>
#include <string.h>

#include "luafield.h"

#define DOOR_BUF_MT "kfsmtp.buf"

static int door_absent(lua_State *L, int idx) {
    int t = lua_type(L, idx);
    return t == LUA_TNIL || t == LUA_TNONE;
}

/* ", not a TYPE" for the value at idx, or ", not nil". */
static const char *door_got(lua_State *L, int idx) {
    if (door_absent(L, idx)) return ", not nil";
    return lua_pushfstring(L, ", not a %s", luaL_typename(L, idx));
}

kf_door kf_door_args(lua_State *L, const char *fn) {
    kf_door d;
    d.L = L;
    d.fn = fn;
    d.table = 0;
    return d;
}

kf_door kf_door_fields(lua_State *L, const char *fn, int nfields) {
    kf_door d = kf_door_args(L, fn);
    if (lua_type(L, 1) != LUA_TTABLE)
        luaL_error(L, "kfsmtp.core.%s: argument #1 must be a table of fields%s", fn,
                   door_got(L, 1));
    luaL_checkstack(L, nfields, "kfsmtp.core: too many fields");
    d.table = 1;
    return d;
}

/* Raises "kfsmtp.core.FN: field 'KEY' must be MUST[, not TYPE]" (or
 * "argument #ARG 'KEY'"); the value's type is named unless idx is 0. */
static int door_raise(const kf_door *d, const char *key, int arg, const char *must, int idx) {
    lua_State *L = d->L;
    const char *got = idx ? door_got(L, idx) : "";
    if (arg)
        return luaL_error(L, "kfsmtp.core.%s: argument #%d '%s' must be %s%s", d->fn, arg, key,
                          must, got);
    return luaL_error(L, "kfsmtp.core.%s: field '%s' must be %s%s", d->fn, key, must, got);
}

static const char *door_string(const kf_door *d, const char *key, int arg, int idx, int opt,
                               int text, size_t max, size_t *len) {
    size_t n;
    const char *s;
    if (opt && door_absent(d->L, idx)) return NULL;
    if (lua_type(d->L, idx) != LUA_TSTRING) door_raise(d, key, arg, "a string", idx);
    s = lua_tolstring(d->L, idx, &n);
    if (n > max) {
        char must[64];
        snprintf(must, sizeof must, "a string of at most %zu bytes", max);
        door_raise(d, key, arg, must, 0);
    }
    if (text && memchr(s, '\0', n)) door_raise(d, key, arg, "a string without NUL bytes", 0);
    if (len) *len = n;
    return s;
}

static lua_Integer door_integer(const kf_door *d, const char *key, int arg, int idx,
                                lua_Integer min, lua_Integer max, lua_Integer dflt) {
    char must[96];
    int t = lua_type(d->L, idx), ok = 0;
    lua_Integer v = 0;
    if (t == LUA_TNIL || t == LUA_TNONE) return dflt;
    if (t == LUA_TNUMBER) v = kf_tointegerx(d->L, idx, &ok);
    if (ok && v >= min && v <= max) return v;
    snprintf(must, sizeof must, "an integer from %lld to %lld", (long long)min, (long long)max);
    return door_raise(d, key, arg, must, t == LUA_TNUMBER ? 0 : idx);
}

static int door_field(const kf_door *d, const char *key) {
    lua_getfield(d->L, d->table, key);
    return lua_gettop(d->L);
}

const char *kf_field_text(const kf_door *d, const char *key, size_t max) {
    return door_string(d, key, 0, door_field(d, key), 0, 1, max, NULL);
}

const char *kf_field_opttext(const kf_door *d, const char *key, size_t max) {
    return door_string(d, key, 0, door_field(d, key), 1, 1, max, NULL);
}

const char *kf_field_bytes(const kf_door *d, const char *key, size_t *len) {
    return door_string(d, key, 0, door_field(d, key), 0, 0, KF_ANY_LENGTH, len);
}

lua_Integer kf_field_int(const kf_door *d, const char *key, lua_Integer min, lua_Integer max,
                         lua_Integer dflt) {
    return door_integer(d, key, 0, door_field(d, key), min, max, dflt);
}

int kf_field_bool(const kf_door *d, const char *key, int dflt) {
    int idx = door_field(d, key);
    if (door_absent(d->L, idx)) return dflt;
    if (lua_type(d->L, idx) != LUA_TBOOLEAN) door_raise(d, key, 0, "a boolean", idx);
    return lua_toboolean(d->L, idx);
}

int kf_field_textlist(const kf_door *d, const char *key, int max_n, size_t max,
                      const char **out) {
    lua_State *L = d->L;
    int idx = door_field(d, key), n = 0, i;
    char must[64], name[64];
    if (door_absent(L, idx)) return 0;
    snprintf(must, sizeof must, "an array of at most %d strings", max_n);
    if (lua_type(L, idx) != LUA_TTABLE) return door_raise(d, key, 0, must, idx);
    /* Counted raw, every key: then any key outside 1..n leaves a gap in
     * 1..n, which the reading below refuses as a nil. */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (++n > max_n) return door_raise(d, key, 0, must, 0);
    }
    luaL_checkstack(L, n, "kfsmtp.core: too many fields");
    for (i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "%s[%d]", key, i);
        lua_rawgeti(L, idx, i);
        out[i - 1] = door_string(d, name, 0, lua_gettop(L), 0, 1, max, NULL);
    }
    return n;
}

int kf_field_choice(const kf_door *d, const char *key, const char *const *names, int n,
                    int required) {
    int idx = door_field(d, key), i;
    size_t len = 0, used;
    const char *s = door_string(d, key, 0, idx, !required, 0, KF_ANY_LENGTH, &len);
    char must[160];
    if (!s) return -1;
    for (i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0) return i;
    used = (size_t)snprintf(must, sizeof must, "one of");
    for (i = 0; i < n && used < sizeof must; i++)
        used += (size_t)snprintf(must + used, sizeof must - used, "%s \"%s\"", i ? "," : "",
                                 names[i]);
    return door_raise(d, key, 0, must, 0);
}

const char *kf_arg_text(const kf_door *d, int arg, const char *name, size_t max) {
    return door_string(d, name, arg, arg, 0, 1, max, NULL);
}

const char *kf_arg_bytes(const kf_door *d, int arg, const char *name, size_t *len) {
    return door_string(d, name, arg, arg, 0, 0, KF_ANY_LENGTH, len);
}

lua_Integer kf_arg_int(const kf_door *d, int arg, const char *name, lua_Integer min,
                       lua_Integer max, lua_Integer dflt) {
    return door_integer(d, name, arg, arg, min, max, dflt);
}

void *kf_arg_object(const kf_door *d, int arg, const char *name, const char *mt) {
    void *p = luaL_testudata(d->L, arg, mt);
    if (!p) door_raise(d, name, arg, lua_pushfstring(d->L, "a %s", mt), arg);
    return p;
}


int kf_fail(lua_State *L, const char *what, int err) {
    char msg[256];
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, kf_strerror(err, msg, sizeof msg));
    kf_pushint(L, err);
    return 3;
}

static int door_buf_gc(lua_State *L) {
    kf_buf_wipe_free((kf_buf *)lua_touserdata(L, 1));
    return 0;
}

kf_buf *kf_newbuf(lua_State *L) {
    kf_buf *b = kf_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, DOOR_BUF_MT)) {
        lua_pushcfunction(L, door_buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

void kf_setfield_buf(lua_State *L, const char *key, const kf_buf *b) {
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lua_setfield(L, -2, key);
}
