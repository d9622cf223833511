/* Input rules for the profile's string fields: host names and addresses,
 * RFC 5321 mailboxes, display names, and the CR/LF/NUL ban that makes
 * header and command injection impossible. Pure C, no allocation, so the
 * same code serves the Lua binding and the fuzz targets. */
#include <arpa/inet.h>
#include <string.h>

#include "validate.h"

static int val_is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

const char *kf_check_text(const char *s, size_t len) {
    size_t i;
    if (len > KF_MAX_FIELD) return "is longer than 4096 bytes";
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n')
            return "contains a line break (CR or LF), which could inject "
                   "SMTP commands or headers: remove it";
        if (c == 0) return "contains a NUL byte: remove it";
        /* U+0085 (NEL, C2 85) and U+2028/U+2029 (E2 80 A8/A9) end lines
         * for some mail software and in JavaScript: as dangerous as CR and
         * LF in a header or a command. */
        if ((c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85) ||
            (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
             ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)))
            return "contains a Unicode line break (U+0085, U+2028 or U+2029), which "
                   "could inject SMTP commands or headers: remove it";
    }
    return NULL;
}

const char *kf_check_utf8(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned long cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return "is not valid UTF-8";
        if (len - i <= need) return "is not valid UTF-8 (truncated sequence)";
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return "is not valid UTF-8";
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and values past U+10FFFF. */
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return "is not valid UTF-8";
        i += need + 1;
    }
    return NULL;
}

static int val_inet(int family, const char *s, size_t len) {
    char tmp[64];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof tmp) return 0;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(family, tmp, addr) == 1;
}

int kf_is_ipv6_literal(const char *s, size_t len) {
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
        return val_inet(AF_INET6, s + 1, len - 2);
    return val_inet(AF_INET6, s, len);
}

/* A DNS name in LDH form; bytes >= 0x80 are U-label characters of an
 * internationalised name (UTF-8 was checked by the caller), converted to
 * A-labels by libcurl's IDN support when the name is resolved. */
static const char *val_dns_name(const char *s, size_t len, int allow_root_dot) {
    size_t i, label_start = 0;
    int all_numeric = 1, last_label_numeric = 1;
    if (allow_root_dot && len > 1 && s[len - 1] == '.') len--;
    if (len == 0) return "is empty";
    if (len > KF_MAX_HOST) return "is longer than 253 characters, the limit of a DNS name";
    for (i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)s[i] : '.';
        if (c == '.') {
            size_t label_len = i - label_start;
            if (label_len == 0) return "has an empty label (two dots in a row, or a leading dot)";
            if (label_len > KF_MAX_LABEL) return "has a label longer than 63 characters";
            if (s[label_start] == '-' || s[i - 1] == '-')
                return "has a label that starts or ends with a hyphen";
            last_label_numeric = all_numeric;
            all_numeric = 1;
            label_start = i + 1;
            continue;
        }
        if (c >= 0x80) { all_numeric = 0; continue; }
        if (c >= '0' && c <= '9') continue;
        all_numeric = 0;
        if (val_is_alnum(c) || c == '-' || c == '_') continue;
        return "may hold only letters, digits, hyphens and dots";
    }
    if (last_label_numeric)
        return "looks like an IPv4 address but is not a valid one";
    return NULL;
}

const char *kf_check_host(const char *s, size_t len) {
    const char *why;
    size_t i;
    if (len == 0) return "is required: give the SMTP server's host name or IP address";
    if ((why = kf_check_text(s, len))) return why;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F)
            return "contains whitespace or a control character";
    }
    if ((why = kf_check_utf8(s, len))) return why;
    if (memchr(s, '/', len) || memchr(s, '@', len) || memchr(s, '?', len)) {
        for (i = 0; i + 2 < len; i++)
            if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
                return "must be a host name or address, not a URL: drop the scheme (smtp://) and any path";
        return "must be a bare host name or address, without a path, user or query";
    }
    if (s[0] == '[') {
        if (kf_is_ipv6_literal(s, len)) return NULL;
        return "starts with '[' but is not a bracketed IPv6 address";
    }
    if (memchr(s, ':', len)) {
        if (kf_is_ipv6_literal(s, len)) return NULL;
        return "must not carry a port (host:port): put the port number in Port";
    }
    if (val_inet(AF_INET, s, len)) return NULL;
    return val_dns_name(s, len, 1);
}

static int val_is_atext(unsigned char c) {
    return val_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static const char *val_local_part(const char *s, size_t len) {
    size_t i;
    if (len == 0) return "has nothing before the @";
    if (len > KF_MAX_LOCAL_PART) return "has a local part (before the @) longer than 64 characters";
    if (s[0] == '"') {
        if (len < 2 || s[len - 1] != '"') return "has an unterminated quoted local part";
        for (i = 1; i < len - 1; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\') {
                i++;
                if (i >= len - 1 || s[i] < 32 || s[i] > 126)
                    return "has a bad backslash escape in its quoted local part";
            } else if (c < 32 || c > 126 || c == '"') {
                return "has a character not allowed in a quoted local part";
            }
        }
        return NULL;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i == 0 || i == len - 1 || s[i - 1] == '.')
                return "has a local part with a leading, trailing or doubled dot";
        } else if (c >= 0x80) {
            return "has non-ASCII characters before the @, which need SMTPUTF8; kfsmtp sends ASCII local parts only";
        } else if (!val_is_atext(c)) {
            return "has a character not allowed before the @ (quote the local part or remove it)";
        }
    }
    return NULL;
}

const char *kf_check_mailbox(const char *s, size_t len) {
    const char *why, *at;
    size_t i, local_len;
    if (len == 0) return "is required: give an email address such as jsmith@example.com";
    if ((why = kf_check_text(s, len))) return why;
    if ((why = kf_check_utf8(s, len))) return why;
    if (len > KF_MAX_MAILBOX) return "is longer than 254 characters, the limit of an address";
    if (memchr(s, '<', len) || memchr(s, '>', len) || memchr(s, ',', len) || memchr(s, ';', len)) {
        /* All four are legal inside a quoted local part, but there they
         * confuse relays that parse MAIL FROM:<...> naively, and ',' and
         * ';' almost always mean a list of recipients. */
        return "must be exactly one bare address such as jsmith@example.com, without a display name, angle brackets or a list";
    }
    at = NULL;
    for (i = len; i > 0; i--)
        if (s[i - 1] == '@') { at = s + i - 1; break; }
    if (!at) return "has no @: give an address such as jsmith@example.com";
    local_len = (size_t)(at - s);
    if ((why = val_local_part(s, local_len))) return why;
    if (s[0] != '"' && memchr(s, '@', local_len))
        return "has more than one @";
    for (i = 0; i < local_len; i++)
        if (s[i] == ' ' && s[0] != '"') return "contains a space";
    {
        const char *dom = at + 1;
        size_t dlen = len - local_len - 1;
        if (dlen == 0) return "has nothing after the @";
        if (dom[0] == '[') {
            if (dlen < 3 || dom[dlen - 1] != ']') return "has an unterminated address literal after the @";
            if (dlen > 6 && strncmp(dom + 1, "IPv6:", 5) == 0) {
                if (val_inet(AF_INET6, dom + 6, dlen - 7)) return NULL;
                return "has an invalid IPv6 address literal after the @";
            }
            if (val_inet(AF_INET, dom + 1, dlen - 2)) return NULL;
            return "has an invalid address literal after the @ (use [192.0.2.1] or [IPv6:2001:db8::1])";
        }
        for (i = 0; i < dlen; i++) {
            unsigned char c = (unsigned char)dom[i];
            if (c <= 0x20 || c == 0x7F) return "contains whitespace or a control character";
        }
        if (dom[dlen - 1] == '.') return "has a domain that ends with a dot";
        if ((why = val_dns_name(dom, dlen, 0))) {
            if (strcmp(why, "looks like an IPv4 address but is not a valid one") == 0)
                return "has a bare IP address after the @: write it as an address literal such as [192.0.2.1]";
            return "has an invalid domain after the @ (letters, digits, hyphens and dots only)";
        }
    }
    return NULL;
}

const char *kf_check_display_name(const char *s, size_t len) {
    const char *why;
    size_t i;
    if ((why = kf_check_text(s, len))) return why;
    if (len > KF_MAX_DISPLAY_NAME) return "is longer than 256 bytes";
    if ((why = kf_check_utf8(s, len))) return why;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) return "contains a control character";
    }
    return NULL;
}
