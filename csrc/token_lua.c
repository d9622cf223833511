/* fetch_token{...}: the Lua side of token.c. Reads the request through the
 * door, runs it on the state's kept token handle, and returns the answer as
 * it came; the body buffer is wiped, since it holds the access token.
 * token_cache_get/put/forget: the Lua side of tokencache.c. */
#include <string.h>

#include "parts.h"
#include "session.h"
#include "token.h"
#include "tokencache.h"
#include "validate.h"

/* "Name: Value": a token (RFC 9110's tchar) before the colon, and no CR
 * or LF after it (the door refused NUL), so no entry can end its line and
 * start another header, or the body; or "Name;", libcurl's form for a
 * header sent with an empty value (it drops "Name:"). Which names may be
 * sent is Lua's rule. */
static int ltok_header_ok(const char *h) {
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    const char *p = h;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           (*p && strchr(tchar, *p)))
        p++;
    return p > h && ((*p == ':' && !strpbrk(p, "\r\n")) || (p[0] == ';' && p[1] == '\0'));
}

/* fetch_token{endpoint, client_id, client_secret, scope, audience,
 * headers, ca_file, tls_verify, connect_timeout_ms, timeout_ms}
 * --> { ok, http_status, body, curl_code, curl_error } */
static int ltok_fetch_token(lua_State *L) {
    kf_token_req req;
    kf_session *s;
    kf_curlopt o = {NULL, CURLE_OK, NULL};
    kf_buf *body;
    long status = 0;
    CURLcode rc;
    const char *headers[KF_TOKEN_MAX_HEADERS];
    int i;
    kf_door in = kf_door_fields(L, "fetch_token", 10);
    memset(&req, 0, sizeof req);
    req.endpoint = kf_field_text(&in, "endpoint", KF_MAX_FIELD);
    req.client_id = kf_field_text(&in, "client_id", KF_MAX_FIELD);
    req.client_secret = kf_field_text(&in, "client_secret", KF_MAX_FIELD);
    req.scope = kf_field_opttext(&in, "scope", KF_MAX_FIELD);
    req.audience = kf_field_opttext(&in, "audience", KF_MAX_FIELD);
    req.nheaders = kf_field_textlist(&in, "headers", KF_TOKEN_MAX_HEADERS, KF_TOKEN_MAX_HEADER,
                                     headers);
    for (i = 0; i < req.nheaders; i++)
        if (!ltok_header_ok(headers[i]))
            return luaL_error(L, "kfsmtp.core.fetch_token: field 'headers[%d]' must be "
                                 "\"Name: Value\" without CR or LF", i + 1);
    req.headers = headers;
    req.ca_file = kf_field_opttext(&in, "ca_file", KF_MAX_FIELD);
    req.tls_verify = kf_field_bool(&in, "tls_verify", 1);
    kf_session_timeouts(&in, &req.connect_timeout_ms, &req.timeout_ms);
    s = kf_session_get(L, "fetch_token");
    if (!s->token && !(s->token = curl_easy_init()))
        return luaL_error(L, "kfsmtp.core.fetch_token: curl_easy_init failed");
    body = kf_newbuf(L);
    o.curl = s->token;
    rc = kf_token_fetch(&o, &req, body, &status, s->token_errbuf);
    if (o.name) return kf_session_refused(L, "fetch_token", &o); /* body's __gc frees it */
    lua_createtable(L, 0, 5);
    kf_session_outcome(L, rc, s->token_errbuf);
    kf_pushint(L, status);
    lua_setfield(L, -2, "http_status");
    kf_setfield_buf(L, "body", body);
    kf_buf_wipe_free(body);
    return 1;
}

/* token_cache_get(key) --> token | nil. The copy is in a buffer whose
 * __gc wipes it, should pushing the string raise. */
static int ltok_cache_get(lua_State *L) {
    kf_door in = kf_door_args(L, "token_cache_get");
    size_t key_len;
    const char *key = kf_arg_bytes(&in, 1, "key", &key_len);
    kf_buf *token = kf_newbuf(L);
    int found = kf_token_cache_get(key, key_len, token);
    if (found > 0) lua_pushlstring(L, token->data, token->len);
    else lua_pushnil(L);
    kf_buf_wipe_free(token);
    return 1;
}

/* token_cache_put(key, token, lifetime_s) --> kept (boolean). A token the
 * cache cannot keep (empty, holding NUL, longer than 64 KiB) is not kept,
 * and is fetched again next time; lifetime_s is 1 s .. 24 h. */
static int ltok_cache_put(lua_State *L) {
    kf_door in = kf_door_args(L, "token_cache_put");
    size_t key_len, token_len;
    const char *key = kf_arg_bytes(&in, 1, "key", &key_len);
    const char *token = kf_arg_bytes(&in, 2, "token", &token_len);
    long lifetime_s = (long)kf_arg_int(&in, 3, "lifetime_s", 1, KF_TOKEN_CACHE_MAX_LIFETIME_S, 1);
    int kept = memchr(token, '\0', token_len) == NULL &&
               kf_token_cache_put(key, key_len, token, token_len, lifetime_s) == 0;
    lua_pushboolean(L, kept);
    return 1;
}

/* token_cache_forget(key): a token the relay refused is not offered again. */
static int ltok_cache_forget(lua_State *L) {
    kf_door in = kf_door_args(L, "token_cache_forget");
    size_t key_len;
    const char *key = kf_arg_bytes(&in, 1, "key", &key_len);
    kf_token_cache_forget(key, key_len);
    return 0;
}

const luaL_Reg kf_token_functions[] = {
    {"fetch_token", ltok_fetch_token},
    {"token_cache_get", ltok_cache_get},
    {"token_cache_put", ltok_cache_put},
    {"token_cache_forget", ltok_cache_forget},
    {NULL, NULL}};
