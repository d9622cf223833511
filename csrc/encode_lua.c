/* base64(s) and url_escape(s): the two encodings in which kfsmtp sends a
 * secret (SASL payloads, the token request's form), so that Lua can find
 * and mask a secret a server echoes back in them. Both come from the
 * libraries that do the sending: OpenSSL's EVP encoder, libcurl's escape. */
#include <curl/curl.h>
#include <openssl/evp.h>

#include "luafield.h"
#include "parts.h"

/* Long enough for any field; a longer value is no secret kfsmtp sends. */
#define LENC_MAX (64 * 1024)

static int lenc_base64(lua_State *L) {
    kf_door in = kf_door_args(L, "base64");
    size_t len;
    const char *s = kf_arg_bytes(&in, 1, "value", &len);
    kf_buf *out;
    int n;
    if (len > LENC_MAX) return luaL_error(L, "kfsmtp.core.base64: argument #1 'value' is longer than %d bytes", LENC_MAX);
    out = kf_newbuf(L);
    kf_buf_reserve(out, (len + 2) / 3 * 4 + 1);
    if (out->oom) return luaL_error(L, "kfsmtp.core.base64: out of memory");
    n = EVP_EncodeBlock((unsigned char *)out->data, (const unsigned char *)s, (int)len);
    lua_pushlstring(L, out->data, (size_t)n);
    /* The value is a secret. */
    kf_buf_wipe_free(out);
    return 1;
}

static int lenc_url_escape(lua_State *L) {
    kf_door in = kf_door_args(L, "url_escape");
    size_t len;
    const char *s = kf_arg_bytes(&in, 1, "value", &len);
    char *escaped;
    if (len > LENC_MAX) return luaL_error(L, "kfsmtp.core.url_escape: argument #1 'value' is longer than %d bytes", LENC_MAX);
    escaped = curl_easy_escape(NULL, s, (int)len);
    if (!escaped) return luaL_error(L, "kfsmtp.core.url_escape: out of memory");
    lua_pushstring(L, escaped);
    curl_free(escaped);
    return 1;
}

const luaL_Reg kf_encode_functions[] = {
    {"base64", lenc_base64},
    {"url_escape", lenc_url_escape},
    {NULL, NULL}};
