/* Access tokens of RelayAuthenticationType 3, kept once per process (see
 * tokencache.c). */
#ifndef KFSMTP_TOKENCACHE_H
#define KFSMTP_TOKENCACHE_H

#include <stddef.h>

#include "kfsmtp.h"

/* A caller may change the profile at will: the cache stays bounded. */
#define KF_TOKEN_CACHE_SLOTS 64
#define KF_TOKEN_CACHE_MAX_TOKEN (16 * 1024)

/* The token kept for key (the bytes that name a client: endpoint, id,
 * secret, scope, audience, headers), copied to out (cap bytes); its length,
 * or 0 when none is kept or it has expired, or -1 when it does not fit. */
KF_HIDDEN long kf_token_cache_get(const char *key, size_t key_len, char *out, size_t cap);
/* Keeps token for key for lifetime_s seconds (≥ 1); 0, or -1 when out of
 * memory (nothing kept then). */
KF_HIDDEN int kf_token_cache_put(const char *key, size_t key_len, const char *token,
                                 size_t token_len, long lifetime_s);
KF_HIDDEN void kf_token_cache_forget(const char *key, size_t key_len);

#endif
