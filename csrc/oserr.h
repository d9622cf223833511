/* What the system said, in words for a message: shared by every part that
 * opens files (the store, secret files, key files). Header-only, so the
 * plain-C parts the fuzz targets link need nothing from the Lua door. */
#ifndef KFSMTP_OSERR_H
#define KFSMTP_OSERR_H

#include <string.h>
#include <sys/stat.h>

/* GNU strerror_r: thread-safe, as nginx worker threads need. */
static inline const char *kf_strerror(int err, char *buf, size_t size) {
    return strerror_r(err, buf, size);
}

/* What a file that is not a regular one is. */
static inline const char *kf_file_kind(mode_t mode) {
    if (S_ISLNK(mode)) return "symbolic link";
    if (S_ISDIR(mode)) return "folder";
    if (S_ISFIFO(mode)) return "FIFO";
    if (S_ISCHR(mode)) return "character device";
    if (S_ISBLK(mode)) return "block device";
    if (S_ISSOCK(mode)) return "socket";
    return "special file";
}

#endif
