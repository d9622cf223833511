/* kf_buf: the growable byte buffer used by message composition, delivery
 * transcripts and the store. Failure is sticky (oom) so that long chains of
 * appends need a single check at the end. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

void kf_buf_append(kf_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > (size_t)-1 / 2 - b->len) { b->oom = 1; return; }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1) cap *= 2;
        p = realloc(b->data, cap);
        if (!p) { b->oom = 1; return; }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kf_buf_puts(kf_buf *b, const char *s) { kf_buf_append(b, s, strlen(s)); }

void kf_buf_printf(kf_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if ((size_t)n < sizeof small) { kf_buf_append(b, small, (size_t)n); return; }
    {
        char *big = malloc((size_t)n + 1);
        if (!big) { b->oom = 1; return; }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        kf_buf_append(b, big, (size_t)n);
        free(big);
    }
}

void kf_buf_line(kf_buf *b, const char *s, size_t n) {
    if (b->len) kf_buf_append(b, "\n", 1);
    kf_buf_append(b, s, n);
}

void kf_buf_quote(kf_buf *b, const char *s) {
    kf_buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) kf_buf_printf(b, "\\x%02x", c);
        else if (c == '"' || c == '\\') kf_buf_printf(b, "\\%c", c);
        else kf_buf_append(b, s, 1);
    }
    kf_buf_append(b, "\"", 1);
}

void kf_buf_clear(kf_buf *b) {
    b->len = 0;
    b->oom = 0;
    if (b->data) b->data[0] = '\0';
}

void kf_buf_reserve(kf_buf *b, size_t n) {
    size_t len = b->len;
    kf_buf_append(b, "", 0);
    if (b->oom || b->cap >= len + n + 1) return;
    {
        char *p = realloc(b->data, len + n + 1);
        if (!p) { b->oom = 1; return; }
        b->data = p;
        b->cap = len + n + 1;
    }
}

void kf_buf_wipe_free(kf_buf *b) {
    if (b->data) explicit_bzero(b->data, b->cap);
    kf_buf_free(b);
}

void kf_buf_free(kf_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
