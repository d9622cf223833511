/* Composition of the test message (see message.c). Plain C: the fuzz
 * target calls it directly. */
#ifndef KFSMTP_MESSAGE_H
#define KFSMTP_MESSAGE_H

#include <stddef.h>
#include <time.h>

#include "buffer.h"
#include "vocab.h"

/* 9999-12-31T23:59:59Z: the Date header has a four-digit year. */
#define KF_MESSAGE_MAX_TIME 253402300799LL

/* Room for kf_message_unique's text: seconds, a dot, 24 hex digits. */
#define KF_MESSAGE_UNIQUE_SIZE 48

typedef struct kf_message_in {
    const char *sender_name;    /* may be "" */
    const char *sender_account; /* validated mailbox */
    const char *recipient;      /* validated mailbox */
    const char *host;           /* for the body */
    long port;
    enum kf_tls_mode tls_mode;
    time_t now;
    const char *unique;         /* random hex for the Message-ID */
} kf_message_in;

/* Appends the whole message (headers and body, CRLF line ends) to out and
 * writes the Message-ID (with angle brackets) to message_id. Returns 0 or -1
 * when out ran out of memory. */
KF_HIDDEN int kf_compose(const kf_message_in *in, kf_buf *out,
                         char *message_id, size_t message_id_size);
/* Writes the unique part of a Message-ID: the time and 96 random bits. */
KF_HIDDEN void kf_message_unique(char *out, size_t size);

#endif
