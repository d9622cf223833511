/* Access tokens of RelayAuthenticationType 3, kept once per process (see
 * tokencache.c). */
#ifndef KFSMTP_TOKENCACHE_H
#define KFSMTP_TOKENCACHE_H

#include <stddef.h>

#include "buffer.h"
#include "kfsmtp.h"

/* A caller may change the profile at will: the cache stays bounded. */
#define KF_TOKEN_CACHE_SLOTS 64
/* As long as a token's whole answer may be (token.h's KF_TOKEN_MAX_BODY). */
#define KF_TOKEN_CACHE_MAX_TOKEN (64 * 1024)
/* However long an endpoint says its token lives. */
#define KF_TOKEN_CACHE_MAX_LIFETIME_S (24L * 3600)

/* Appends the token kept for key (the bytes that name a client: endpoint,
 * id, secret, scope, audience, headers, where it goes) to out: 1, or 0
 * when none is kept or it has expired, or -1 when out of memory. */
KF_HIDDEN int kf_token_cache_get(const char *key, size_t key_len, kf_buf *out);
/* Keeps token for key for lifetime_s seconds (1 to the maximum): 0, or -1
 * when it was not kept (too long, out of memory). */
KF_HIDDEN int kf_token_cache_put(const char *key, size_t key_len, const char *token,
                                 size_t token_len, long lifetime_s);
KF_HIDDEN void kf_token_cache_forget(const char *key, size_t key_len);

#endif
