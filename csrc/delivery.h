/* One SMTP test delivery through libcurl, and what it observed (see
 * delivery.c). The handle is reused between deliveries of one Lua state so
 * libcurl keeps its parsed CA store; connections are never reused. */
#ifndef KFSMTP_DELIVERY_H
#define KFSMTP_DELIVERY_H

#include <curl/curl.h>

#include "buffer.h"
#include "curlopt.h"
#include "deadline.h"
#include "tls.h"
#include "vocab.h"

/* The longest command a probe writes itself: a verb and a mailbox; and
 * the most it reads of one reply (libcurl's own dialog has its own cap). */
#define KF_MAX_COMMAND 512
#define KF_MAX_REPLY (64 * 1024)
/* The most a delivery keeps of what the server said (replies and
 * transcript together). */
#define KF_MAX_KEPT (256 * 1024)

typedef struct kf_delivery_req {
    const char *host;
    long port;
    enum kf_tls_mode tls_mode;
    const char *username, *password; /* NULL: anonymous */
    const char *bearer; /* OAuth access token: AUTH with OAUTHBEARER or XOAUTH2 */
    const char *mail_from, *rcpt_to;
    const char *message;
    size_t message_len;
    const char *helo;
    const char *ca_file;   /* NULL: the system store */
    int tls_verify;
    const char *pinned_pubkey;
    long connect_timeout_ms, timeout_ms;
    int want_transcript;
    enum kf_quit_after quit_after;
    int auth_mechanism; /* an enum kf_sasl, or -1: libcurl picks among those offered */
} kf_delivery_req;

typedef struct kf_delivery {
    CURL *curl;
    kf_curlopt refused; /* the option libcurl refused, after a run returned -2 */
    kf_deadline deadline;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode code;
    /* What the dialog showed, reset for every delivery. */
    kf_buf transcript;   /* lines separated by '\n' */
    kf_buf greeting;     /* lines separated by '\n' */
    kf_buf reply;        /* the reply to the last command, lines by '\n' */
    kf_buf final_reply;  /* the reply to the end of the message */
    kf_buf ehlo;         /* the last EHLO reply, lines by '\n' */
    enum kf_stage stage; /* stage of the last command sent */
    int commands_sent, server_spoke, auth_sent, body_bytes, body_noted;
    int credentials, aborted_no_auth, transcript_on, quit_sent, tls_activity;
    int tls_plain_reply; /* a plain SMTP reply came where a TLS record was due */
    int lines_dropped;   /* the server said more than KF_MAX_KEPT */
    char auth_mechanism[32];
    char login_options[32]; /* "AUTH=<mechanism>" when one is forced */
    double t_start, t_starttls, t_tls_done, t_auth, t_mail, t_final;
    long connect_us, appconnect_us, total_us, os_errno;
    long ssl_verify_result; /* OpenSSL's X509_V_ERR_*, 0 when none */
    kf_tls_facts tls;
    const char *msg;
    size_t msg_len, msg_pos;
} kf_delivery;

KF_HIDDEN int kf_delivery_init(kf_delivery *d);
KF_HIDDEN void kf_delivery_close(kf_delivery *d);
/* Runs one delivery. Returns 0 after any outcome (d->code tells which),
 * -1 when memory ran out before anything was sent, -2 when libcurl refused
 * an option (d->refused says which; nothing was sent if it was refused
 * before the transfer). */
KF_HIDDEN int kf_delivery_run(kf_delivery *d, const kf_delivery_req *req);
/* The stage a failed delivery stopped at. */
KF_HIDDEN enum kf_stage kf_delivery_failed_stage(const kf_delivery *d,
                                                 const kf_delivery_req *req);

#endif
