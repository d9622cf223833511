/* Composition of the test message: RFC 5322 headers (RFC 2047 encoded words
 * for non-ASCII display names, Q encoding so no base64 is written here), a
 * short body naming the settings under test, and the Message-ID's random
 * part. Inputs were validated before they get here; this file still never
 * emits CR or LF from field values. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "message.h"

/* RFC 2047 §2: an encoded word is at most 75 characters. */
#define MSG_ENCODED_WORD_MAX 75
#define MSG_Q_PREFIX "=?UTF-8?Q?"
#define MSG_Q_SUFFIX "?="

static int msg_is_ascii_printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E) return 0;
    return 1;
}

static int msg_is_atom_phrase(const char *s) {
    /* Atoms separated by single spaces need no quoting (RFC 5322 §3.2.5). */
    if (*s == ' ' || *s == '\0' || s[strlen(s) - 1] == ' ') return 0;
    if (strstr(s, "=?")) return 0; /* would read as an encoded word */
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9'))
            continue;
        if (c == ' ' && s[1] != ' ') continue;
        if (strchr("!#$%&'*+-/=?^_`{|}~", c)) continue;
        return 0;
    }
    return 1;
}

static size_t msg_utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xF0) return 4;
    if (c >= 0xE0) return 3;
    return 2;
}

static size_t msg_q_len(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == ' ' || strchr("!*+-/", c))
        return 1;
    return 3;
}

static void msg_q_append(kf_buf *out, unsigned char c) {
    static const char hex[] = "0123456789ABCDEF";
    char enc[3];
    if (c == ' ') { kf_buf_append(out, "_", 1); return; }
    if (msg_q_len(c) == 1) { kf_buf_append(out, (const char *)&c, 1); return; }
    enc[0] = '=';
    enc[1] = hex[c >> 4];
    enc[2] = hex[c & 15];
    kf_buf_append(out, enc, 3);
}

static void msg_encode_display_name(kf_buf *out, const char *name) {
    const unsigned char *p = (const unsigned char *)name;
    size_t budget = MSG_ENCODED_WORD_MAX - strlen(MSG_Q_PREFIX) - strlen(MSG_Q_SUFFIX);
    size_t used = 0;
    if (msg_is_ascii_printable(name)) {
        if (msg_is_atom_phrase(name)) { kf_buf_puts(out, name); return; }
        kf_buf_append(out, "\"", 1);
        for (; *p; p++) {
            if (*p == '"' || *p == '\\') kf_buf_append(out, "\\", 1);
            kf_buf_append(out, (const char *)p, 1);
        }
        kf_buf_append(out, "\"", 1);
        return;
    }
    kf_buf_puts(out, MSG_Q_PREFIX);
    while (*p) {
        size_t seq = msg_utf8_seq_len(*p), cost = 0, k;
        for (k = 0; k < seq && p[k]; k++) cost += msg_q_len(p[k]);
        if (k < seq) break; /* validated input never ends mid-sequence */
        if (used + cost > budget) {
            /* A character is never split across encoded words (§5). */
            kf_buf_puts(out, MSG_Q_SUFFIX "\r\n " MSG_Q_PREFIX);
            used = 0;
        }
        for (k = 0; k < seq; k++) msg_q_append(out, p[k]);
        used += cost;
        p += seq;
    }
    kf_buf_puts(out, MSG_Q_SUFFIX);
}

static const char *msg_id_domain(const char *mailbox) {
    const char *at = strrchr(mailbox, '@');
    const char *d;
    if (!at || at[1] == '[' || at[1] == '\0') return "kfsmtp.invalid";
    for (d = at + 1; *d; d++)
        if ((unsigned char)*d >= 0x80) return "kfsmtp.invalid";
    return at + 1;
}

static void msg_date(kf_buf *out, time_t now) {
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    /* English names and UTC whatever the locale: RFC 5322 §3.3. */
    gmtime_r(&now, &tm);
    kf_buf_printf(out, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
                  days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                  tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int msg_has_8bit(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

void kf_message_unique(char *out, size_t size) {
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[12];
    char text[sizeof raw * 2 + 1];
    struct timespec ts;
    size_t i;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        /* Uniqueness, not secrecy, is what a Message-ID needs. */
        for (i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (getpid() >> (i % 2 * 8)) ^ i);
    }
    for (i = 0; i < sizeof raw; i++) {
        text[i * 2] = hex[raw[i] >> 4];
        text[i * 2 + 1] = hex[raw[i] & 15];
    }
    text[sizeof raw * 2] = '\0';
    snprintf(out, size, "%lld.%s", (long long)ts.tv_sec, text);
}

int kf_compose(const kf_message_in *in, kf_buf *out, char *message_id,
               size_t message_id_size) {
    const char *mode_words = in->tls_mode == KF_TLS_IMPLICIT   ? "implicit TLS"
                             : in->tls_mode == KF_TLS_STARTTLS ? "STARTTLS"
                                                               : "no TLS";
    int n = snprintf(message_id, message_id_size, "<%s.kfsmtp@%s>", in->unique,
                     msg_id_domain(in->sender_account));
    if (n < 0 || (size_t)n >= message_id_size) return -1;

    msg_date(out, in->now);
    kf_buf_puts(out, "From: ");
    if (in->sender_name[0]) {
        msg_encode_display_name(out, in->sender_name);
        kf_buf_printf(out, " <%s>\r\n", in->sender_account);
    } else {
        kf_buf_printf(out, "%s\r\n", in->sender_account);
    }
    kf_buf_printf(out, "To: %s\r\n", in->recipient);
    kf_buf_puts(out, "Subject: SMTP settings test message\r\n");
    kf_buf_printf(out, "Message-ID: %s\r\n", message_id);
    kf_buf_puts(out, "MIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=UTF-8\r\n");
    kf_buf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n",
                  msg_has_8bit(in->host) ? "8bit" : "7bit");
    kf_buf_puts(out, "This is a test of the SMTP settings, sent by kfsmtp.\r\n\r\n");
    kf_buf_printf(out, "Host: %s\r\nPort: %ld\r\nTLS: %s\r\n\r\n", in->host,
                  in->port, mode_words);
    kf_buf_puts(out, "If you can read this, mail sent with these settings "
                     "reaches this mailbox.\r\n");
    return out->oom ? -1 : 0;
}
