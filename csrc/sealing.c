/* Secrets sealed at rest. A key file is one line,
 *     kfsmtp-key-v1 <key id> <base64 of 32 random bytes>
 * and must be a regular file reached without a symbolic link, owned by this
 * process's user or root, with no permission for group or others: whoever
 * reads it opens every secret sealed with it. As with a secret file, the
 * first open is O_PATH (with O_NOFOLLOW it opens a link itself, so a link
 * is seen and refused, and a FIFO or device is neither blocked on nor woken
 * before it is refused); only a checked regular file is reopened through
 * that descriptor and read.
 *
 * A sealed value is base64(nonce | ciphertext | tag) of AES-256-GCM with a
 * random 96-bit nonce, bound to associated data the caller names (the
 * field and the profile), so a value moved elsewhere does not open. The
 * plaintext is padded first, inside the ciphertext, to a multiple of
 * KF_SEAL_BUCKET bytes: two bytes of length, the text, zeros. Every buffer
 * that held a key or a plaintext is wiped before it is freed. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "oserr.h"
#include "sealing.h"

const char *const kf_seal_kind_names[KF_SEAL_KIND_COUNT] = {
    "ok",        "missing",   "link",       "not_regular", "owner",   "permissions", "malformed",
    "unreadable", "exists",   "wrong_key",  "bad_sealed",  "not_opened", "internal"};

#define SEAL_MAGIC "kfsmtp-key-v1"
/* What the key id hashes before the key: an id never equals a hash of the
 * key taken for any other purpose. */
#define SEAL_ID_LABEL "kfsmtp key id\n"
#define SEAL_KEY_B64 44 /* base64 of 32 bytes, one '=' */
/* The line and its end: anything longer is no key file. */
#define SEAL_LINE_MAX (sizeof SEAL_MAGIC + KF_KEY_ID_HEX + 1 + SEAL_KEY_B64 + 2)

/* why = 'key file "PATH" REASON.'; returns kind. The reason is built from
 * numbers and the C library's words only. */
static kf_seal_kind __attribute__((format(printf, 4, 5)))
seal_refuse(kf_buf *why, kf_seal_kind kind, const char *path, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    kf_buf_clear(why);
    kf_buf_puts(why, "key file ");
    kf_buf_quote(why, path);
    kf_buf_printf(why, " %s.", reason);
    return kind;
}

/* A failure with no path to name (sealing, opening). */
static kf_seal_kind __attribute__((format(printf, 3, 4)))
seal_fail(kf_buf *why, kf_seal_kind kind, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    kf_buf_clear(why);
    kf_buf_puts(why, reason);
    return kind;
}

void kf_key_wipe(kf_key *key) {
    OPENSSL_cleanse(key, sizeof *key);
}

/* The key's id: hex of the first 8 bytes of SHA-256(label | key). */
static int seal_key_id(const unsigned char *bytes, char id[KF_KEY_ID_HEX + 1]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok, i;
    if (!ctx) return 0;
    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, SEAL_ID_LABEL, sizeof SEAL_ID_LABEL - 1) == 1 &&
         EVP_DigestUpdate(ctx, bytes, KF_KEY_BYTES) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len >= KF_KEY_ID_HEX / 2;
    EVP_MD_CTX_free(ctx);
    if (!ok) return 0;
    for (i = 0; i < KF_KEY_ID_HEX / 2; i++) snprintf(id + 2 * i, 3, "%02x", md[i]);
    OPENSSL_cleanse(md, sizeof md);
    return 1;
}

static int seal_b64_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* Strict base64 (whole quads, '=' only as the last one or two characters)
 * into out, which must hold len / 4 * 3 bytes: the decoded length, or -1.
 * EVP_DecodeBlock alone would skip blanks and count padding as data. */
static long seal_b64_decode(const char *s, size_t len, unsigned char *out) {
    size_t i, pad = 0;
    int n;
    if (len == 0 || len % 4 != 0 || len > (size_t)KF_SEAL_MAX_SEALED) return -1;
    if (s[len - 1] == '=') pad++;
    if (pad && s[len - 2] == '=') pad++;
    for (i = 0; i < len - pad; i++)
        if (!seal_b64_char((unsigned char)s[i])) return -1;
    n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0 || (size_t)n < pad) return -1;
    return (long)((size_t)n - pad);
}

/* The line of a key file into key. 1 when it is one, else 0. */
static int seal_parse_key(const char *line, size_t len, kf_key *key) {
    const size_t magic = sizeof SEAL_MAGIC - 1;
    const char *id, *b64;
    unsigned char raw[SEAL_KEY_B64 / 4 * 3], again[SEAL_KEY_B64 + 1];
    size_t i;
    long n;
    int ok = 0;
    if (len > 0 && line[len - 1] == '\n') len--;
    if (len != magic + 1 + KF_KEY_ID_HEX + 1 + SEAL_KEY_B64) return 0;
    if (memcmp(line, SEAL_MAGIC, magic) != 0 || line[magic] != ' ' ||
        line[magic + 1 + KF_KEY_ID_HEX] != ' ')
        return 0;
    id = line + magic + 1;
    b64 = id + KF_KEY_ID_HEX + 1;
    for (i = 0; i < KF_KEY_ID_HEX; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
    n = seal_b64_decode(b64, SEAL_KEY_B64, raw);
    /* Only the canonical text of exactly 32 bytes: encoded again, the
     * same characters. */
    if (n == KF_KEY_BYTES && EVP_EncodeBlock(again, raw, KF_KEY_BYTES) == SEAL_KEY_B64 &&
        memcmp(again, b64, SEAL_KEY_B64) == 0) {
        memcpy(key->bytes, raw, KF_KEY_BYTES);
        ok = seal_key_id(key->bytes, key->id) && memcmp(key->id, id, KF_KEY_ID_HEX) == 0;
    }
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(again, sizeof again);
    return ok;
}

/* Reads the checked regular file at fd (an O_PATH descriptor) into key. */
static kf_seal_kind seal_read_checked(int fd, const struct stat *st, const char *path,
                                      kf_key *key, kf_buf *why) {
    char proc[64], err[128], line[SEAL_LINE_MAX + 1];
    struct stat opened;
    size_t len = 0;
    int rfd, ok;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    /* Through the checked descriptor, so the same file. */
    rfd = open(proc, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (rfd < 0)
        return seal_refuse(why, KF_SEAL_UNREADABLE, path,
                           "cannot be opened (%s): let uid %lu read it (chown %lu, then chmod 600), "
                           "and mount /proc, which the check needs",
                           kf_strerror(errno, err, sizeof err), (unsigned long)geteuid(),
                           (unsigned long)geteuid());
    if (fstat(rfd, &opened) != 0 || opened.st_dev != st->st_dev || opened.st_ino != st->st_ino ||
        !S_ISREG(opened.st_mode)) {
        close(rfd);
        return seal_refuse(why, KF_SEAL_UNREADABLE, path,
                           "changed while it was being checked: try again");
    }
    while (len < sizeof line) {
        ssize_t n = read(rfd, line + len, sizeof line - len);
        if (n < 0) {
            int e = errno;
            if (e == EINTR) continue;
            close(rfd);
            OPENSSL_cleanse(line, sizeof line);
            return seal_refuse(why, KF_SEAL_UNREADABLE, path, "cannot be read (%s): check the file",
                               kf_strerror(e, err, sizeof err));
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(rfd);
    ok = len <= SEAL_LINE_MAX && seal_parse_key(line, len, key);
    OPENSSL_cleanse(line, sizeof line);
    if (!ok) {
        kf_key_wipe(key);
        return seal_refuse(why, KF_SEAL_MALFORMED, path,
                           "is not a kfsmtp key file (one line: %s, the key id, the key in "
                           "base64; the id must match the key): restore it from the copy it was "
                           "made from, or make a new one with `kfsmtp keygen FILE` and enter the "
                           "secrets again",
                           SEAL_MAGIC);
    }
    return KF_SEAL_OK;
}

kf_seal_kind kf_key_read(const char *path, kf_key *key, kf_buf *why) {
    char err[128];
    struct stat st;
    kf_seal_kind kind;
    int fd, e;
    memset(key, 0, sizeof *key);
    fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return seal_refuse(why, KF_SEAL_MISSING, path,
                               "does not exist (%s): make one with `kfsmtp keygen FILE`, or set "
                               "key_file (KFSMTP_KEY_FILE) to the right path",
                               kf_strerror(e, err, sizeof err));
        return seal_refuse(why, KF_SEAL_UNREADABLE, path,
                           "cannot be opened (%s): check the path and that uid %lu may read it",
                           kf_strerror(e, err, sizeof err), (unsigned long)geteuid());
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        return seal_refuse(why, KF_SEAL_UNREADABLE, path, "cannot be examined (%s): check the file",
                           kf_strerror(e, err, sizeof err));
    }
    if (S_ISLNK(st.st_mode)) {
        close(fd);
        return seal_refuse(why, KF_SEAL_LINK, path,
                           "is a symbolic link, which a key file may not be (whoever can change "
                           "the link chooses the key): point key_file at the file itself");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return seal_refuse(why, KF_SEAL_NOT_REGULAR, path,
                           "is a %s, not a regular file: point key_file at the key file",
                           kf_file_kind(st.st_mode));
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        unsigned long me = (unsigned long)geteuid();
        close(fd);
        if (me == 0)
            return seal_refuse(why, KF_SEAL_OWNER, path,
                               "is owned by uid %lu, not by root, whom this process runs as: run "
                               "chown root on it",
                               (unsigned long)st.st_uid);
        return seal_refuse(why, KF_SEAL_OWNER, path,
                           "is owned by uid %lu, neither this process's user (uid %lu) nor root: "
                           "run chown %lu (or chown root) on it",
                           (unsigned long)st.st_uid, me, me);
    }
    if (st.st_mode & 077) {
        close(fd);
        return seal_refuse(why, KF_SEAL_PERMISSIONS, path,
                           "is open to group or others (mode %04o), and whoever reads it opens "
                           "every secret sealed with it: run chmod 600 on it",
                           (unsigned)(st.st_mode & 07777));
    }
    kind = seal_read_checked(fd, &st, path, key, why);
    close(fd);
    return kind;
}

/* The folder of path, fsynced so a new key file survives a crash; a
 * failure here is not the key's: ignored. */
static void seal_sync_folder(const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n;
    int fd;
    if (!slash) {
        dir[0] = '.';
        n = 1;
    } else {
        n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
    }
    dir[n] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

static int seal_write_all(int fd, const char *s, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

kf_seal_kind kf_key_generate(const char *path, char id[KF_KEY_ID_HEX + 1], kf_buf *why) {
    char err[128], line[SEAL_LINE_MAX + 1];
    unsigned char bytes[KF_KEY_BYTES];
    int fd, rc, len;
    id[0] = '\0';
    /* O_EXCL: never over a key (the secrets sealed with it would be lost),
     * nor through a link planted at path (O_EXCL refuses those too). */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            return seal_refuse(why, KF_SEAL_EXISTS, path,
                               "already exists, and kfsmtp never writes over a key file (the "
                               "secrets sealed with it could not be opened again): choose another "
                               "path");
        return seal_refuse(why, e == ENOENT || e == ENOTDIR ? KF_SEAL_MISSING : KF_SEAL_UNREADABLE,
                           path, "cannot be created (%s): check the folder and its permissions",
                           kf_strerror(e, err, sizeof err));
    }
    /* The mode open gave went through the umask: set it outright. */
    if (fchmod(fd, 0600) != 0) {
        rc = errno;
        goto fail;
    }
    if (RAND_bytes(bytes, sizeof bytes) != 1 || !seal_key_id(bytes, id)) {
        rc = EIO;
        goto fail;
    }
    len = snprintf(line, sizeof line, "%s %s ", SEAL_MAGIC, id);
    len += EVP_EncodeBlock((unsigned char *)line + len, bytes, KF_KEY_BYTES);
    line[len++] = '\n';
    OPENSSL_cleanse(bytes, sizeof bytes);
    rc = seal_write_all(fd, line, (size_t)len);
    OPENSSL_cleanse(line, sizeof line);
    if (rc != 0) {
        rc = -rc;
        goto fail;
    }
    if (fsync(fd) != 0) {
        rc = errno;
        goto fail;
    }
    if (close(fd) != 0) {
        rc = errno;
        fd = -1;
        goto fail;
    }
    seal_sync_folder(path);
    return KF_SEAL_OK;
fail:
    OPENSSL_cleanse(bytes, sizeof bytes);
    OPENSSL_cleanse(line, sizeof line);
    if (fd >= 0) close(fd);
    /* Created here, exclusively: no one else's file. */
    unlink(path);
    id[0] = '\0';
    return seal_refuse(why, KF_SEAL_UNREADABLE, path, "could not be written (%s): nothing was kept",
                       kf_strerror(rc, err, sizeof err));
}

/* One AES-256-GCM pass: encrypt (enc 1) or decrypt (0) len bytes of in to
 * out, with aad; tag is written (enc) or checked (decrypt). 1, 0 when the
 * tag does not match, -1 when OpenSSL failed. */
static int seal_gcm(int enc, const kf_key *key, const unsigned char *nonce, const char *aad,
                    size_t aad_len, const unsigned char *in, size_t len, unsigned char *out,
                    unsigned char *tag) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, rc = -1;
    if (!ctx) return -1;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KF_SEAL_NONCE, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key->bytes, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)aad_len) != 1 ||
        EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1 || (size_t)n != len)
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KF_SEAL_TAG, tag) != 1) goto done;
    if (EVP_CipherFinal_ex(ctx, out + n, &n) != 1) {
        rc = enc ? -1 : 0;
        goto done;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KF_SEAL_TAG, tag) != 1) goto done;
    rc = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

kf_seal_kind kf_seal(const kf_key *key, const char *plain, size_t len, const char *aad,
                     size_t aad_len, kf_buf *out, kf_buf *why) {
    size_t padded_len, total;
    unsigned char *padded, *raw;
    int n;
    if (len > KF_SEAL_MAX_PLAINTEXT)
        return seal_fail(why, KF_SEAL_INTERNAL, "the secret is longer than %d bytes",
                         KF_SEAL_MAX_PLAINTEXT);
    padded_len = (2 + len + KF_SEAL_BUCKET - 1) / KF_SEAL_BUCKET * KF_SEAL_BUCKET;
    total = KF_SEAL_NONCE + padded_len + KF_SEAL_TAG;
    padded = calloc(1, padded_len);
    raw = malloc(total);
    if (!padded || !raw) {
        free(padded);
        free(raw);
        return seal_fail(why, KF_SEAL_INTERNAL, "out of memory");
    }
    padded[0] = (unsigned char)(len >> 8);
    padded[1] = (unsigned char)(len & 0xff);
    memcpy(padded + 2, plain, len);
    n = RAND_bytes(raw, KF_SEAL_NONCE) == 1
            ? seal_gcm(1, key, raw, aad, aad_len, padded, padded_len, raw + KF_SEAL_NONCE,
                       raw + KF_SEAL_NONCE + padded_len)
            : -1;
    OPENSSL_cleanse(padded, padded_len);
    free(padded);
    if (n == 1) {
        kf_buf_reserve(out, (total + 2) / 3 * 4);
        if (!out->oom) {
            out->len = (size_t)EVP_EncodeBlock((unsigned char *)out->data, raw, (int)total);
            out->data[out->len] = '\0';
        }
    }
    free(raw);
    if (n != 1) return seal_fail(why, KF_SEAL_INTERNAL, "OpenSSL could not seal the secret");
    if (out->oom) return seal_fail(why, KF_SEAL_INTERNAL, "out of memory");
    return KF_SEAL_OK;
}

kf_seal_kind kf_unseal(const kf_key *key, const char *sealed, size_t len, const char *aad,
                       size_t aad_len, kf_buf *out, kf_buf *why) {
    unsigned char *raw, *padded = NULL;
    size_t padded_len = 0, text_len, i;
    long n;
    int rc = -1;
    kf_seal_kind kind = KF_SEAL_OK;
    if (len == 0 || len > (size_t)KF_SEAL_MAX_SEALED)
        return seal_fail(why, KF_SEAL_BAD_SEALED, "the sealed value has the wrong length");
    raw = malloc(len / 4 * 3);
    if (!raw) return seal_fail(why, KF_SEAL_INTERNAL, "out of memory");
    n = seal_b64_decode(sealed, len, raw);
    if (n < KF_SEAL_NONCE + KF_SEAL_BUCKET + KF_SEAL_TAG ||
        ((size_t)n - KF_SEAL_NONCE - KF_SEAL_TAG) % KF_SEAL_BUCKET != 0) {
        free(raw);
        return seal_fail(why, KF_SEAL_BAD_SEALED,
                         "the sealed value is not base64 of a nonce, whole blocks and a tag");
    }
    padded_len = (size_t)n - KF_SEAL_NONCE - KF_SEAL_TAG;
    padded = malloc(padded_len);
    if (padded)
        rc = seal_gcm(0, key, raw, aad, aad_len, raw + KF_SEAL_NONCE, padded_len, padded,
                      raw + KF_SEAL_NONCE + padded_len);
    free(raw);
    if (rc != 1) {
        if (padded) OPENSSL_cleanse(padded, padded_len);
        free(padded);
        if (rc == 0)
            return seal_fail(why, KF_SEAL_NOT_OPENED,
                             "the sealed value does not open with this key here: it was sealed for "
                             "another field or profile, or altered");
        return seal_fail(why, KF_SEAL_INTERNAL, padded ? "OpenSSL could not open the sealed value"
                                                       : "out of memory");
    }
    text_len = (size_t)padded[0] << 8 | padded[1];
    if (text_len > padded_len - 2) kind = KF_SEAL_BAD_SEALED;
    for (i = 2 + (kind == KF_SEAL_OK ? text_len : 0); kind == KF_SEAL_OK && i < padded_len; i++)
        if (padded[i] != 0) kind = KF_SEAL_BAD_SEALED;
    if (kind == KF_SEAL_OK) {
        /* Sized once: a buffer moved by realloc would leave a copy. */
        kf_buf_reserve(out, text_len);
        if (out->oom) kind = KF_SEAL_INTERNAL;
        else kf_buf_append(out, (const char *)padded + 2, text_len);
    }
    OPENSSL_cleanse(padded, padded_len);
    free(padded);
    if (kind == KF_SEAL_BAD_SEALED)
        return seal_fail(why, kind, "the opened value is not padded as kfsmtp pads it");
    if (kind == KF_SEAL_INTERNAL) return seal_fail(why, kind, "out of memory");
    return KF_SEAL_OK;
}
