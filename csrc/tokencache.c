/* One token cache per process, shared by every Lua state in it: a script's,
 * and under nginx a worker's main VM and each VM of its worker threads
 * (ngx.run_worker_thread), which would otherwise each fetch their own token
 * for the same client, a round trip or two to the identity provider each.
 *
 * Entries are found by the SHA-256 of the key, so the cache holds no client
 * secret; only a caller who presents the same endpoint, client, secret,
 * scope, audience and headers gets the token, and such a caller could ask
 * the endpoint for one anyway. Expiry is on the monotonic clock. Tokens are
 * wiped when dropped. A mutex guards it all; nothing inside it can block. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "tokencache.h"

typedef struct tc_slot {
    unsigned char id[32];
    char *token;
    size_t len;
    double expires; /* monotonic seconds */
} tc_slot;

static tc_slot tc_slots[KF_TOKEN_CACHE_SLOTS];
static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;

static double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tc_id(const char *key, size_t key_len, unsigned char id[32]) {
    unsigned int n = 0;
    return EVP_Digest(key, key_len, id, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

static void tc_drop(tc_slot *s) {
    if (s->token) {
        explicit_bzero(s->token, s->len);
        free(s->token);
    }
    memset(s, 0, sizeof *s);
}

/* The slot holding id, or NULL. Called with the lock held. */
static tc_slot *tc_find(const unsigned char id[32]) {
    int i;
    for (i = 0; i < KF_TOKEN_CACHE_SLOTS; i++)
        if (tc_slots[i].token && memcmp(tc_slots[i].id, id, 32) == 0) return &tc_slots[i];
    return NULL;
}

long kf_token_cache_get(const char *key, size_t key_len, char *out, size_t cap) {
    unsigned char id[32];
    tc_slot *s;
    long n = 0;
    if (tc_id(key, key_len, id) != 0) return 0;
    pthread_mutex_lock(&tc_lock);
    s = tc_find(id);
    if (s && s->expires <= tc_now()) {
        tc_drop(s);
        s = NULL;
    }
    if (s) {
        if (s->len > cap) {
            n = -1;
        } else {
            memcpy(out, s->token, s->len);
            n = (long)s->len;
        }
    }
    pthread_mutex_unlock(&tc_lock);
    return n;
}

int kf_token_cache_put(const char *key, size_t key_len, const char *token, size_t token_len,
                       long lifetime_s) {
    unsigned char id[32];
    tc_slot *s, *spare = NULL;
    char *copy;
    double now = tc_now();
    int i;
    if (tc_id(key, key_len, id) != 0 || !(copy = malloc(token_len ? token_len : 1))) return -1;
    memcpy(copy, token, token_len);
    pthread_mutex_lock(&tc_lock);
    s = tc_find(id);
    /* Else a free or expired slot; else the one that expires first. */
    for (i = 0; !s && i < KF_TOKEN_CACHE_SLOTS; i++) {
        tc_slot *t = &tc_slots[i];
        if (!t->token || t->expires <= now) {
            s = t;
        } else if (!spare || t->expires < spare->expires) {
            spare = t;
        }
    }
    if (!s) s = spare;
    tc_drop(s);
    memcpy(s->id, id, 32);
    s->token = copy;
    s->len = token_len;
    s->expires = now + (double)lifetime_s;
    pthread_mutex_unlock(&tc_lock);
    return 0;
}

void kf_token_cache_forget(const char *key, size_t key_len) {
    unsigned char id[32];
    tc_slot *s;
    if (tc_id(key, key_len, id) != 0) return;
    pthread_mutex_lock(&tc_lock);
    if ((s = tc_find(id))) tc_drop(s);
    pthread_mutex_unlock(&tc_lock);
}

/* Lua unloads a C module when its last state closes (dlclose): the tokens
 * are wiped and freed then, not left behind in unmapped memory. */
__attribute__((destructor)) static void tc_unload(void) {
    int i;
    pthread_mutex_lock(&tc_lock);
    for (i = 0; i < KF_TOKEN_CACHE_SLOTS; i++) tc_drop(&tc_slots[i]);
    pthread_mutex_unlock(&tc_lock);
}
