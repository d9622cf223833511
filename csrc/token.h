/* The OAuth 2.0 client-credentials token request (see token.c). */
#ifndef KFSMTP_TOKEN_H
#define KFSMTP_TOKEN_H

#include <curl/curl.h>

#include "buffer.h"

#define KF_TOKEN_MAX_BODY (64 * 1024)

typedef struct kf_token_req {
    const char *endpoint, *client_id, *client_secret, *scope, *audience;
    const char *ca_file;
    int tls_verify;
    long connect_timeout_ms, timeout_ms;
} kf_token_req;

/* POSTs the grant; body gets the answer (at most 64 KiB), http_status its
 * status. Returns libcurl's result. */
KF_HIDDEN CURLcode kf_token_fetch(CURL *c, const kf_token_req *req, kf_buf *body,
                                  long *http_status, char errbuf[CURL_ERROR_SIZE]);

#endif
