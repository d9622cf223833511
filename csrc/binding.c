/* The Lua binding: luaopen_kfsmtp_core and the functions lua/kfsmtp.lua
 * composes into the public API. Wrong argument types raise; failures of
 * the world return nil plus a message. C buffers that outlive a call that
 * could raise are owned by userdata with __gc. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "compat.h"
#include "delivery.h"
#include "luafield.h"
#include "message.h"
#include "password.h"
#include "store.h"
#include "token.h"
#include "version.h"
#include "validate.h"
#include "vocab.h"

#define BIND_SESSION_MT "kfsmtp.session"
#define BIND_LOCK_MT "kfsmtp.lock"
#define BIND_GEN_MT "kfsmtp.generation"

/* ---- validation ---- */

static int bind_check(lua_State *L, const char *fn, const char *(*check)(const char *, size_t)) {
    kf_door d = kf_door_args(L, fn);
    size_t len;
    const char *s = kf_arg_bytes(&d, 1, "value", &len);
    const char *why = check(s, len);
    if (why) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 1;
}

static int bind_check_text(lua_State *L) { return bind_check(L, "check_text", kf_check_text); }
static int bind_check_host(lua_State *L) { return bind_check(L, "check_host", kf_check_host); }
static int bind_check_mailbox(lua_State *L) {
    return bind_check(L, "check_mailbox", kf_check_mailbox);
}
static int bind_check_display_name(lua_State *L) {
    return bind_check(L, "check_display_name", kf_check_display_name);
}

/* ---- message ---- */

static void bind_random_hex(char *out, size_t nbytes) {
    unsigned char raw[16];
    size_t i;
    if (nbytes > sizeof raw) nbytes = sizeof raw;
    if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes) {
        /* Uniqueness, not secrecy, is what a Message-ID needs. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (i = 0; i < nbytes; i++)
            raw[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (getpid() >> (i % 2 * 8)) ^ i);
    }
    for (i = 0; i < nbytes; i++) {
        static const char hex[] = "0123456789abcdef";
        out[i * 2] = hex[raw[i] >> 4];
        out[i * 2 + 1] = hex[raw[i] & 15];
    }
    out[nbytes * 2] = '\0';
}

static int bind_compose(lua_State *L) {
    kf_message_in in;
    char unique[48], message_id[400];
    kf_buf *out;
    kf_door d = kf_door_fields(L, "compose", 7);
    in.sender_name = kf_field_text(&d, "sender_name", KF_MAX_FIELD);
    /* The Message-ID's domain comes from it, into a fixed buffer. */
    in.sender_account = kf_field_text(&d, "sender_account", KF_MAX_MAILBOX);
    in.recipient = kf_field_text(&d, "recipient", KF_MAX_FIELD);
    in.host = kf_field_text(&d, "host", KF_MAX_FIELD);
    in.port = (long)kf_field_int(&d, "port", 1, KF_MAX_PORT, KF_DEFAULT_PORT);
    in.tls_mode = (enum kf_tls_mode)kf_field_choice(&d, "tls_mode", kf_tls_mode_names,
                                                    KF_TLS_MODE_COUNT, 1);
    in.now = (time_t)kf_field_int(&d, "now", 0, KF_MESSAGE_MAX_TIME, (lua_Integer)time(NULL));
    {
        char rnd[33];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        bind_random_hex(rnd, 12);
        snprintf(unique, sizeof unique, "%lld.%s", (long long)ts.tv_sec, rnd);
    }
    in.unique = unique;
    out = kf_newbuf(L);
    if (kf_compose(&in, out, message_id, sizeof message_id) != 0) {
        kf_buf_free(out);
        return luaL_error(L, "kfsmtp.core.compose: out of memory composing the message");
    }
    lua_pushlstring(L, out->data, out->len);
    lua_pushstring(L, message_id);
    kf_buf_free(out);
    return 2;
}

/* ---- delivery ---- */

/* The libcurl handles a Lua state keeps: deliveries', and token requests'
 * with the buffer libcurl writes its error into (it must outlive the
 * request: the handle keeps pointing at it if clearing the option fails). */
typedef struct bind_session_box {
    kf_delivery delivery;
    CURL *token;
    char token_errbuf[CURL_ERROR_SIZE];
} bind_session_box;

static int bind_session_gc(lua_State *L) {
    bind_session_box *s = luaL_checkudata(L, 1, BIND_SESSION_MT);
    kf_delivery_close(&s->delivery);
    if (s->token) curl_easy_cleanup(s->token);
    s->token = NULL;
    return 0;
}

static int bind_refused(lua_State *L, const char *fn, const kf_curlopt *o) {
    return luaL_error(L, "kfsmtp.core.%s: libcurl refused %s: %s", fn, o->name,
                      curl_easy_strerror(o->code));
}

static char bind_session_key;

/* One handle per Lua state, kept in the registry: libcurl then parses the
 * CA bundle once per state instead of once per test. */
static bind_session_box *bind_session(lua_State *L) {
    bind_session_box *s;
    lua_pushlightuserdata(L, &bind_session_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (s) return s;
    s = kf_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    if (kf_delivery_init(&s->delivery) != 0) {
        luaL_error(L, "kfsmtp.core: curl_easy_init failed");
        return NULL;
    }
    /* The metatable goes on only once the handle exists (lua-zlib's rule). */
    luaL_getmetatable(L, BIND_SESSION_MT);
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, &bind_session_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return s;
}

static void bind_push_lines(lua_State *L, const kf_buf *b) {
    int i = 0;
    const char *p = b->data;
    lua_newtable(L);
    if (!p || b->len == 0) return;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        lua_pushlstring(L, p, n);
        lua_rawseti(L, -2, ++i);
        if (!nl) break;
        p = nl + 1;
    }
}

static void bind_set_ms(lua_State *L, const char *key, double ms) {
    if (ms < 0) ms = 0;
    lua_pushnumber(L, (lua_Number)((long long)(ms * 1000.0 + 0.5)) / 1000.0);
    lua_setfield(L, -2, key);
}

static void bind_push_result(lua_State *L, kf_delivery *d, const kf_delivery_req *req) {
    int implicit = req->tls_mode == KF_TLS_IMPLICIT;
    double tls_ms = 0;
    lua_createtable(L, 0, 20);
    lua_pushboolean(L, d->code == CURLE_OK);
    lua_setfield(L, -2, "ok");
    kf_pushint(L, d->code);
    lua_setfield(L, -2, "curl_code");
    lua_pushstring(L, d->errbuf[0] ? d->errbuf : curl_easy_strerror(d->code));
    lua_setfield(L, -2, "curl_error");
    if (d->os_errno) {
        char text[128];
        lua_pushstring(L, kf_strerror((int)d->os_errno, text, sizeof text));
        lua_setfield(L, -2, "os_error");
    }
    if (d->code != CURLE_OK) {
        lua_pushstring(L, kf_stage_names[kf_delivery_failed_stage(d, req)]);
        lua_setfield(L, -2, "stage");
    }
    kf_setfield_buf(L, "greeting", &d->greeting);
    kf_setfield_buf(L, "reply", &d->reply);
    kf_setfield_buf(L, "final_reply", &d->final_reply);
    bind_push_lines(L, &d->ehlo);
    lua_setfield(L, -2, "ehlo");
    if (req->want_transcript) {
        bind_push_lines(L, &d->transcript);
        lua_setfield(L, -2, "transcript");
    }
    lua_pushstring(L, d->auth_mechanism);
    lua_setfield(L, -2, "auth_mechanism");
    lua_pushboolean(L, d->server_spoke);
    lua_setfield(L, -2, "server_spoke");
    lua_pushboolean(L, d->aborted_no_auth);
    lua_setfield(L, -2, "auth_not_offered");
    lua_pushboolean(L, d->auth_sent);
    lua_setfield(L, -2, "auth_sent");

    if (implicit && d->appconnect_us > d->connect_us)
        tls_ms = (double)(d->appconnect_us - d->connect_us) / 1e3;
    else if (d->t_starttls > 0 && d->t_tls_done > d->t_starttls)
        tls_ms = d->t_tls_done - d->t_starttls;
    lua_createtable(L, 0, 5);
    bind_set_ms(L, "connect", (double)d->connect_us / 1e3);
    bind_set_ms(L, "tls", tls_ms);
    bind_set_ms(L, "auth", d->t_auth > 0 && d->t_mail > d->t_auth ? d->t_mail - d->t_auth : 0);
    bind_set_ms(L, "delivery", d->t_mail > 0 && d->t_final > d->t_mail ? d->t_final - d->t_mail : 0);
    bind_set_ms(L, "total", (double)d->total_us / 1e3);
    lua_setfield(L, -2, "timings");

    if (d->tls.captured) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, d->tls.version);
        lua_setfield(L, -2, "version");
        lua_pushboolean(L, req->tls_verify && d->tls.verify_result == 0);
        lua_setfield(L, -2, "verified");
        lua_createtable(L, 0, 5);
        kf_setfield_buf(L, "subject", &d->tls.subject);
        kf_setfield_buf(L, "issuer", &d->tls.issuer);
        bind_push_lines(L, &d->tls.names);
        lua_setfield(L, -2, "names");
        lua_pushstring(L, d->tls.not_after);
        lua_setfield(L, -2, "not_after");
        lua_pushstring(L, d->tls.sha256);
        lua_setfield(L, -2, "sha256");
        lua_setfield(L, -2, "cert");
        lua_setfield(L, -2, "tls");
    }
}

static int bind_deliver(lua_State *L) {
    kf_delivery_req req;
    kf_delivery *d;
    kf_door in = kf_door_fields(L, "deliver", 17);
    memset(&req, 0, sizeof req);
    req.host = kf_field_text(&in, "host", KF_MAX_FIELD);
    req.port = (long)kf_field_int(&in, "port", 1, KF_MAX_PORT, KF_DEFAULT_PORT);
    req.tls_mode = (enum kf_tls_mode)kf_field_choice(&in, "tls_mode", kf_tls_mode_names,
                                                     KF_TLS_MODE_COUNT, 1);
    req.username = kf_field_opttext(&in, "username", KF_MAX_FIELD);
    req.password = kf_field_opttext(&in, "password", KF_MAX_FIELD);
    req.bearer = kf_field_opttext(&in, "bearer", KF_TOKEN_MAX_BODY);
    req.mail_from = kf_field_text(&in, "mail_from", KF_MAX_FIELD);
    req.rcpt_to = kf_field_text(&in, "rcpt_to", KF_MAX_FIELD);
    req.message = kf_field_bytes(&in, "message", &req.message_len);
    req.helo = kf_field_text(&in, "helo", KF_MAX_FIELD);
    req.ca_file = kf_field_opttext(&in, "ca_file", KF_MAX_FIELD);
    req.pinned_pubkey = kf_field_opttext(&in, "pinned_pubkey", KF_MAX_FIELD);
    req.tls_verify = kf_field_bool(&in, "tls_verify", 1);
    req.connect_timeout_ms = (long)kf_field_int(&in, "connect_timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                                KF_DEFAULT_CONNECT_TIMEOUT_MS);
    req.timeout_ms = (long)kf_field_int(&in, "timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                        KF_DEFAULT_TIMEOUT_MS);
    req.want_transcript = kf_field_bool(&in, "transcript", 0);
    /* Absent (-1) is KF_QUIT_NEVER, the full test. */
    req.quit_after = (enum kf_quit_after)(kf_field_choice(&in, "quit_after", kf_quit_after_names,
                                                          KF_QUIT_COUNT - 1, 0) + 1);
    /* Every value checked: only now the handle and then the network. */
    d = &bind_session(L)->delivery;
    switch (kf_delivery_run(d, &req)) {
    case 0: break;
    case -2: return bind_refused(L, "deliver", &d->refused);
    default: return luaL_error(L, "kfsmtp.core: out of memory preparing the delivery");
    }
    bind_push_result(L, d, &req);
    return 1;
}

/* fetch_token{endpoint, client_id, client_secret, scope, audience, ca_file,
 * tls_verify, connect_timeout_ms, timeout_ms}
 * --> { ok, http_status, body, curl_code, curl_error } */
static int bind_fetch_token(lua_State *L) {
    kf_token_req req;
    bind_session_box *s;
    kf_curlopt o;
    kf_buf *body;
    long status = 0;
    CURLcode rc;
    kf_door in = kf_door_fields(L, "fetch_token", 9);
    memset(&req, 0, sizeof req);
    req.endpoint = kf_field_text(&in, "endpoint", KF_MAX_FIELD);
    req.client_id = kf_field_text(&in, "client_id", KF_MAX_FIELD);
    req.client_secret = kf_field_text(&in, "client_secret", KF_MAX_FIELD);
    req.scope = kf_field_opttext(&in, "scope", KF_MAX_FIELD);
    req.audience = kf_field_opttext(&in, "audience", KF_MAX_FIELD);
    req.ca_file = kf_field_opttext(&in, "ca_file", KF_MAX_FIELD);
    req.tls_verify = kf_field_bool(&in, "tls_verify", 1);
    req.connect_timeout_ms = (long)kf_field_int(&in, "connect_timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                                KF_DEFAULT_CONNECT_TIMEOUT_MS);
    req.timeout_ms = (long)kf_field_int(&in, "timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                        KF_DEFAULT_TIMEOUT_MS);
    s = bind_session(L);
    if (!s->token && !(s->token = curl_easy_init()))
        return luaL_error(L, "kfsmtp.core: curl_easy_init failed");
    body = kf_newbuf(L);
    o.curl = s->token;
    o.code = CURLE_OK;
    o.name = NULL;
    rc = kf_token_fetch(&o, &req, body, &status, s->token_errbuf);
    if (o.name) return bind_refused(L, "fetch_token", &o); /* body's __gc frees it */
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, rc == CURLE_OK);
    lua_setfield(L, -2, "ok");
    kf_pushint(L, status);
    lua_setfield(L, -2, "http_status");
    kf_setfield_buf(L, "body", body);
    kf_pushint(L, rc);
    lua_setfield(L, -2, "curl_code");
    lua_pushstring(L, s->token_errbuf[0] ? s->token_errbuf : curl_easy_strerror(rc));
    lua_setfield(L, -2, "curl_error");
    /* The answer holds the access token. */
    kf_buf_wipe_free(body);
    return 1;
}

/* ---- store ---- */

static int bind_store_read(lua_State *L) {
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

static int bind_store_stat(lua_State *L) {
    char sig[KF_SIG_SIZE];
    kf_door in = kf_door_args(L, "store_stat");
    int rc = kf_store_stat(kf_arg_text(&in, 1, "path", KF_ANY_LENGTH), sig);
    if (rc < 0) return kf_fail(L, "cannot stat the store", -rc);
    lua_pushstring(L, sig);
    return 1;
}

static int bind_store_write(lua_State *L) {
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

static int bind_store_sweep(lua_State *L) {
    kf_door in = kf_door_args(L, "store_sweep");
    int rc = kf_store_sweep(kf_arg_text(&in, 1, "path", KF_ANY_LENGTH));
    if (rc < 0) return kf_fail(L, "cannot list the store's folder", -rc);
    lua_pushinteger(L, rc);
    return 1;
}

static int bind_lock_release(lua_State *L) {
    kf_door in = kf_door_args(L, "lock:release");
    int *fd = kf_arg_object(&in, 1, "self", BIND_LOCK_MT);
    if (*fd >= 0) { close(*fd); *fd = -1; }
    return 0;
}

static int bind_store_lock(lua_State *L) {
    kf_door in = kf_door_args(L, "store_lock");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    int *fd = kf_newuserdata(L, sizeof *fd);
    *fd = kf_store_lock(path);
    if (*fd < 0) return kf_fail(L, "cannot lock the store", -*fd);
    luaL_getmetatable(L, BIND_LOCK_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int bind_gen_gc(lua_State *L) {
    void **map = luaL_checkudata(L, 1, BIND_GEN_MT);
    if (*map) { kf_store_generation_unmap(*map); *map = NULL; }
    return 0;
}

static int bind_gen_value(lua_State *L) {
    kf_door in = kf_door_args(L, "generation:value");
    void **map = kf_arg_object(&in, 1, "self", BIND_GEN_MT);
    /* Wraps past 2^53 on LuaJIT only after that many writes: never. */
    kf_pushint(L, *map ? kf_store_generation(*map) : 0);
    return 1;
}

static int bind_gen_bump(lua_State *L) {
    kf_door in = kf_door_args(L, "generation:bump");
    void **map = kf_arg_object(&in, 1, "self", BIND_GEN_MT);
    if (*map) kf_store_generation_bump(*map);
    return 0;
}

/* The reader's hot path: a closure over the mapping, so a call costs no
 * method lookup and no metatable check. */
static int bind_gen_read(lua_State *L) {
    void **map = lua_touserdata(L, lua_upvalueindex(1));
    kf_pushint(L, *map ? kf_store_generation(*map) : 0);
    return 1;
}

/* store_generation(path) --> counter, read | nil, message
 * counter:bump() after a write; read() --> the current value. */
static int bind_store_generation(lua_State *L) {
    kf_door in = kf_door_args(L, "store_generation");
    const char *path = kf_arg_text(&in, 1, "path", KF_ANY_LENGTH);
    void **map = kf_newuserdata(L, sizeof *map);
    *map = kf_store_generation_map(path);
    if (!*map) return kf_fail(L, "cannot map the store's lock file", errno);
    luaL_getmetatable(L, BIND_GEN_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, bind_gen_read, 1);
    return 2;
}

/* ---- callers' passwords ---- */

static int bind_password_hash(lua_State *L) {
    kf_door in = kf_door_args(L, "password_hash");
    size_t len;
    const char *pw = kf_arg_bytes(&in, 1, "password", &len);
    long iterations = (long)kf_arg_int(&in, 2, "iterations", KF_PASSWORD_MIN_ITERATIONS,
                                       KF_PASSWORD_MAX_ITERATIONS, KF_PASSWORD_ITERATIONS);
    char out[KF_PASSWORD_HASH_SIZE];
    if (kf_password_hash(pw, len, iterations, out, sizeof out) != 0)
        return luaL_error(L, "kfsmtp.core.password_hash: hashing failed");
    lua_pushstring(L, out);
    return 1;
}

static int bind_password_verify(lua_State *L) {
    kf_door in = kf_door_args(L, "password_verify");
    size_t len;
    const char *pw = kf_arg_bytes(&in, 1, "password", &len);
    int rc = kf_password_verify(pw, len, kf_arg_text(&in, 2, "hash", KF_ANY_LENGTH));
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "malformed password hash");
        return 2;
    }
    lua_pushboolean(L, rc);
    return 1;
}

/* ---- misc ---- */

static int bind_hostname(lua_State *L) {
    char name[256];
    if (gethostname(name, sizeof name) != 0) return kf_fail(L, "gethostname", errno);
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

static pthread_once_t bind_curl_once = PTHREAD_ONCE_INIT;
static CURLcode bind_curl_init_result;

static void bind_curl_init(void) {
    bind_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const luaL_Reg bind_functions[] = {
    {"check_text", bind_check_text},
    {"check_host", bind_check_host},
    {"check_mailbox", bind_check_mailbox},
    {"check_display_name", bind_check_display_name},
    {"compose", bind_compose},
    {"deliver", bind_deliver},
    {"fetch_token", bind_fetch_token},
    {"store_read", bind_store_read},
    {"store_stat", bind_store_stat},
    {"store_write", bind_store_write},
    {"store_lock", bind_store_lock},
    {"store_sweep", bind_store_sweep},
    {"store_generation", bind_store_generation},
    {"hostname", bind_hostname},
    {"password_hash", bind_password_hash},
    {"password_verify", bind_password_verify},
    {NULL, NULL}};

static const luaL_Reg bind_gen_methods[] = {
    {"value", bind_gen_value},
    {"bump", bind_gen_bump},
    {"__gc", bind_gen_gc},
    {NULL, NULL}};

static const luaL_Reg bind_lock_methods[] = {
    {"release", bind_lock_release},
    {"__gc", bind_lock_release},
    {"__close", bind_lock_release},
    {NULL, NULL}};

/* The vocabulary of vocab.h as Lua tables: arrays of names in enum order,
 * DEFAULTS by option name, CURLE by curl.h name without the prefix. */
static void bind_push_names(lua_State *L, const char *key, const char *const *names, int n) {
    int i;
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, key);
}

static void bind_push_vocabulary(lua_State *L) {
    bind_push_names(L, "STAGES", kf_stage_names, KF_STAGE_COUNT);
    bind_push_names(L, "TLS_MODES", kf_tls_mode_names, KF_TLS_MODE_COUNT);
    bind_push_names(L, "QUIT_STAGES", kf_quit_after_names, KF_QUIT_COUNT - 1);
    lua_createtable(L, 0, 5);
    kf_pushint(L, KF_DEFAULT_PORT);
    lua_setfield(L, -2, "port");
    kf_pushint(L, KF_IMPLICIT_TLS_PORT);
    lua_setfield(L, -2, "implicit_tls_port");
    kf_pushint(L, KF_DEFAULT_CONNECT_TIMEOUT_MS);
    lua_setfield(L, -2, "connect_timeout_ms");
    kf_pushint(L, KF_DEFAULT_TIMEOUT_MS);
    lua_setfield(L, -2, "timeout_ms");
    kf_pushint(L, KF_MAX_TIMEOUT_MS);
    lua_setfield(L, -2, "max_timeout_ms");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "tls_verify");
    lua_setfield(L, -2, "DEFAULTS");
    lua_newtable(L);
#define BIND_CURLE(name) kf_pushint(L, CURLE_##name); lua_setfield(L, -2, #name);
    KF_CURLE_LIST(BIND_CURLE)
#undef BIND_CURLE
    lua_setfield(L, -2, "CURLE");
}

KF_EXPORT int luaopen_kfsmtp_core(lua_State *L);

int luaopen_kfsmtp_core(lua_State *L) {
    pthread_once(&bind_curl_once, bind_curl_init);
    if (bind_curl_init_result != CURLE_OK)
        return luaL_error(L, "kfsmtp.core: curl_global_init failed: %s",
                          curl_easy_strerror(bind_curl_init_result));
    luaL_newmetatable(L, BIND_SESSION_MT);
    lua_pushcfunction(L, bind_session_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, BIND_GEN_MT);
    luaL_setfuncs(L, bind_gen_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, BIND_LOCK_MT);
    luaL_setfuncs(L, bind_lock_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, bind_functions, 0);
    lua_pushstring(L, KFSMTP_VERSION);
    lua_setfield(L, -2, "version");
    bind_push_vocabulary(L);
    {
        /* Not curl_version(): it initialises libldap (and leaks in libsasl)
         * just to print LDAP's version. */
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "no-TLS");
        lua_setfield(L, -2, "curl_version");
    }
    return 1;
}
