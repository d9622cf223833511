/* The profile store's file operations (see store.c). */
#ifndef KFSMTP_STORE_H
#define KFSMTP_STORE_H

#include <stdint.h>

#include "buffer.h"

#define KF_SIG_SIZE 128

/* Reads the whole file into out and writes its change signature. Returns 0,
 * 1 when the file does not exist, or -errno. */
KF_HIDDEN int kf_store_read(const char *path, kf_buf *out, char sig[KF_SIG_SIZE]);
/* Writes the signature of the file now at path ("missing" if none). */
KF_HIDDEN int kf_store_stat(const char *path, char sig[KF_SIG_SIZE]);
/* Replaces path atomically with data. Returns 0 or -errno, and the step
 * that failed in *step. */
KF_HIDDEN int kf_store_write(const char *path, const char *data, size_t len,
                             const char **step);
/* Takes the exclusive advisory lock next to the store; returns the lock's
 * descriptor or -errno. Closing the descriptor releases it. */
KF_HIDDEN int kf_store_lock(const char *path);

/* Removes temporary files a killed writer left next to the store. Call it
 * only while holding the lock: then no live writer owns one. Returns the
 * number removed or -errno. */
KF_HIDDEN int kf_store_sweep(const char *path);

/* Shared generation counter (see store.c); the map is NULL when the lock
 * file cannot be opened for writing, and callers then stat every time. */
KF_HIDDEN void *kf_store_generation_map(const char *path);
KF_HIDDEN uint64_t kf_store_generation(const void *map);
KF_HIDDEN void kf_store_generation_bump(void *map);
KF_HIDDEN void kf_store_generation_unmap(void *map);

#endif
