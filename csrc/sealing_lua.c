/* key_generate{path}, key_id{key_file}, seal{key_file, plaintext, aad},
 * unseal{key_file, sealed, aad, key_id}: the Lua side of sealing.c. The
 * key file is read on each call (a replaced key takes effect at once; the
 * cost is one open and read). A file or value the world got wrong comes
 * back as nil, message, kind; only a wrong argument raises. Every field is
 * read before the key, and the key is wiped before anything is pushed, so
 * an error raised by Lua cannot leave it behind; the plaintexts live in
 * buffers whose __gc wipes them. */
#include <string.h>

#include "luafield.h"
#include "parts.h"
#include "sealing.h"

/* nil, why, kind [, the key file's id]: 3 or 4 results. */
static int lseal_refused(lua_State *L, kf_seal_kind kind, const kf_buf *why, const char *file_id) {
    lua_pushnil(L);
    lua_pushlstring(L, why->data ? why->data : "", why->len);
    lua_pushstring(L, kf_seal_kind_names[kind]);
    if (!file_id || !file_id[0]) return 3;
    lua_pushstring(L, file_id);
    return 4;
}

static int lseal_key_generate(lua_State *L) {
    kf_door in = kf_door_fields(L, "key_generate", 1);
    const char *path = kf_field_text(&in, "path", KF_KEY_MAX_PATH);
    char id[KF_KEY_ID_HEX + 1];
    kf_buf *why = kf_newbuf(L);
    kf_seal_kind kind = kf_key_generate(path, id, why);
    if (kind != KF_SEAL_OK) return lseal_refused(L, kind, why, NULL);
    lua_pushstring(L, id);
    return 1;
}

static int lseal_key_id(lua_State *L) {
    kf_door in = kf_door_fields(L, "key_id", 1);
    const char *path = kf_field_text(&in, "key_file", KF_KEY_MAX_PATH);
    kf_buf *why = kf_newbuf(L);
    kf_key key;
    char id[KF_KEY_ID_HEX + 1];
    kf_seal_kind kind = kf_key_read(path, &key, why);
    memcpy(id, key.id, sizeof id);
    kf_key_wipe(&key);
    if (kind != KF_SEAL_OK) return lseal_refused(L, kind, why, NULL);
    lua_pushstring(L, id);
    return 1;
}

static int lseal_seal(lua_State *L) {
    kf_door in = kf_door_fields(L, "seal", 3);
    const char *path = kf_field_text(&in, "key_file", KF_KEY_MAX_PATH);
    size_t len = 0, aad_len;
    const char *plain = kf_field_text(&in, "plaintext", KF_SEAL_MAX_PLAINTEXT);
    const char *aad = kf_field_text(&in, "aad", KF_SEAL_MAX_AAD);
    kf_buf *out = kf_newbuf(L), *why = kf_newbuf(L);
    kf_key key;
    char id[KF_KEY_ID_HEX + 1];
    kf_seal_kind kind;
    len = strlen(plain);
    aad_len = strlen(aad);
    kind = kf_key_read(path, &key, why);
    if (kind == KF_SEAL_OK) kind = kf_seal(&key, plain, len, aad, aad_len, out, why);
    memcpy(id, key.id, sizeof id);
    kf_key_wipe(&key);
    if (kind != KF_SEAL_OK) return lseal_refused(L, kind, why, NULL);
    lua_pushlstring(L, out->data, out->len);
    lua_pushstring(L, id);
    return 2;
}

static int lseal_unseal(lua_State *L) {
    kf_door in = kf_door_fields(L, "unseal", 4);
    const char *path = kf_field_text(&in, "key_file", KF_KEY_MAX_PATH);
    const char *sealed = kf_field_text(&in, "sealed", KF_SEAL_MAX_SEALED);
    const char *aad = kf_field_text(&in, "aad", KF_SEAL_MAX_AAD);
    const char *want = kf_field_opttext(&in, "key_id", KF_KEY_ID_HEX);
    kf_buf *out = kf_newbuf(L), *why = kf_newbuf(L);
    kf_key key;
    char id[KF_KEY_ID_HEX + 1];
    kf_seal_kind kind = kf_key_read(path, &key, why);
    memcpy(id, key.id, sizeof id);
    /* Another key is named as such, before any decryption: "the key is
     * wrong" is the one thing an operator can act on. */
    if (kind == KF_SEAL_OK && want && strcmp(want, key.id) != 0) {
        kf_buf_clear(why);
        kf_buf_puts(why, "key file ");
        kf_buf_quote(why, path);
        kf_buf_printf(why, " holds key %s, not key %s, which the value was sealed with", key.id,
                      want);
        kind = KF_SEAL_WRONG_KEY;
    }
    if (kind == KF_SEAL_OK)
        kind = kf_unseal(&key, sealed, strlen(sealed), aad, strlen(aad), out, why);
    kf_key_wipe(&key);
    if (kind != KF_SEAL_OK) {
        kf_buf_wipe_free(out);
        return lseal_refused(L, kind, why, id);
    }
    lua_pushlstring(L, out->data ? out->data : "", out->len);
    kf_buf_wipe_free(out);
    lua_pushstring(L, id);
    return 2;
}

const luaL_Reg kf_sealing_functions[] = {
    {"key_generate", lseal_key_generate},
    {"key_id", lseal_key_id},
    {"seal", lseal_seal},
    {"unseal", lseal_unseal},
    {NULL, NULL}};
