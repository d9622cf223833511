/* TLS for every libcurl transfer (see tls.c): certificate checking, set up
 * the same way for deliveries and token requests, and the facts about the
 * server's certificate a delivery reports. */
#ifndef KFSMTP_TLS_H
#define KFSMTP_TLS_H

#include "buffer.h"
#include "curlopt.h"

typedef struct kf_tls_facts {
    int captured;
    char version[32];
    long verify_result;
    kf_buf subject, issuer, names; /* names: one per line */
    char not_after[32];
    char sha256[65];
} kf_tls_facts;

/* Chain and host name verified unless tls_verify is 0, against ca_file or
 * the system bundle, parsed once per handle. */
KF_HIDDEN void kf_curl_verify_options(kf_curlopt *o, const char *ca_file, int tls_verify);

KF_HIDDEN void kf_tls_reset(kf_tls_facts *t);
KF_HIDDEN void kf_tls_free(kf_tls_facts *t);
/* Records the session's facts once the handshake on h is done; later calls
 * do nothing. Call it while the connection lives (from the debug callback). */
KF_HIDDEN void kf_tls_capture(kf_tls_facts *t, CURL *h);

#endif
