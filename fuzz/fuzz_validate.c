/* libFuzzer target: the input rules of csrc/validate.c on arbitrary bytes.
 * Beyond "no crash, no sanitizer report", what a rule accepts must be safe
 * to put on the wire: no CR, LF or NUL, and no angle brackets in mailboxes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_require(int ok) {
    if (!ok) abort();
}

/* set may contain NUL, so its length is passed (sizeof literal - 1). */
static int fz_has(const char *s, size_t n, const char *set, size_t set_len) {
    size_t i;
    for (i = 0; i < n; i++)
        if (memchr(set, s[i], set_len)) return 1;
    return 0;
}
#define FZ_HAS(s, n, lit) fz_has((s), (n), (lit), sizeof(lit) - 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)kf_check_text(s, size);
    (void)kf_check_utf8(s, size);
    (void)kf_is_ipv6_literal(s, size);
    if (kf_check_host(s, size) == NULL)
        fz_require(size > 0 && !FZ_HAS(s, size, "\r\n\0 /@?"));
    if (kf_check_mailbox(s, size) == NULL)
        fz_require(size > 2 && !FZ_HAS(s, size, "\r\n\0<>") && memchr(s, '@', size));
    if (kf_check_display_name(s, size) == NULL)
        fz_require(!FZ_HAS(s, size, "\r\n\0") && kf_check_utf8(s, size) == NULL);
    free(s);
    return 0;
}
