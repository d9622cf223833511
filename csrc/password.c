/* Callers' passwords for the HTTP API's users file: PBKDF2-HMAC-SHA256
 * with a random salt, stored as "pbkdf2-sha256$ITERATIONS$SALT$HASH" (hex),
 * compared in constant time. OpenSSL does the cryptography. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "password.h"

#define PW_SALT_BYTES 16
#define PW_HASH_BYTES 32

static void pw_hex(const unsigned char *in, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[i * 2] = hex[in[i] >> 4];
        out[i * 2 + 1] = hex[in[i] & 15];
    }
    out[n * 2] = '\0';
}

static int pw_unhex(const char *in, size_t n, unsigned char *out) {
    size_t i;
    for (i = 0; i < n; i++) {
        int hi, lo;
        char a = in[i * 2], b = in[i * 2 + 1];
        hi = a >= '0' && a <= '9' ? a - '0' : a >= 'a' && a <= 'f' ? a - 'a' + 10 : -1;
        lo = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return 0;
}

int kf_password_hash(const char *password, size_t len, long iterations,
                     char *out, size_t out_size) {
    unsigned char salt[PW_SALT_BYTES], hash[PW_HASH_BYTES];
    char salt_hex[PW_SALT_BYTES * 2 + 1], hash_hex[PW_HASH_BYTES * 2 + 1];
    int n;
    if (iterations < KF_PASSWORD_MIN_ITERATIONS || iterations > KF_PASSWORD_MAX_ITERATIONS) return -1;
    if (len > INT_MAX) return -1; /* OpenSSL takes the length as an int */
    if (getrandom(salt, sizeof salt, 0) != (ssize_t)sizeof salt) return -1;
    if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, sizeof salt, (int)iterations,
                          EVP_sha256(), sizeof hash, hash) != 1)
        return -1;
    pw_hex(salt, sizeof salt, salt_hex);
    pw_hex(hash, sizeof hash, hash_hex);
    OPENSSL_cleanse(hash, sizeof hash);
    n = snprintf(out, out_size, "pbkdf2-sha256$%ld$%s$%s", iterations, salt_hex, hash_hex);
    return n > 0 && (size_t)n < out_size ? 0 : -1;
}

int kf_password_verify(const char *password, size_t len, const char *encoded) {
    unsigned char salt[PW_SALT_BYTES], want[PW_HASH_BYTES], got[PW_HASH_BYTES];
    const char *p = encoded, *salt_hex, *hash_hex;
    char *end;
    long iterations;
    int same;
    if (strncmp(p, "pbkdf2-sha256$", 14) != 0) return -1;
    if (len > INT_MAX) return 0; /* no hash of it was ever made */
    p += 14;
    iterations = strtol(p, &end, 10);
    if (end == p || *end != '$' || iterations < KF_PASSWORD_MIN_ITERATIONS || iterations > KF_PASSWORD_MAX_ITERATIONS)
        return -1;
    salt_hex = end + 1;
    if (strlen(salt_hex) != PW_SALT_BYTES * 2 + 1 + PW_HASH_BYTES * 2 ||
        salt_hex[PW_SALT_BYTES * 2] != '$')
        return -1;
    hash_hex = salt_hex + PW_SALT_BYTES * 2 + 1;
    if (pw_unhex(salt_hex, PW_SALT_BYTES, salt) || pw_unhex(hash_hex, PW_HASH_BYTES, want))
        return -1;
    if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, sizeof salt, (int)iterations,
                          EVP_sha256(), sizeof got, got) != 1)
        return -1;
    same = CRYPTO_memcmp(got, want, sizeof got) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return same;
}
