/* Callers' passwords, PBKDF2-HMAC-SHA256 (see password.c). */
#ifndef KFSMTP_PASSWORD_H
#define KFSMTP_PASSWORD_H

#include <stddef.h>

#include "kfsmtp.h"

#define KF_PASSWORD_HASH_SIZE 128
#define KF_PASSWORD_MIN_ITERATIONS 1000
#define KF_PASSWORD_MAX_ITERATIONS 10000000
#define KF_PASSWORD_ITERATIONS 100000

/* hash returns 0 or -1; verify returns 1 on a match, 0 on a mismatch and
 * -1 when the stored form is malformed. */
KF_HIDDEN int kf_password_hash(const char *password, size_t len, long iterations,
                               char *out, size_t out_size);
KF_HIDDEN int kf_password_verify(const char *password, size_t len, const char *encoded);

#endif
