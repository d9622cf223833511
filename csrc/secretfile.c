/* A secret read from a file, for the operator's "file" secret provider:
 * Docker's /run/secrets, a Kubernetes secret volume, systemd's
 * $CREDENTIALS_DIRECTORY. Links are followed, since Kubernetes makes each
 * key a link into ..data/, but what was opened must lie inside the
 * folder's real path. That is checked on the descriptor (the link
 * /proc/self/fd/N), not on the name beforehand, so a link swapped between
 * a check and the open cannot lead out. The first open is O_PATH, which
 * opens nothing for reading: a FIFO or a device a link leads to is
 * neither blocked on nor woken (some devices act when opened) before it is
 * refused. Only a regular file, owned by this process's user or root and
 * closed to others, is then reopened through that descriptor and read. A file longer than max is refused rather than cut: a cut secret
 * fails later, far from its cause. No message carries a byte of the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oserr.h"
#include "secretfile.h"

const char *const kf_secret_kind_names[KF_SECRET_KIND_COUNT] = {
    "ok", "missing", "outside", "not_regular", "owner", "permissions", "too_large", "unreadable"};

/* why = 'secret file "PATH" in "DIR" REASON.'; returns kind. The reason
 * is built from numbers and the C library's words only. */
static kf_secret_kind __attribute__((format(printf, 5, 6)))
secret_refuse(kf_buf *why, kf_secret_kind kind, const char *dir, const char *path,
              const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    kf_buf_clear(why);
    kf_buf_puts(why, "secret file ");
    kf_buf_quote(why, path);
    kf_buf_puts(why, " in ");
    kf_buf_quote(why, dir);
    kf_buf_printf(why, " %s.", reason);
    return kind;
}

/* Is where the real folder or inside it? real comes from realpath(3):
 * no trailing slash, but for "/" itself. */
static int secret_inside(const char *where, const char *real) {
    size_t n = strlen(real);
    if (strncmp(where, real, n) != 0) return 0;
    return real[n - 1] == '/' || where[n] == '/' || where[n] == '\0';
}

/* Reads the open regular file into out: at most max bytes, a longer one
 * refused. Returns 0, -ERANGE when longer, or -errno. */
static int secret_read_fd(int fd, size_t max, kf_buf *out) {
    /* One allocation for the longest allowed file plus a byte to see a
     * longer one: a buffer grown by realloc would leave an unwiped copy. */
    kf_buf_reserve(out, max + 1);
    if (out->oom) return -ENOMEM;
    while (out->len <= max) {
        ssize_t n = read(fd, out->data + out->len, max + 1 - out->len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break;
        out->len += (size_t)n;
    }
    out->data[out->len] = '\0';
    return out->len > max ? -ERANGE : 0;
}

/* After open: where the descriptor really leads, then what it is, then
 * the file itself. */
static kf_secret_kind secret_check_read(int fd, const char *real, const char *dir,
                                        const char *path, size_t max, kf_buf *out,
                                        kf_buf *why) {
    char proc[64], where[PATH_MAX], err[128];
    struct stat st, opened;
    ssize_t n;
    int rc, rfd;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    n = readlink(proc, where, sizeof where);
    if (n < 0 || (size_t)n >= sizeof where) {
        int e = n < 0 ? errno : ENAMETOOLONG;
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path,
                             "cannot be checked for where it leads (reading %s: %s): mount /proc, "
                             "which the check needs",
                             proc, kf_strerror(e, err, sizeof err));
    }
    where[n] = '\0';
    if (!secret_inside(where, real))
        return secret_refuse(why, KF_SECRET_OUTSIDE, dir, path,
                             "leads outside the folder (through \"..\" or a symbolic link): keep "
                             "the file, and every link it follows, inside the folder");
    if (fstat(fd, &st) != 0)
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path,
                             "cannot be examined (%s): check the file",
                             kf_strerror(errno, err, sizeof err));
    if (!S_ISREG(st.st_mode))
        return secret_refuse(why, KF_SECRET_NOT_REGULAR, dir, path,
                             "is a %s, not a regular file: put the secret in a regular file",
                             kf_file_kind(st.st_mode));
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        unsigned long me = (unsigned long)geteuid();
        if (me == 0)
            return secret_refuse(why, KF_SECRET_OWNER, dir, path,
                                 "is owned by uid %lu, not by root, whom this process runs as: "
                                 "run chown root on it",
                                 (unsigned long)st.st_uid);
        return secret_refuse(why, KF_SECRET_OWNER, dir, path,
                             "is owned by uid %lu, neither this process's user (uid %lu) nor "
                             "root: run chown %lu (or chown root) on it",
                             (unsigned long)st.st_uid, me, me);
    }
    if (st.st_mode & S_IRWXO)
        return secret_refuse(why, KF_SECRET_PERMISSIONS, dir, path,
                             "is open to other users (mode %04o): run chmod o-rwx on it",
                             (unsigned)(st.st_mode & 07777));
    /* Through the checked descriptor, so the same file; O_NONBLOCK stays
     * for the case it changed type in between (then refused below). */
    rfd = open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (rfd < 0)
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path,
                             "cannot be opened (%s): check that uid %lu may read it",
                             kf_strerror(errno, err, sizeof err), (unsigned long)geteuid());
    if (fstat(rfd, &opened) != 0 || opened.st_dev != st.st_dev || opened.st_ino != st.st_ino ||
        !S_ISREG(opened.st_mode)) {
        close(rfd);
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path,
                             "changed while it was being checked: try again");
    }
    /* The size seen now only spares reading a file plainly too large; the
     * read itself stops one byte past max whatever the file became. */
    rc = (st.st_size >= 0 && (unsigned long long)st.st_size > max) ? -ERANGE
                                                                  : secret_read_fd(rfd, max, out);
    close(rfd);
    if (rc == 0) return KF_SECRET_OK;
    if (out->data) explicit_bzero(out->data, out->cap);
    kf_buf_clear(out);
    if (rc == -ERANGE)
        return secret_refuse(why, KF_SECRET_TOO_LARGE, dir, path,
                             "is longer than %zu bytes, the most max allows: check that it holds "
                             "only the secret, or raise max",
                             max);
    return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path, "cannot be read (%s): check the file",
                         kf_strerror(-rc, err, sizeof err));
}

kf_secret_kind kf_secret_read(const char *dir, const char *path, size_t max, kf_buf *out,
                              kf_buf *why) {
    char real[PATH_MAX], err[128];
    kf_buf full = {0};
    kf_secret_kind kind;
    int fd, e;
    if (!realpath(dir, real)) {
        e = errno;
        return secret_refuse(why, e == ENOENT || e == ENOTDIR ? KF_SECRET_MISSING
                                                              : KF_SECRET_UNREADABLE,
                             dir, path, "is missing, because the folder cannot be resolved "
                             "(%s): create the folder, or correct dir",
                             kf_strerror(e, err, sizeof err));
    }
    /* Joined, not openat(2)'d: an absolute path would make openat ignore
     * the folder. Either way, the check after open decides. */
    kf_buf_printf(&full, "%s/%s", dir, path);
    if (full.oom) {
        kf_buf_free(&full);
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path, "cannot be opened (%s): retry",
                             kf_strerror(ENOMEM, err, sizeof err));
    }
    fd = open(full.data, O_PATH | O_CLOEXEC);
    e = errno;
    kf_buf_free(&full);
    if (fd < 0) {
        if (e == ENOENT || e == ENOTDIR)
            return secret_refuse(why, KF_SECRET_MISSING, dir, path,
                                 "does not exist (%s): create it there, or correct the path",
                                 kf_strerror(e, err, sizeof err));
        return secret_refuse(why, KF_SECRET_UNREADABLE, dir, path,
                             "cannot be opened (%s): check the file, the links leading to it, "
                             "and that uid %lu may read it",
                             kf_strerror(e, err, sizeof err), (unsigned long)geteuid());
    }
    kind = secret_check_read(fd, real, dir, path, max, out, why);
    close(fd);
    if (kind != KF_SECRET_OK) return kind;
    /* One line end, as `echo` or an editor leaves it; more is the secret. */
    if (out->len > 0 && out->data[out->len - 1] == '\n') {
        out->len--;
        if (out->len > 0 && out->data[out->len - 1] == '\r') out->len--;
    }
    return KF_SECRET_OK;
}
