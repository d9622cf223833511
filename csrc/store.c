/* The store's file operations. Replacement is atomic (temporary file in the
 * same folder, fsync, rename, fsync of the folder) so a reader sees either
 * the old or the new profile; writers serialise on flock(2) of a lock file
 * next to the store, which also works between threads of one process (each
 * takes its own open file description), as nginx worker threads need. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int kf_store_stat(const char *path, char sig[KF_SIG_SIZE]) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) { snprintf(sig, KF_SIG_SIZE, "missing"); return 1; }
        return -errno;
    }
    store_signature(&st, sig);
    return 0;
}

int kf_store_read(const char *path, kf_buf *out, char sig[KF_SIG_SIZE]) {
    struct stat st;
    char chunk[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) { snprintf(sig, KF_SIG_SIZE, "missing"); return 1; }
        return -errno;
    }
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return -e; }
    if (!S_ISREG(st.st_mode)) { close(fd); return -EISDIR; }
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
                   const char **step) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
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
    if (close(fd) != 0) { rc = -errno; fd = -1; *step = "close"; goto fail; }
    fd = -1;
    if (rename(tmp, path) != 0) { rc = -errno; *step = "rename into place"; goto fail; }
    free(tmp);
    if ((rc = store_sync_folder(path)) != 0) { *step = "fsync the folder"; return rc; }
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
}

int kf_store_lock(const char *path) {
    size_t plen = strlen(path);
    char *lock_path = malloc(plen + sizeof ".lock");
    int fd;
    if (!lock_path) return -ENOMEM;
    memcpy(lock_path, path, plen);
    memcpy(lock_path + plen, ".lock", sizeof ".lock");
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    if (fd < 0) return -errno;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) { int e = errno; close(fd); return -e; }
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

/* The generation counter lives in the first 8 bytes of the lock file,
 * mapped shared by every process that uses the store. Writers add one
 * after each rename; readers compare it without a system call, so an
 * unchanged store costs get() no syscall at all. */
void *kf_store_generation_map(const char *path) {
    size_t plen = strlen(path);
    char *lock_path = malloc(plen + sizeof ".lock");
    struct stat st;
    void *map;
    int fd;
    if (!lock_path) return NULL;
    memcpy(lock_path, path, plen);
    memcpy(lock_path + plen, ".lock", sizeof ".lock");
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    if (fd < 0) return NULL;
    /* Growing a file with zeros is idempotent, so racing openers agree. */
    if (fstat(fd, &st) != 0 || (st.st_size < (off_t)sizeof(uint64_t) &&
                                ftruncate(fd, sizeof(uint64_t)) != 0)) {
        close(fd);
        return NULL;
    }
    map = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return map == MAP_FAILED ? NULL : map;
}

uint64_t kf_store_generation(const void *map) {
    return __atomic_load_n((const uint64_t *)map, __ATOMIC_ACQUIRE);
}

void kf_store_generation_bump(void *map) {
    __atomic_add_fetch((uint64_t *)map, 1, __ATOMIC_RELEASE);
}

void kf_store_generation_unmap(void *map) {
    munmap(map, sizeof(uint64_t));
}
