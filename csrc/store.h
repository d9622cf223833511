/* The profile store's file operations (see store.c). */
#ifndef KFSMTP_STORE_H
#define KFSMTP_STORE_H

#include "buffer.h"

#define KF_SIG_SIZE 128
/* Returned negated, like an errno, when the path names something other
 * than a regular file (a symbolic link, a FIFO, a device, a folder); the
 * function's kind argument then names it. */
#define KF_ENOTFILE 4096
/* Returned negated when another holder kept the lock past KF_LOCK_WAIT_MS. */
#define KF_ELOCKED 4097
#define KF_LOCK_WAIT_MS 10000

/* Reads the whole file into out and writes its change signature. Returns 0,
 * 1 when the file does not exist, -KF_ENOTFILE or -errno. */
KF_HIDDEN int kf_store_read(const char *path, kf_buf *out, char sig[KF_SIG_SIZE],
                            const char **kind);
/* Writes the signature of the file now at path ("missing" if none).
 * Returns 0, 1 when missing, -KF_ENOTFILE or -errno. */
KF_HIDDEN int kf_store_stat(const char *path, char sig[KF_SIG_SIZE], const char **kind);
/* Replaces path atomically with data (a new file, created exclusively, is
 * renamed over it), and writes the signature of the file it put there.
 * Returns 0 or -errno, and the step that failed in *step. */
KF_HIDDEN int kf_store_write(const char *path, const char *data, size_t len,
                             char sig[KF_SIG_SIZE], const char **step);
/* Takes the exclusive advisory lock next to the store; returns the lock's
 * descriptor, -KF_ENOTFILE or -errno. Closing the descriptor releases it. */
KF_HIDDEN int kf_store_lock(const char *path, const char **kind);

/* Removes temporary files a killed writer left next to the store. Call it
 * only while holding the lock: then no live writer owns one. Returns the
 * number removed or -errno. */
KF_HIDDEN int kf_store_sweep(const char *path);

#endif
