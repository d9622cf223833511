/* libFuzzer target: message composition (csrc/message.c). The input holds
 * display name, sender, recipient and host separated by NUL bytes; values
 * the input rules accept are composed, and the message must keep its shape:
 * CRLF line ends only, lines within 998 octets, exactly the expected
 * headers (no injected one), and a body after one blank line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/message.h"
#include "../csrc/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_headers[] = {"Date:", "From:", "To:", "Subject:", "Message-ID:",
                                         "MIME-Version:", "Content-Type:",
                                         "Content-Transfer-Encoding:"};
#define FZ_HEADER_COUNT (sizeof fz_headers / sizeof fz_headers[0])

static void fz_require(int ok) {
    if (!ok) abort();
}

static void fz_check_message(const char *m, size_t len) {
    size_t i, line_start = 0, headers = 0;
    int in_headers = 1;
    for (i = 0; i < len; i++) {
        if (m[i] == '\r') fz_require(i + 1 < len && m[i + 1] == '\n');
        if (m[i] == '\n') {
            size_t line_len;
            fz_require(i > 0 && m[i - 1] == '\r');
            line_len = i - 1 - line_start;
            fz_require(line_len <= 998);
            if (in_headers) {
                if (line_len == 0) {
                    in_headers = 0;
                } else if (m[line_start] != ' ') {
                    fz_require(headers < FZ_HEADER_COUNT);
                    fz_require(strncmp(m + line_start, fz_headers[headers],
                                       strlen(fz_headers[headers])) == 0);
                    headers++;
                }
            }
            line_start = i + 1;
        }
    }
    fz_require(!in_headers && headers == FZ_HEADER_COUNT);
    fz_require(line_start == len); /* ends with CRLF */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *parts[4] = {"", "", "", ""};
    size_t lens[4] = {0, 0, 0, 0};
    char *copy = malloc(size + 1), *p;
    int n = 0;
    kf_buf out = {0};
    char message_id[400];
    kf_message_in in;
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    p = copy;
    while (n < 4) {
        char *nul = memchr(p, '\0', (size_t)(copy + size - p));
        parts[n] = p;
        lens[n] = nul ? (size_t)(nul - p) : strlen(p);
        n++;
        if (!nul || nul >= copy + size) break;
        p = nul + 1;
    }
    if (kf_check_display_name(parts[0], lens[0]) == NULL &&
        kf_check_mailbox(parts[1], lens[1]) == NULL &&
        kf_check_mailbox(parts[2], lens[2]) == NULL &&
        kf_check_host(parts[3], lens[3]) == NULL) {
        in.sender_name = parts[0];
        in.sender_account = parts[1];
        in.recipient = parts[2];
        in.host = parts[3];
        in.port = 587;
        in.tls_mode = KF_TLS_STARTTLS;
        in.now = 1795506760;
        in.unique = "1795506760.0123456789abcdef01234567";
        if (kf_compose(&in, &out, message_id, sizeof message_id) == 0)
            fz_check_message(out.data, out.len);
        kf_buf_free(&out);
    }
    free(copy);
    return 0;
}
