/* Internal interface between the C files of the core. Everything here is
 * plain C with no Lua types, so the fuzz targets can call it directly. */
#ifndef KFSMTP_H
#define KFSMTP_H

#include <stddef.h>
#include <time.h>

#if defined(__GNUC__)
#define KF_HIDDEN __attribute__((visibility("hidden")))
#else
#define KF_HIDDEN
/* password.c: returns 0 / -1; verify returns 1 match, 0 mismatch, -1 when
 * the stored form is malformed. */
#define KF_PASSWORD_HASH_SIZE 128
KF_HIDDEN int kf_password_hash(const char *password, size_t len, long iterations,
                               char *out, size_t out_size);
KF_HIDDEN int kf_password_verify(const char *password, size_t len, const char *encoded);

#endif

/* Limits of RFC 5321 §4.5.3.1 and of DNS (RFC 1035). */
#define KF_MAX_HOST 253
#define KF_MAX_LABEL 63
#define KF_MAX_LOCAL_PART 64
#define KF_MAX_MAILBOX 254
#define KF_MAX_DISPLAY_NAME 256
#define KF_MAX_FIELD 4096

/* validate.c: each returns NULL when the value is acceptable, otherwise a
 * static sentence saying what is wrong (without repeating the value, which
 * may be hostile). */
KF_HIDDEN const char *kf_check_text(const char *s, size_t len);
KF_HIDDEN const char *kf_check_utf8(const char *s, size_t len);
KF_HIDDEN const char *kf_check_host(const char *s, size_t len);
KF_HIDDEN const char *kf_check_mailbox(const char *s, size_t len);
KF_HIDDEN const char *kf_check_display_name(const char *s, size_t len);
KF_HIDDEN int kf_is_ipv6_literal(const char *s, size_t len);

/* A growable byte buffer. Owners free it with kf_buf_free; a failed append
 * sets oom and turns later appends into no-ops so callers check once. */
typedef struct kf_buf {
    char *data;
    size_t len, cap;
    int oom;
} kf_buf;

KF_HIDDEN void kf_buf_append(kf_buf *b, const char *s, size_t n);
KF_HIDDEN void kf_buf_puts(kf_buf *b, const char *s);
KF_HIDDEN void kf_buf_printf(kf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
KF_HIDDEN void kf_buf_free(kf_buf *b);
/* Grows the buffer once to hold n more bytes, so later appends do not move
 * it (a moved buffer would leave an unwiped copy of a secret behind). */
KF_HIDDEN void kf_buf_reserve(kf_buf *b, size_t n);
/* Overwrites the whole allocation, then frees it: for buffers that held the
 * relay password (the store file). */
KF_HIDDEN void kf_buf_wipe_free(kf_buf *b);

/* message.c */
typedef struct kf_message_in {
    const char *sender_name;    /* may be "" */
    const char *sender_account; /* validated mailbox */
    const char *recipient;      /* validated mailbox */
    const char *host;           /* for the body */
    long port;
    const char *tls_mode;       /* "none" | "starttls" | "implicit" */
    time_t now;
    const char *unique;         /* random hex for the Message-ID */
} kf_message_in;

/* Appends the whole message (headers and body, CRLF line ends) to out and
 * writes the Message-ID (with angle brackets) to message_id. Returns 0 or -1
 * when out ran out of memory. */
KF_HIDDEN int kf_compose(const kf_message_in *in, kf_buf *out,
                         char *message_id, size_t message_id_size);
KF_HIDDEN void kf_encode_display_name(kf_buf *out, const char *name);

/* password.c: returns 0 / -1; verify returns 1 match, 0 mismatch, -1 when
 * the stored form is malformed. */
#define KF_PASSWORD_HASH_SIZE 128
KF_HIDDEN int kf_password_hash(const char *password, size_t len, long iterations,
                               char *out, size_t out_size);
KF_HIDDEN int kf_password_verify(const char *password, size_t len, const char *encoded);

#endif
