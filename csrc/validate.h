/* The input rules for the profile's string fields (see validate.c). */
#ifndef KFSMTP_VALIDATE_H
#define KFSMTP_VALIDATE_H

#include <stddef.h>

#include "kfsmtp.h"

/* Limits of RFC 5321 §4.5.3.1 and of DNS (RFC 1035). */
#define KF_MAX_HOST 253
#define KF_MAX_LABEL 63
#define KF_MAX_LOCAL_PART 64
#define KF_MAX_MAILBOX 254
#define KF_MAX_DISPLAY_NAME 256
#define KF_MAX_FIELD 4096

/* Each returns NULL when the value is acceptable, otherwise a static
 * sentence saying what is wrong (without repeating the value, which may be
 * hostile). */
KF_HIDDEN const char *kf_check_text(const char *s, size_t len);
KF_HIDDEN const char *kf_check_utf8(const char *s, size_t len);
KF_HIDDEN const char *kf_check_host(const char *s, size_t len);
KF_HIDDEN const char *kf_check_mailbox(const char *s, size_t len);
KF_HIDDEN const char *kf_check_display_name(const char *s, size_t len);
KF_HIDDEN int kf_is_ipv6_literal(const char *s, size_t len);

#endif
