/* One token cache per process, shared by every Lua state in it: a script's,
 * and under nginx a worker's main VM and each VM of its worker threads
 * (ngx.run_worker_thread), which would otherwise each fetch their own token
 * for the same client, a round trip or two to the identity provider each.
 *
 * Entries are found by an HMAC-SHA256 of the key under a random key made
 * once per process, so the cache holds neither the client secret nor a
 * plain hash of it that could be guessed offline; only a caller who
 * presents the same endpoint, client, secret, scope, audience, headers and
 * destination gets the token, and such a caller could ask the endpoint for
 * one anyway. When full, the least recently used entry goes: a caller who
 * fills the cache with long-lived tokens of its own does not push out
 * tokens in use. Expiry is on the monotonic clock; tokens are wiped when
 * dropped. A mutex guards it all (nothing inside it can block), and a fork
 * never copies it held. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tokencache.h"

typedef struct tc_slot {
    unsigned char id[32];
    char *token;
    size_t len;
    double expires, used; /* monotonic seconds */
} tc_slot;

static tc_slot tc_slots[KF_TOKEN_CACHE_SLOTS];
static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static unsigned char tc_hmac_key[32];
static int tc_ready;

static void tc_fork_prepare(void) { pthread_mutex_lock(&tc_lock); }
static void tc_fork_done(void) { pthread_mutex_unlock(&tc_lock); }

static void tc_init(void) {
    tc_ready = getrandom(tc_hmac_key, sizeof tc_hmac_key, 0) == (ssize_t)sizeof tc_hmac_key &&
               pthread_atfork(tc_fork_prepare, tc_fork_done, tc_fork_done) == 0;
}

static double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Without its random key (getrandom failed) the cache keeps nothing. */
static int tc_id(const char *key, size_t key_len, unsigned char id[32]) {
    unsigned int n = 0;
    pthread_once(&tc_once, tc_init);
    if (!tc_ready) return -1;
    return HMAC(EVP_sha256(), tc_hmac_key, sizeof tc_hmac_key, (const unsigned char *)key, key_len,
                id, &n) && n == 32 ? 0 : -1;
}

static void tc_drop(tc_slot *s) {
    if (s->token) {
        explicit_bzero(s->token, s->len);
        free(s->token);
    }
    memset(s, 0, sizeof *s);
}

/* The live slot holding id, or NULL; an expired one is dropped. Called with
 * the lock held. */
static tc_slot *tc_find(const unsigned char id[32], double now) {
    int i;
    for (i = 0; i < KF_TOKEN_CACHE_SLOTS; i++) {
        tc_slot *s = &tc_slots[i];
        if (!s->token || memcmp(s->id, id, 32) != 0) continue;
        if (s->expires > now) return s;
        tc_drop(s);
        return NULL;
    }
    return NULL;
}

int kf_token_cache_get(const char *key, size_t key_len, kf_buf *out) {
    unsigned char id[32];
    tc_slot *s;
    double now = tc_now();
    int found = 0;
    if (tc_id(key, key_len, id) != 0) return 0;
    pthread_mutex_lock(&tc_lock);
    if ((s = tc_find(id, now))) {
        s->used = now;
        kf_buf_append(out, s->token, s->len);
        found = out->oom ? -1 : 1;
    }
    pthread_mutex_unlock(&tc_lock);
    return found;
}

int kf_token_cache_put(const char *key, size_t key_len, const char *token, size_t token_len,
                       long lifetime_s) {
    unsigned char id[32];
    tc_slot *s, *oldest = NULL;
    char *copy;
    double now = tc_now();
    int i;
    if (token_len == 0 || token_len > KF_TOKEN_CACHE_MAX_TOKEN || lifetime_s < 1 ||
        lifetime_s > KF_TOKEN_CACHE_MAX_LIFETIME_S || tc_id(key, key_len, id) != 0 ||
        !(copy = malloc(token_len)))
        return -1;
    memcpy(copy, token, token_len);
    pthread_mutex_lock(&tc_lock);
    s = tc_find(id, now);
    /* Else a free or expired slot; else the least recently used. */
    for (i = 0; !s && i < KF_TOKEN_CACHE_SLOTS; i++) {
        tc_slot *t = &tc_slots[i];
        if (!t->token || t->expires <= now) s = t;
        else if (!oldest || t->used < oldest->used) oldest = t;
    }
    if (!s) s = oldest;
    tc_drop(s);
    memcpy(s->id, id, 32);
    s->token = copy;
    s->len = token_len;
    s->expires = now + (double)lifetime_s;
    s->used = now;
    pthread_mutex_unlock(&tc_lock);
    return 0;
}

void kf_token_cache_forget(const char *key, size_t key_len) {
    unsigned char id[32];
    tc_slot *s;
    if (tc_id(key, key_len, id) != 0) return;
    pthread_mutex_lock(&tc_lock);
    if ((s = tc_find(id, tc_now()))) tc_drop(s);
    pthread_mutex_unlock(&tc_lock);
}

/* Lua unloads a C module when its last state closes (dlclose): the tokens
 * are wiped and freed then, not left behind in unmapped memory. */
__attribute__((destructor)) static void tc_unload(void) {
    int i;
    pthread_mutex_lock(&tc_lock);
    for (i = 0; i < KF_TOKEN_CACHE_SLOTS; i++) tc_drop(&tc_slots[i]);
    pthread_mutex_unlock(&tc_lock);
    explicit_bzero(tc_hmac_key, sizeof tc_hmac_key);
}
