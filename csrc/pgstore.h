/* The PostgreSQL store's libpq work (see pgstore.c; the Lua API is
 * described in pgstore_lua.c). Plain C: no Lua here. */
#ifndef KFSMTP_PGSTORE_H
#define KFSMTP_PGSTORE_H

#include <libpq-fe.h>

#include "kfsmtp.h"

/* The one table, its one row and the channel its writes notify. */
#define KF_PG_TABLE "kfsmtp_profile"
#define KF_PG_CHANNEL "kfsmtp_profile"
#define KF_PG_ROW_ID "1"
/* The transaction-scoped advisory lock every writer takes first: "kfsmtp"
 * in ASCII, so another application's advisory locks can steer clear. */
#define KF_PG_LOCK_KEY "118121979033712" /* 0x6B66736D7470 */

/* Longest URI and application_name the door takes (the server cuts
 * application_name to 63 bytes anyway), and the longest profile text
 * written, as for the file store. */
#define KF_PG_MAX_URI 4096
#define KF_PG_MAX_APP 63
#define KF_PG_MAX_TEXT (1024 * 1024)
/* How long a timed-out call waits for its cancel request to be taken. */
#define KF_PG_CANCEL_WAIT_MS 200
/* The rollback of a failed transaction waits at most this long (or the
 * call's own timeout if shorter). */
#define KF_PG_ROLLBACK_WAIT_MS 1000

/* Why a call failed; kf_pg_kind_names holds each one's name, as Lua sees
 * it, in this order. */
typedef enum kf_pg_kind {
    KF_PG_OK,
    KF_PG_UNREACHABLE, /* refused, no route, timed out, starting or stopping, lost */
    KF_PG_AUTH,        /* the server refused the user or the password */
    KF_PG_CONFIG,      /* the URI is wrong, or the database or table is missing */
    KF_PG_OTHER,
    KF_PG_KIND_COUNT
} kf_pg_kind;

KF_HIDDEN extern const char *const kf_pg_kind_names[KF_PG_KIND_COUNT];

#define KF_PG_MSG_SIZE 640

typedef struct kf_pg_error {
    kf_pg_kind kind;
    char msg[KF_PG_MSG_SIZE];
} kf_pg_error;

/* One connection. All-zero is a closed one; kf_pg_free makes it so again. */
typedef struct kf_pg {
    PGconn *conn;            /* NULL once closed or lost */
    int lost;                /* closed because it failed, not by kf_pg_close */
    long timeout_ms;         /* every call's default: the connect timeout */
    long session_timeout_ms; /* statement_timeout in force in the session; 0: unknown */
    long local_timeout_ms;   /* the same for the transaction, when set in it; else 0 */
    /* Where it was connected, for info() and for every message, even after
     * the connection is gone. Never the password. */
    char *host, *port, *database, *user;
} kf_pg;

/* Each returns KF_PG_OK, or the kind with err's message set; a call that
 * times out or finds the connection lost closes it (kind unreachable).
 * Results are the caller's to PQclear. */
KF_HIDDEN kf_pg_kind kf_pg_connect(kf_pg *pg, const char *uri, long connect_timeout_ms,
                                   const char *application_name, kf_pg_error *err);
KF_HIDDEN kf_pg_kind kf_pg_ensure_table(kf_pg *pg, long timeout_ms, kf_pg_error *err);
/* *row: the row's (version, profile), or a result without rows. */
KF_HIDDEN kf_pg_kind kf_pg_load(kf_pg *pg, long timeout_ms, PGresult **row, kf_pg_error *err);
KF_HIDDEN kf_pg_kind kf_pg_begin_locked(kf_pg *pg, long timeout_ms, PGresult **row,
                                        kf_pg_error *err);
/* *version: the row's new version. */
KF_HIDDEN kf_pg_kind kf_pg_commit_write(kf_pg *pg, const char *text, long timeout_ms,
                                        long long *version, kf_pg_error *err);
KF_HIDDEN void kf_pg_rollback(kf_pg *pg);
KF_HIDDEN kf_pg_kind kf_pg_listen(kf_pg *pg, long timeout_ms, kf_pg_error *err);
/* Reads what the server has sent without waiting or sending: *notified
 * when a write was notified on the channel since the last poll (this
 * session's own included, once it listens). Returns
 * 0 when the connection is alive, -1 when it is gone (and now closed). */
KF_HIDDEN int kf_pg_poll(kf_pg *pg, int *notified);
/* 1 inside begin_locked's transaction, 0 outside, -1 without a connection. */
KF_HIDDEN int kf_pg_in_transaction(const kf_pg *pg);
/* The row of a load or begin_locked result: 1 with its text and version,
 * 0 when there is no row. */
KF_HIDDEN int kf_pg_row(const PGresult *row, const char **text, size_t *len,
                        long long *version);
KF_HIDDEN void kf_pg_close(kf_pg *pg);
/* Closes and frees what the connection holds. */
KF_HIDDEN void kf_pg_free(kf_pg *pg);

#endif
