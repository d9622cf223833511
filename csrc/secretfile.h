/* A secret read from a file in a folder, as Docker, Kubernetes and systemd
 * hand them to a service (see secretfile.c). */
#ifndef KFSMTP_SECRETFILE_H
#define KFSMTP_SECRETFILE_H

#include <limits.h>

#include "buffer.h"

#define KF_SECRET_MAX_DEFAULT 16384
#define KF_SECRET_MAX_LIMIT (1024 * 1024)
/* dir and path each; longer ones could not be opened anyway. */
#define KF_SECRET_MAX_PATH PATH_MAX

/* Why a read was refused; kf_secret_kind_names holds each one's name, as
 * Lua sees it, in this order. */
typedef enum kf_secret_kind {
    KF_SECRET_OK,
    KF_SECRET_MISSING,
    KF_SECRET_OUTSIDE,
    KF_SECRET_NOT_REGULAR,
    KF_SECRET_OWNER,
    KF_SECRET_PERMISSIONS,
    KF_SECRET_TOO_LARGE,
    KF_SECRET_UNREADABLE,
    KF_SECRET_KIND_COUNT
} kf_secret_kind;

KF_HIDDEN extern const char *const kf_secret_kind_names[KF_SECRET_KIND_COUNT];

/* Reads dir/path (dir absolute) into out, at most max bytes, without one
 * trailing "\n" or "\r\n". On a refusal, out is left empty and why gets
 * one sentence naming the path, the reason and the fix, never a byte of
 * the file. Both buffers are the caller's to free; out must be wiped. */
KF_HIDDEN kf_secret_kind kf_secret_read(const char *dir, const char *path, size_t max,
                                        kf_buf *out, kf_buf *why);

#endif
