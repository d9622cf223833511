/* One deadline for a whole transfer (see deadline.c). */
#ifndef KFSMTP_DEADLINE_H
#define KFSMTP_DEADLINE_H

#include "curlopt.h"
#include "kfsmtp.h"

typedef struct kf_deadline {
    double at_ms; /* on kf_clock_ms()'s clock */
    int hit;      /* the transfer was stopped because the deadline passed */
} kf_deadline;

/* Milliseconds on the monotonic clock (the one every deadline uses). */
KF_HIDDEN double kf_clock_ms(void);
/* Sets timeout_ms from now as the handle's deadline: libcurl's own
 * timeouts, and a progress callback that stops the transfer wherever
 * libcurl is waiting, the QUIT reply included. */
KF_HIDDEN void kf_deadline_options(kf_curlopt *o, kf_deadline *dl, long timeout_ms);

#endif
