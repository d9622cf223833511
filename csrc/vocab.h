/* kfsmtp's shared vocabulary, written once. C uses the enums built from
 * these lists; luaopen_kfsmtp_core exports the same lists to Lua
 * (core.STAGES, core.TLS_MODES, core.QUIT_STAGES, core.DEFAULTS,
 * core.CURLE), so no Lua file spells a stage, a mode, a default or a libcurl
 * code of its own. */
#ifndef KFSMTP_VOCAB_H
#define KFSMTP_VOCAB_H

#include "kfsmtp.h"

/* Where a test can fail, in dialog order; "token" is the OAuth token
 * request that comes before the dialog of type 3, "secret" the reading of
 * a secret from an operator's provider, before anything is sent. */
#define KF_STAGE_LIST(X) \
    X(RESOLVE, "resolve") X(CONNECT, "connect") X(GREETING, "greeting") \
    X(TLS, "tls") X(EHLO, "ehlo") X(AUTH, "auth") X(MAIL, "mail") \
    X(RCPT, "rcpt") X(DATA, "data") X(TOKEN, "token") X(SECRET, "secret")

#define KF_TLS_MODE_LIST(X) \
    X(NONE, "none") X(STARTTLS, "starttls") X(IMPLICIT, "implicit")

/* quit_after: run the dialog up to a stage and stop, delivering nothing.
 * NEVER (the full test) is not a name callers give. */
#define KF_QUIT_LIST(X) \
    X(CONNECT, "connect") X(TLS, "tls") X(AUTH, "auth") X(RCPT, "rcpt")

/* SASL mechanisms a caller may force with auth_mechanism (libcurl's
 * names); the login options then name this one alone. */
#define KF_SASL_LIST(X) \
    X(PLAIN, "PLAIN") X(LOGIN, "LOGIN") X(CRAM_MD5, "CRAM-MD5") X(DIGEST_MD5, "DIGEST-MD5") \
    X(NTLM, "NTLM") X(XOAUTH2, "XOAUTH2") X(OAUTHBEARER, "OAUTHBEARER")

/* Why a certificate was not trusted, from OpenSSL's verify result (the
 * X509_V_ERR_ name without its prefix): the diagnosis names the fix by
 * these, never by the words of libcurl's message. */
#define KF_CERT_PROBLEM_LIST(X) \
    X(HOSTNAME_MISMATCH, "hostname_mismatch") X(IP_ADDRESS_MISMATCH, "hostname_mismatch") \
    X(CERT_HAS_EXPIRED, "expired") X(CERT_NOT_YET_VALID, "not_yet_valid") \
    X(DEPTH_ZERO_SELF_SIGNED_CERT, "untrusted") X(SELF_SIGNED_CERT_IN_CHAIN, "untrusted") \
    X(UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "untrusted") X(UNABLE_TO_VERIFY_LEAF_SIGNATURE, "untrusted") \
    X(UNABLE_TO_GET_ISSUER_CERT, "untrusted") X(CERT_UNTRUSTED, "untrusted")

#define KF_DEFAULT_PORT 25
#define KF_MAX_PORT 65535
/* UseSSL on this port means TLS from the first byte; elsewhere STARTTLS. */
#define KF_IMPLICIT_TLS_PORT 465
#define KF_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define KF_DEFAULT_TIMEOUT_MS 30000
/* A day: longer is a mistake, not a slow relay. */
#define KF_MAX_TIMEOUT_MS 86400000L

/* The libcurl results the Lua side tells apart, by their curl.h names. */
#define KF_CURLE_LIST(X) \
    X(OK) X(OPERATION_TIMEDOUT) X(PEER_FAILED_VERIFICATION) X(USE_SSL_FAILED) \
    X(SSL_CACERT_BADFILE) X(SSL_PINNEDPUBKEYNOTMATCH)

#define KF_ENUM_STAGE(name, text) KF_STAGE_##name,
enum kf_stage { KF_STAGE_LIST(KF_ENUM_STAGE) KF_STAGE_COUNT };
#undef KF_ENUM_STAGE

#define KF_ENUM_TLS(name, text) KF_TLS_##name,
enum kf_tls_mode { KF_TLS_MODE_LIST(KF_ENUM_TLS) KF_TLS_MODE_COUNT };
#undef KF_ENUM_TLS

#define KF_ENUM_SASL(name, text) KF_SASL_##name,
enum kf_sasl { KF_SASL_LIST(KF_ENUM_SASL) KF_SASL_COUNT };
#undef KF_ENUM_SASL

#define KF_ENUM_QUIT(name, text) KF_QUIT_##name,
enum kf_quit_after { KF_QUIT_NEVER, KF_QUIT_LIST(KF_ENUM_QUIT) KF_QUIT_COUNT };
#undef KF_ENUM_QUIT

/* The lists' names in enum order (vocab.c). kf_quit_after_names leaves out
 * KF_QUIT_NEVER: the name of quit stage q is kf_quit_after_names[q - 1]. */
KF_HIDDEN extern const char *const kf_stage_names[KF_STAGE_COUNT];
KF_HIDDEN extern const char *const kf_tls_mode_names[KF_TLS_MODE_COUNT];
KF_HIDDEN extern const char *const kf_quit_after_names[KF_QUIT_COUNT - 1];
KF_HIDDEN extern const char *const kf_sasl_names[KF_SASL_COUNT];

#endif
