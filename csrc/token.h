/* The OAuth 2.0 client-credentials token request (see token.c). */
#ifndef KFSMTP_TOKEN_H
#define KFSMTP_TOKEN_H

#include <curl/curl.h>

#include "buffer.h"
#include "curlopt.h"

#define KF_TOKEN_MAX_BODY (64 * 1024)
/* The caller's extra request headers: how many, and the bytes of each. */
#define KF_TOKEN_MAX_HEADERS 32
#define KF_TOKEN_MAX_HEADER 8192

typedef struct kf_token_req {
    const char *endpoint, *client_id, *client_secret, *scope, *audience;
    /* "Name: Value" lines without CR or LF (the binding checks), sent
     * after Accept. */
    const char *const *headers;
    int nheaders;
    const char *ca_file;
    int tls_verify;
    long connect_timeout_ms, timeout_ms;
} kf_token_req;

/* POSTs the grant on o->curl; body gets the answer (at most 64 KiB),
 * http_status its status, errbuf libcurl's words (or ""). Returns libcurl's
 * result; when libcurl refused an option, o->name says which (and nothing
 * was sent if that happened before the transfer). */
KF_HIDDEN CURLcode kf_token_fetch(kf_curlopt *o, const kf_token_req *req, kf_buf *body,
                                  long *http_status, char errbuf[CURL_ERROR_SIZE]);

#endif
