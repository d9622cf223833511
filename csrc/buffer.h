/* kf_buf, the growable byte buffer (see buffer.c). Plain C: the fuzz
 * targets use it too. */
#ifndef KFSMTP_BUFFER_H
#define KFSMTP_BUFFER_H

#include <stddef.h>

#include "kfsmtp.h"

/* Owners free it with kf_buf_free; a failed append sets oom and turns later
 * appends into no-ops so callers check once. */
typedef struct kf_buf {
    char *data;
    size_t len, cap;
    int oom;
} kf_buf;

KF_HIDDEN void kf_buf_append(kf_buf *b, const char *s, size_t n);
KF_HIDDEN void kf_buf_puts(kf_buf *b, const char *s);
KF_HIDDEN void kf_buf_printf(kf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends one line of a list whose lines are separated by '\n'. */
KF_HIDDEN void kf_buf_line(kf_buf *b, const char *s, size_t n);
/* Appends s in double quotes, control bytes, quotes and backslashes
 * escaped: a message that names a path stays one line whatever bytes the
 * operator's path holds. */
KF_HIDDEN void kf_buf_quote(kf_buf *b, const char *s);
/* Empties the buffer and keeps its memory. */
KF_HIDDEN void kf_buf_clear(kf_buf *b);
KF_HIDDEN void kf_buf_free(kf_buf *b);
/* Grows the buffer once to hold n more bytes, so later appends do not move
 * it (a moved buffer would leave an unwiped copy of a secret behind). */
KF_HIDDEN void kf_buf_reserve(kf_buf *b, size_t n);
/* Overwrites the whole allocation, then frees it: for buffers that held the
 * relay password (the store file). */
KF_HIDDEN void kf_buf_wipe_free(kf_buf *b);

#endif
