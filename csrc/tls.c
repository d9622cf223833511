/* TLS for every libcurl transfer of the core: the one place certificate
 * checking is set up (deliveries and token requests alike), and the facts
 * a delivery reports about the session and the server's certificate
 * (version, verification, subject, issuer, names, expiry, SHA-256), read
 * from OpenSSL while the connection lives. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

void kf_curl_verify_options(kf_curlopt *o, const char *ca_file, int tls_verify) {
    const curl_version_info_data *ver = curl_version_info(CURLVERSION_NOW);
    KF_SETOPT(o, CURLOPT_SSL_VERIFYPEER, tls_verify ? 1L : 0L);
    KF_SETOPT(o, CURLOPT_SSL_VERIFYHOST, tls_verify ? 2L : 0L);
    KF_SETOPT(o, CURLOPT_CAINFO, ca_file ? ca_file : ver->cainfo);
    /* With a CA path set libcurl re-reads the store on every connection;
     * a bundle file alone is parsed once and cached on this handle. */
    KF_SETOPT(o, CURLOPT_CAPATH, NULL);
    KF_SETOPT(o, CURLOPT_CA_CACHE_TIMEOUT, 86400L);
}

void kf_tls_reset(kf_tls_facts *t) {
    kf_buf_clear(&t->subject);
    kf_buf_clear(&t->issuer);
    kf_buf_clear(&t->names);
    t->captured = 0;
    t->version[0] = t->not_after[0] = t->sha256[0] = '\0';
    t->verify_result = -1;
}

void kf_tls_free(kf_tls_facts *t) {
    kf_buf_free(&t->subject);
    kf_buf_free(&t->issuer);
    kf_buf_free(&t->names);
}

static void tls_name_to_buf(const X509_NAME *name, kf_buf *out) {
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    long n;
    if (!bio) return;
    X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
    n = BIO_get_mem_data(bio, &p);
    if (n > 0) kf_buf_append(out, p, (size_t)n);
    BIO_free(bio);
}

static void tls_alt_names(kf_tls_facts *t, X509 *cert) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int k, count;
    if (!names) return;
    count = sk_GENERAL_NAME_num(names);
    for (k = 0; k < count; k++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, k);
        if (gn->type == GEN_DNS) {
            const unsigned char *s = ASN1_STRING_get0_data(gn->d.dNSName);
            kf_buf_line(&t->names, (const char *)s, (size_t)ASN1_STRING_length(gn->d.dNSName));
        } else if (gn->type == GEN_IPADD) {
            char text[INET6_ADDRSTRLEN];
            int len = ASN1_STRING_length(gn->d.iPAddress);
            const unsigned char *s = ASN1_STRING_get0_data(gn->d.iPAddress);
            if ((len == 4 && inet_ntop(AF_INET, s, text, sizeof text)) ||
                (len == 16 && inet_ntop(AF_INET6, s, text, sizeof text)))
                kf_buf_line(&t->names, text, strlen(text));
        }
    }
    GENERAL_NAMES_free(names);
}

static void tls_capture_cert(kf_tls_facts *t, X509 *cert) {
    const ASN1_TIME *not_after;
    struct tm tm;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0, i;

    tls_name_to_buf(X509_get_subject_name(cert), &t->subject);
    tls_name_to_buf(X509_get_issuer_name(cert), &t->issuer);
    tls_alt_names(t, cert);
    not_after = X509_get0_notAfter(cert);
    if (not_after && ASN1_TIME_to_tm(not_after, &tm) == 1)
        strftime(t->not_after, sizeof t->not_after, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1)
        for (i = 0; i < md_len && i * 2 + 2 < sizeof t->sha256; i++)
            snprintf(t->sha256 + i * 2, 3, "%02x", md[i]);
}

/* The SSL object exists only while the connection lives, so the facts are
 * read during the dialog, at the first line exchanged over TLS. */
void kf_tls_capture(kf_tls_facts *t, CURL *h) {
    struct curl_tlssessioninfo *info = NULL;
    SSL *ssl;
    X509 *cert;
    if (t->captured) return;
    if (curl_easy_getinfo(h, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK ||
        !info || info->backend != CURLSSLBACKEND_OPENSSL || !info->internals)
        return;
    ssl = info->internals;
    if (!SSL_is_init_finished(ssl)) return;
    t->captured = 1;
    snprintf(t->version, sizeof t->version, "%s", SSL_get_version(ssl));
    t->verify_result = SSL_get_verify_result(ssl);
    if ((cert = SSL_get0_peer_certificate(ssl))) tls_capture_cert(t, cert);
}
