/* Secrets sealed at rest under a key file (see sealing.c): the key file,
 * read with the same care as a secret file, and AES-256-GCM through
 * OpenSSL's EVP. Plain C: no Lua here. */
#ifndef KFSMTP_SEALING_H
#define KFSMTP_SEALING_H

#include <limits.h>

#include "buffer.h"

#define KF_KEY_BYTES 32
/* The key id: the first 8 bytes of a SHA-256 of the key, in hex. */
#define KF_KEY_ID_HEX 16
#define KF_KEY_MAX_PATH PATH_MAX
#define KF_SEAL_NONCE 12
#define KF_SEAL_TAG 16
/* The plaintext is padded to a multiple of this, so a sealed value tells
 * nothing of its length below it. */
#define KF_SEAL_BUCKET 512
/* Two bytes of the padded text hold the length. */
#define KF_SEAL_MAX_PLAINTEXT (65536 - 2)
#define KF_SEAL_MAX_AAD 1024
/* The base64 of nonce, the largest padded text and tag. */
#define KF_SEAL_MAX_SEALED (((KF_SEAL_NONCE + 65536 + KF_SEAL_TAG) + 2) / 3 * 4)

/* Why a call was refused; kf_seal_kind_names holds each one's name, as
 * Lua sees it, in this order. */
typedef enum kf_seal_kind {
    KF_SEAL_OK,
    KF_SEAL_MISSING,     /* no key file there */
    KF_SEAL_LINK,        /* a symbolic link where the key file should be */
    KF_SEAL_NOT_REGULAR, /* a folder, FIFO, device or socket */
    KF_SEAL_OWNER,       /* neither this process's user nor root owns it */
    KF_SEAL_PERMISSIONS, /* group or others have a permission bit */
    KF_SEAL_MALFORMED,   /* not one line of the key file format */
    KF_SEAL_UNREADABLE,  /* the system refused: EACCES, EIO, no /proc ... */
    KF_SEAL_EXISTS,      /* key_generate: something is already there */
    KF_SEAL_WRONG_KEY,   /* unseal: the key file is another key */
    KF_SEAL_BAD_SEALED,  /* unseal: not a sealed value of this format */
    KF_SEAL_NOT_OPENED,  /* unseal: authentication failed */
    KF_SEAL_INTERNAL,    /* OpenSSL or memory failed */
    KF_SEAL_KIND_COUNT
} kf_seal_kind;

KF_HIDDEN extern const char *const kf_seal_kind_names[KF_SEAL_KIND_COUNT];

typedef struct kf_key {
    unsigned char bytes[KF_KEY_BYTES];
    char id[KF_KEY_ID_HEX + 1];
} kf_key;

/* Reads the key file at path into key. On a refusal, why gets one
 * sentence naming the path, the reason and the fix, never a byte of the
 * file. The caller wipes key (kf_key_wipe) whatever the result. */
KF_HIDDEN kf_seal_kind kf_key_read(const char *path, kf_key *key, kf_buf *why);
/* Writes a new key file at path (never over anything), mode 0600 whatever
 * the umask; its id goes to id. */
KF_HIDDEN kf_seal_kind kf_key_generate(const char *path, char id[KF_KEY_ID_HEX + 1],
                                       kf_buf *why);
KF_HIDDEN void kf_key_wipe(kf_key *key);

/* Seals len bytes of plain (at most KF_SEAL_MAX_PLAINTEXT) bound to aad:
 * out gets base64(nonce | ciphertext | tag). */
KF_HIDDEN kf_seal_kind kf_seal(const kf_key *key, const char *plain, size_t len, const char *aad,
                               size_t aad_len, kf_buf *out, kf_buf *why);
/* Opens a sealed value: out gets the plaintext (the caller wipes it). */
KF_HIDDEN kf_seal_kind kf_unseal(const kf_key *key, const char *sealed, size_t len,
                                 const char *aad, size_t aad_len, kf_buf *out, kf_buf *why);

#endif
