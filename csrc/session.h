/* The libcurl handles one Lua state keeps (see session.c), and what the
 * bindings of deliveries and token requests share. */
#ifndef KFSMTP_SESSION_H
#define KFSMTP_SESSION_H

#include "delivery.h"
#include "luafield.h"

typedef struct kf_session {
    kf_delivery delivery;
    CURL *token; /* NULL until the first token request */
    /* libcurl writes token errors here; it lives as long as the handle,
     * which keeps pointing at it if clearing the option ever fails. */
    char token_errbuf[CURL_ERROR_SIZE];
} kf_session;

/* The state's session, made on first use; fn names the caller in errors. */
KF_HIDDEN kf_session *kf_session_get(lua_State *L, const char *fn);
/* The transfer's time limits, fields of the table read through in. */
KF_HIDDEN void kf_session_timeouts(const kf_door *in, long *connect_timeout_ms,
                                   long *timeout_ms);
/* Sets ok, curl_code and curl_error in the table on top of the stack. */
KF_HIDDEN void kf_session_outcome(lua_State *L, CURLcode code, const char *errbuf);
/* Raises "kfsmtp.core.FN: libcurl refused CURLOPT_...: reason". */
KF_HIDDEN int kf_session_refused(lua_State *L, const char *fn, const kf_curlopt *o);

#endif
