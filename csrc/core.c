/* kfsmtp.core: luaopen_kfsmtp_core, the module's one exported symbol. It
 * initialises libcurl once per process, opens every part from one list,
 * and exports the version strings and the shared vocabulary of vocab.h. */
#include <pthread.h>

#include <curl/curl.h>

#include "compat.h"
#include "parts.h"
#include "version.h"
#include "vocab.h"

static const luaL_Reg *const core_parts[] = {
    kf_validate_functions, kf_message_functions, kf_delivery_functions, kf_token_functions,
    kf_store_functions, kf_password_functions, kf_encode_functions, kf_secretfile_functions,
    kf_sealing_functions, kf_pgstore_functions, NULL};

static pthread_once_t core_curl_once = PTHREAD_ONCE_INIT;
static CURLcode core_curl_init_result;

static void core_curl_init(void) {
    core_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The vocabulary of vocab.h as Lua tables: arrays of names in enum order,
 * DEFAULTS by option name, CURLE by curl.h name without the prefix. */
static void core_push_names(lua_State *L, const char *key, const char *const *names, int n) {
    int i;
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, key);
}

static void core_push_vocabulary(lua_State *L) {
    core_push_names(L, "STAGES", kf_stage_names, KF_STAGE_COUNT);
    core_push_names(L, "TLS_MODES", kf_tls_mode_names, KF_TLS_MODE_COUNT);
    core_push_names(L, "QUIT_STAGES", kf_quit_after_names, KF_QUIT_COUNT - 1);
    core_push_names(L, "SASL_MECHANISMS", kf_sasl_names, KF_SASL_COUNT);
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
#define CORE_CURLE(name) kf_pushint(L, CURLE_##name); lua_setfield(L, -2, #name);
    KF_CURLE_LIST(CORE_CURLE)
#undef CORE_CURLE
    lua_setfield(L, -2, "CURLE");
}

KF_EXPORT int luaopen_kfsmtp_core(lua_State *L);

int luaopen_kfsmtp_core(lua_State *L) {
    const luaL_Reg *const *part;
    const curl_version_info_data *v;
    pthread_once(&core_curl_once, core_curl_init);
    if (core_curl_init_result != CURLE_OK)
        return luaL_error(L, "kfsmtp.core: curl_global_init failed: %s",
                          curl_easy_strerror(core_curl_init_result));
    lua_newtable(L);
    for (part = core_parts; *part; part++) luaL_setfuncs(L, *part, 0);
    lua_pushstring(L, KFSMTP_VERSION);
    lua_setfield(L, -2, "version");
    core_push_vocabulary(L);
    /* Not curl_version(): it initialises libldap (and leaks in libsasl)
     * just to print LDAP's version. */
    v = curl_version_info(CURLVERSION_NOW);
    lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "no-TLS");
    lua_setfield(L, -2, "curl_version");
    return 1;
}
