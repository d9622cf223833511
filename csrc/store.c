/* The store's file operations. Replacement is atomic (temporary file in the
 * same folder, fsync, rename, fsync of the folder) so a reader sees either
 * the old or the new profile; writers serialise on flock(2) of a lock file
 * next to the store, which also works between threads of one process (each
 * takes its own open file description), as nginx worker threads need.
 * The store and its lock are opened without following a symbolic link and
 * without blocking, and anything but a regular file is refused: in a
 * folder others can write, a planted link or FIFO must not make a root
 * writer overwrite another file or hang a reader. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "oserr.h"
#include "store.h"

#define STORE_MAX_SIZE (1024 * 1024)

static void store_signature(const struct stat *st, char sig[KF_SIG_SIZE]) {
    /* The inode changes on every rename; size and both timestamps (in
     * nanoseconds) catch an inode number reused by a later write. */
    snprintf(sig, KF_SIG_SIZE, "%llu:%llu:%lld:%lld.%09ld:%lld.%09ld",
             (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (long long)st->st_size, (long long)st->st_mtim.tv_sec,
             st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec,
             st->st_ctim.tv_nsec);
}

/* The store's messages have always said "directory". */
static const char *store_kind(mode_t mode) {
    return S_ISDIR(mode) ? "directory" : kf_file_kind(mode);
}

/* -KF_ENOTFILE with *kind set unless st is a regular file. */
static int store_regular(const struct stat *st, const char **kind) {
    if (S_ISREG(st->st_mode)) return 0;
    *kind = store_kind(st->st_mode);
    return -KF_ENOTFILE;
}

/* Opens without following a final symbolic link and without blocking on a
 * FIFO or device, then refuses anything but a regular file. */
static int store_open(const char *path, int flags, mode_t mode, struct stat *st,
                      const char **kind) {
    int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, mode);
    int rc;
    if (fd < 0) {
        struct stat link;
        int e = errno;
        if (e == ELOOP && lstat(path, &link) == 0) return store_regular(&link, kind);
        return -e;
    }
    if (fstat(fd, st) != 0) { int e = errno; close(fd); return -e; }
    if ((rc = store_regular(st, kind)) != 0) { close(fd); return rc; }
    return fd;
}

int kf_store_stat(const char *path, char sig[KF_SIG_SIZE], const char **kind) {
    struct stat st;
    int rc;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) { snprintf(sig, KF_SIG_SIZE, "missing"); return 1; }
        return -errno;
    }
    if ((rc = store_regular(&st, kind)) != 0) return rc;
    store_signature(&st, sig);
    return 0;
}

int kf_store_read(const char *path, kf_buf *out, char sig[KF_SIG_SIZE], const char **kind) {
    struct stat st;
    char chunk[8192];
    int fd = store_open(path, O_RDONLY, 0, &st, kind);
    if (fd == -ENOENT) { snprintf(sig, KF_SIG_SIZE, "missing"); return 1; }
    if (fd < 0) return fd;
    if (st.st_size > STORE_MAX_SIZE) { close(fd); return -EFBIG; }
    store_signature(&st, sig);
    kf_buf_reserve(out, (size_t)st.st_size + 1);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            { int e = errno; close(fd); return -e; }
        }
        if (n == 0) break;
        kf_buf_append(out, chunk, (size_t)n);
        if (out->len > STORE_MAX_SIZE) { close(fd); return -EFBIG; }
    }
    close(fd);
    if (out->oom) return -ENOMEM;
    if (!out->data) kf_buf_append(out, "", 0);
    return 0;
}

static int store_write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int store_sync_folder(const char *path) {
    char *dir = strdup(path);
    char *slash;
    int fd, rc = 0;
    if (!dir) return -ENOMEM;
    slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -errno;
    if (fsync(fd) != 0 && errno != EINVAL) rc = -errno;
    close(fd);
    return rc;
}

int kf_store_write(const char *path, const char *data, size_t len,
                   char sig[KF_SIG_SIZE], const char **step) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    struct stat st;
    int fd, rc;
    if (!tmp) { *step = "allocate"; return -ENOMEM; }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    /* mkstemp creates the file 0600 whatever the umask. */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) { rc = -errno; *step = "create a temporary file"; free(tmp); return rc; }
    if (fchmod(fd, 0600) != 0) { rc = -errno; *step = "set mode 0600"; goto fail; }
    if ((rc = store_write_all(fd, data, len)) != 0) { *step = "write"; goto fail; }
    if (fsync(fd) != 0) { rc = -errno; *step = "fsync"; goto fail; }
    if (rename(tmp, path) != 0) { rc = -errno; *step = "rename into place"; goto fail; }
    free(tmp);
    /* The signature of what this call put in place, taken through its own
     * descriptor once renamed (a rename changes the ctime): a stat of the
     * path could see a file someone else put there a moment later, and the
     * cache would then take that file's signature for this content. */
    rc = fstat(fd, &st) != 0 ? -errno : 0;
    if (close(fd) != 0 && rc == 0) rc = -errno;
    if (rc != 0) { *step = "check the file written"; return rc; }
    store_signature(&st, sig);
    if ((rc = store_sync_folder(path)) != 0) { *step = "fsync the folder"; return rc; }
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
}

int kf_store_lock(const char *path, const char **kind) {
    long waited_ms;
    size_t plen = strlen(path);
    char *lock_path = malloc(plen + sizeof ".lock");
    struct stat st;
    int fd;
    if (!lock_path) return -ENOMEM;
    memcpy(lock_path, path, plen);
    memcpy(lock_path + plen, ".lock", sizeof ".lock");
    fd = store_open(lock_path, O_RDWR | O_CREAT, 0600, &st, kind);
    free(lock_path);
    if (fd < 0) return fd;
    /* Bounded: a holder that never lets go (a stopped process, a hung
     * network mount, another user sharing the folder) must not hold a
     * writer, and its nginx worker thread, forever. */
    for (waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited_ms += 10) {
        const struct timespec tick = {0, 10 * 1000000L};
        if (errno != EWOULDBLOCK && errno != EINTR) { int e = errno; close(fd); return -e; }
        if (waited_ms >= KF_LOCK_WAIT_MS) { close(fd); return -KF_ELOCKED; }
        nanosleep(&tick, NULL);
    }
    return fd;
}

int kf_store_sweep(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t base_len = strlen(base), dir_len = slash ? (size_t)(slash - path) : 0;
    char *dir = malloc(dir_len + 2);
    DIR *d;
    struct dirent *e;
    int removed = 0;
    if (!dir) return -ENOMEM;
    if (slash == path) strcpy(dir, "/");
    else if (slash) { memcpy(dir, path, dir_len); dir[dir_len] = '\0'; }
    else strcpy(dir, ".");
    d = opendir(dir);
    if (!d) { int rc = -errno; free(dir); return rc; }
    /* Names are <base>.tmp.XXXXXX, exactly as kf_store_write makes them. */
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strlen(n) == base_len + 11 && strncmp(n, base, base_len) == 0 &&
            strncmp(n + base_len, ".tmp.", 5) == 0 &&
            unlinkat(dirfd(d), n, 0) == 0)
            removed++;
    }
    closedir(d);
    free(dir);
    return removed;
}
