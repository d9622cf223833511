/* The strict door into C (see luafield.c): every value a Lua caller hands
 * to kfsmtp.core is read here, and the helpers the parts' bindings share
 * to hand results and failures back. */
#ifndef KFSMTP_LUAFIELD_H
#define KFSMTP_LUAFIELD_H

#include <stddef.h>

#include "buffer.h"
#include "compat.h"
#include "oserr.h"

/* For a length that has no limit of its own (the OS or the rules decide). */
#define KF_ANY_LENGTH ((size_t)-1)

/* One call of a kfsmtp.core function, named in every error it raises:
 * "kfsmtp.core.FN: field 'KEY' must be ..." for a field of its table
 * (argument 1), "kfsmtp.core.FN: argument #N 'NAME' must be ..." for a
 * positional argument. */
typedef struct kf_door {
    lua_State *L;
    const char *fn;
    int table; /* stack index of the table of fields; 0 for none */
} kf_door;

/* Argument 1 must be a table of fields; room is made for nfields values. */
KF_HIDDEN kf_door kf_door_fields(lua_State *L, const char *fn, int nfields);
KF_HIDDEN kf_door kf_door_args(lua_State *L, const char *fn);

/* Field readers. Each pushes the field's value and leaves it on the stack,
 * so a string returned stays alive until the function returns. nil is
 * "absent": optional readers then return NULL, -1 or the default; any
 * other wrong value raises. Text is a C string: a NUL byte raises, as does
 * a string longer than max bytes. Bytes may hold anything. */
KF_HIDDEN const char *kf_field_text(const kf_door *d, const char *key, size_t max);
KF_HIDDEN const char *kf_field_opttext(const kf_door *d, const char *key, size_t max);
KF_HIDDEN const char *kf_field_bytes(const kf_door *d, const char *key, size_t *len);
KF_HIDDEN lua_Integer kf_field_int(const kf_door *d, const char *key, lua_Integer min,
                                   lua_Integer max, lua_Integer dflt);
KF_HIDDEN int kf_field_bool(const kf_door *d, const char *key, int dflt);
/* An optional array of at most max_n text strings, each as for
 * kf_field_text: their pointers go to out[0..] and the count is returned
 * (0 when absent). Each string is pushed and left on the stack. A wrong
 * entry, or a gap (a key outside 1..n), raises naming 'KEY[i]'. */
KF_HIDDEN int kf_field_textlist(const kf_door *d, const char *key, int max_n, size_t max,
                                const char **out);
/* The index of the field's value in names[0..n-1]; -1 when absent and not
 * required. */
KF_HIDDEN int kf_field_choice(const kf_door *d, const char *key, const char *const *names,
                              int n, int required);

/* The same rules for positional arguments (all required but integers). */
KF_HIDDEN const char *kf_arg_text(const kf_door *d, int arg, const char *name, size_t max);
KF_HIDDEN const char *kf_arg_bytes(const kf_door *d, int arg, const char *name, size_t *len);
KF_HIDDEN lua_Integer kf_arg_int(const kf_door *d, int arg, const char *name, lua_Integer min,
                                 lua_Integer max, lua_Integer dflt);
/* A userdata with the metatable registered as mt. */
KF_HIDDEN void *kf_arg_object(const kf_door *d, int arg, const char *name, const char *mt);

/* A failure of the world: pushes nil, "WHAT: strerror(err)", err; returns 3. */
KF_HIDDEN int kf_fail(lua_State *L, const char *what, int err);
/* A kf_buf in a userdata on the stack whose __gc wipes and frees it, so an
 * error raised before the owner frees it leaks nothing. */
KF_HIDDEN kf_buf *kf_newbuf(lua_State *L);
/* t[key] = the buffer's bytes, for the table on top of the stack. */
KF_HIDDEN void kf_setfield_buf(lua_State *L, const char *key, const kf_buf *b);

#endif
