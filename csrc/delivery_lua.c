/* deliver{...}, clock_ms() and hostname(): the Lua side of delivery.c. Reads the request through the
 * door (every field checked before the network), runs it on the state's
 * kept handle, and turns what the dialog showed into the result table. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509_vfy.h>

#include "parts.h"
#include "session.h"
#include "token.h"
#include "validate.h"

static void ldlv_push_lines(lua_State *L, const kf_buf *b) {
    int i = 0;
    const char *p = b->data, *end = b->data + b->len;
    lua_newtable(L);
    if (!p || b->len == 0) return;
    /* By length, not by NUL: a server's line may hold one. */
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lua_pushlstring(L, p, n);
        lua_rawseti(L, -2, ++i);
        if (!nl) break;
        p = nl + 1;
    }
}

static void ldlv_set_lines(lua_State *L, const char *key, const kf_buf *b) {
    ldlv_push_lines(L, b);
    lua_setfield(L, -2, key);
}

static void ldlv_set_ms(lua_State *L, const char *key, double ms) {
    if (ms < 0) ms = 0;
    lua_pushnumber(L, (lua_Number)((long long)(ms * 1000.0 + 0.5)) / 1000.0);
    lua_setfield(L, -2, key);
}

static void ldlv_set_timings(lua_State *L, const kf_delivery *d, const kf_delivery_req *req) {
    double tls_ms = 0;
    if (req->tls_mode == KF_TLS_IMPLICIT && d->appconnect_us > d->connect_us)
        tls_ms = (double)(d->appconnect_us - d->connect_us) / 1e3;
    else if (d->t_starttls > 0 && d->t_tls_done > d->t_starttls)
        tls_ms = d->t_tls_done - d->t_starttls;
    lua_createtable(L, 0, 5);
    ldlv_set_ms(L, "connect", (double)d->connect_us / 1e3);
    ldlv_set_ms(L, "tls", tls_ms);
    ldlv_set_ms(L, "auth", d->t_auth > 0 && d->t_mail > d->t_auth ? d->t_mail - d->t_auth : 0);
    ldlv_set_ms(L, "delivery", d->t_mail > 0 && d->t_final > d->t_mail ? d->t_final - d->t_mail : 0);
    ldlv_set_ms(L, "total", (double)d->total_us / 1e3);
    lua_setfield(L, -2, "timings");
}

static void ldlv_set_tls(lua_State *L, const kf_tls_facts *t, int tls_verify) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, t->version);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, tls_verify && t->verify_result == 0);
    lua_setfield(L, -2, "verified");
    lua_createtable(L, 0, 5);
    kf_setfield_buf(L, "subject", &t->subject);
    kf_setfield_buf(L, "issuer", &t->issuer);
    ldlv_set_lines(L, "names", &t->names);
    lua_pushstring(L, t->not_after);
    lua_setfield(L, -2, "not_after");
    lua_pushstring(L, t->sha256);
    lua_setfield(L, -2, "sha256");
    lua_setfield(L, -2, "cert");
    lua_setfield(L, -2, "tls");
}

/* The name of why the server's certificate was not trusted, or NULL: for
 * no verdict (a handshake that never got so far reports one too) libcurl's
 * result code decides. */
static const char *ldlv_cert_problem(const kf_delivery *d) {
    long result = d->ssl_verify_result;
    /* libcurl checks the host name itself, after OpenSSL found the chain
     * good: a refused peer with a good chain is a name mismatch. */
    if (d->code == CURLE_PEER_FAILED_VERIFICATION && result == X509_V_OK) return "hostname_mismatch";
#define LDLV_PROBLEM(name, text) if (result == X509_V_ERR_##name) return text;
    KF_CERT_PROBLEM_LIST(LDLV_PROBLEM)
#undef LDLV_PROBLEM
    return NULL;
}

static void ldlv_push_result(lua_State *L, const kf_delivery *d, const kf_delivery_req *req) {
    lua_createtable(L, 0, 20);
    kf_session_outcome(L, d->code, d->errbuf);
    if (d->os_errno) {
        char text[128];
        lua_pushstring(L, kf_strerror((int)d->os_errno, text, sizeof text));
        lua_setfield(L, -2, "os_error");
    }
    if (d->code != CURLE_OK) {
        lua_pushstring(L, kf_stage_names[kf_delivery_failed_stage(d, req)]);
        lua_setfield(L, -2, "stage");
        if (req->tls_verify) {
            lua_pushstring(L, ldlv_cert_problem(d));
            lua_setfield(L, -2, "cert_problem");
        }
    }
    kf_setfield_buf(L, "greeting", &d->greeting);
    kf_setfield_buf(L, "reply", &d->reply);
    kf_setfield_buf(L, "final_reply", &d->final_reply);
    ldlv_set_lines(L, "ehlo", &d->ehlo);
    if (req->want_transcript) ldlv_set_lines(L, "transcript", &d->transcript);
    lua_pushstring(L, d->auth_mechanism);
    lua_setfield(L, -2, "auth_mechanism");
    lua_pushboolean(L, d->server_spoke);
    lua_setfield(L, -2, "server_spoke");
    lua_pushboolean(L, d->aborted_no_auth);
    lua_setfield(L, -2, "auth_not_offered");
    lua_pushboolean(L, d->auth_sent);
    lua_setfield(L, -2, "auth_sent");
    lua_pushboolean(L, d->tls_plain_reply);
    lua_setfield(L, -2, "tls_plain_reply");
    ldlv_set_timings(L, d, req);
    if (d->tls.captured) ldlv_set_tls(L, &d->tls, req->tls_verify);
}

/* deliver{host, port, tls_mode, username, password, bearer, mail_from,
 * rcpt_to, message, helo, ca_file, pinned_pubkey, tls_verify,
 * connect_timeout_ms, timeout_ms, transcript, quit_after, auth_mechanism} --> result */
static int ldlv_deliver(lua_State *L) {
    kf_delivery_req req;
    kf_delivery *d;
    kf_door in = kf_door_fields(L, "deliver", 18);
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
    kf_session_timeouts(&in, &req.connect_timeout_ms, &req.timeout_ms);
    req.want_transcript = kf_field_bool(&in, "transcript", 0);
    /* Absent (-1) is KF_QUIT_NEVER, the full test. */
    req.quit_after = (enum kf_quit_after)(kf_field_choice(&in, "quit_after", kf_quit_after_names,
                                                          KF_QUIT_COUNT - 1, 0) + 1);
    req.auth_mechanism = kf_field_choice(&in, "auth_mechanism", kf_sasl_names, KF_SASL_COUNT, 0);
    /* Every value is checked: only now the handle, then the network. */
    d = &kf_session_get(L, "deliver")->delivery;
    switch (kf_delivery_run(d, &req)) {
    case 0:
        break;
    case -2:
        return kf_session_refused(L, "deliver", &d->refused);
    default:
        return luaL_error(L, "kfsmtp.core.deliver: out of memory preparing the delivery");
    }
    ldlv_push_result(L, d, &req);
    return 1;
}

/* hostname() --> this machine's name, the default EHLO name. */
static int ldlv_hostname(lua_State *L) {
    char name[256];
    if (gethostname(name, sizeof name) != 0) return kf_fail(L, "gethostname", errno);
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

/* clock_ms() --> milliseconds on the monotonic clock deadlines use, so
 * that Lua can share one deadline among the transfers of a test. */
static int ldlv_clock_ms(lua_State *L) {
    lua_pushnumber(L, (lua_Number)kf_clock_ms());
    return 1;
}

const luaL_Reg kf_delivery_functions[] = {
    {"deliver", ldlv_deliver},
    {"clock_ms", ldlv_clock_ms},
    {"hostname", ldlv_hostname},
    {NULL, NULL}};
