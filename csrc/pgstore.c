/* The PostgreSQL store's libpq work: one table, one row, one channel.
 *
 *   CREATE TABLE IF NOT EXISTS kfsmtp_profile (id integer PRIMARY KEY,
 *     version bigint NOT NULL, profile text NOT NULL,
 *     updated_at timestamptz NOT NULL DEFAULT now())
 *
 * The profile is row 1. Each write makes version one more than the last
 * (1 for the first) and notifies channel kfsmtp_profile with the new
 * version as text, in the writer's transaction, so a listener hears of a
 * write only once it is committed. Writers serialise on a transaction-
 * scoped advisory lock (KF_PG_LOCK_KEY) taken before the row is read FOR
 * UPDATE: while the row does not exist yet there is nothing to lock, and
 * two first writers must still not both see "no row". Readers take no
 * lock, and "no row" stays "no row" (never an empty text) until a write.
 *
 * Nothing here blocks past the call's deadline. Connecting is
 * PQconnectStartParams and PQconnectPoll under poll(2) (libpq's own
 * connect_timeout counts whole seconds, at least 2, and PQconnectPoll
 * ignores it); a query is PQsendQueryParams in non-blocking mode, then
 * poll(2) until its results are in. A deadline that passes closes the
 * connection: a server that stopped answering (a stopped process, a
 * network that drops packets) would otherwise hold the caller, an nginx
 * worker thread, for as long as it stays stopped. Before each call the
 * session's statement_timeout is made the call's timeout (a round trip
 * only when it changes), so a server that is alive gives up the
 * statement by itself too, a lock wait included. With libpq 17 or later
 * a late call also sends a cancel request, waiting for it at most
 * KF_PG_CANCEL_WAIT_MS. Older libpq has only PQcancel, which waits for the
 * server's answer without any limit (a stopped server never gives it),
 * so there the server's statement_timeout alone stops the statement.
 * libpq's getaddrinfo of a host name, in PQconnectStartParams, is the one
 * wait no deadline bounds: give an address where that matters.
 *
 * Every value goes as a parameter ($1, ...); the SQL text holds only this
 * file's constants. Messages are built here from the host, port, database
 * and user and from reasons of our own, chosen by SQLSTATE or by libpq's
 * words: never libpq's message, nor the URI, either of which may hold the
 * password, and any trace of the password is masked all the same.
 *
 * A kf_pg belongs to one thread at a time (libpq allows one connection
 * per thread); nothing here is shared between connections. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "pgstore.h"

const char *const kf_pg_kind_names[KF_PG_KIND_COUNT] = {"ok", "unreachable", "auth", "config",
                                                       "other"};

#define PG_SQL_SET_TIMEOUT "SELECT set_config('statement_timeout', $1, $2::boolean)"
#define PG_SQL_EXISTS "SELECT to_regclass($1) IS NOT NULL"
#define PG_SQL_CREATE                                                                  \
    "CREATE TABLE IF NOT EXISTS " KF_PG_TABLE " (id integer PRIMARY KEY, "             \
    "version bigint NOT NULL, profile text NOT NULL, "                                 \
    "updated_at timestamptz NOT NULL DEFAULT now())"
#define PG_SQL_LOCK "SELECT pg_advisory_xact_lock($1::bigint)"
#define PG_SQL_LOAD "SELECT version, profile FROM " KF_PG_TABLE " WHERE id = " KF_PG_ROW_ID
/* The upsert and its notification in one statement, one round trip. */
#define PG_SQL_WRITE                                                                   \
    "WITH w AS (INSERT INTO " KF_PG_TABLE " (id, version, profile) VALUES ("           \
    KF_PG_ROW_ID ", 1, $1) ON CONFLICT (id) DO UPDATE SET profile = EXCLUDED.profile, " \
    "version = " KF_PG_TABLE ".version + 1, updated_at = now() RETURNING version) "     \
    "SELECT version, pg_notify($2, version::text) FROM w"

/* What the passwords of a message are masked against: shorter ones would
 * mask ordinary words, and the message holds no password to begin with. */
#define PG_MASK_MIN 4

/* One call: its name in messages, its timeout and its deadline. */
typedef struct pg_call {
    const char *what;
    long timeout_ms;
    double deadline;
} pg_call;

static pg_call pg_start(const char *what, const kf_pg *pg, long timeout_ms) {
    pg_call c;
    c.what = what;
    c.timeout_ms = timeout_ms > 0 ? timeout_ms : pg->timeout_ms;
    c.deadline = kf_clock_ms() + (double)c.timeout_ms;
    return c;
}

static const char *pg_or(const char *a, const char *b) {
    return a && *a ? a : b;
}

/* ---- messages ---- */

typedef struct pg_text {
    char *s;
    size_t size, len;
} pg_text;

static void __attribute__((format(printf, 2, 3))) pg_put(pg_text *t, const char *fmt, ...) {
    va_list ap;
    int n;
    if (t->len + 1 >= t->size) return;
    va_start(ap, fmt);
    n = vsnprintf(t->s + t->len, t->size - t->len, fmt, ap);
    va_end(ap);
    if (n > 0) t->len += (size_t)n;
    if (t->len >= t->size) t->len = t->size - 1;
}

/* s in double quotes with control bytes, quotes and backslashes escaped:
 * the message stays one line whatever the operator's URI holds. */
static void pg_quote(pg_text *t, const char *s) {
    pg_put(t, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) pg_put(t, "\\x%02x", c);
        else if (c == '"' || c == '\\') pg_put(t, "\\%c", c);
        else pg_put(t, "%c", c);
    }
    pg_put(t, "\"");
}

/* host "H", port P, database "D" (and user "U") */
static void pg_where(pg_text *t, const char *host, const char *port, const char *db,
                     const char *user) {
    pg_put(t, "host ");
    pg_quote(t, pg_or(host, "(default)"));
    pg_put(t, ", port ");
    pg_quote(t, pg_or(port, "(default)"));
    pg_put(t, ", database ");
    pg_quote(t, pg_or(db, "(default)"));
    if (user) {
        pg_put(t, ", user ");
        pg_quote(t, pg_or(user, "(default)"));
    }
}

static void pg_mask(char *msg, const char *secret) {
    size_t n;
    char *p;
    if (!secret || (n = strlen(secret)) < PG_MASK_MIN) return;
    while ((p = strstr(msg, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
}

/* ---- waiting ---- */

/* Waits until fd is ready for events: 1 ready, 0 the deadline passed, -1
 * no socket or poll failed. */
static int pg_wait(int fd, short events, double deadline) {
    if (fd < 0) return -1;
    for (;;) {
        struct pollfd p;
        double left = deadline - kf_clock_ms();
        int rc;
        if (left <= 0) return 0;
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        /* +1: poll would wake a fraction of a millisecond early, spin. */
        rc = poll(&p, 1, left > 1e9 ? 1000000000 : (int)left + 1);
        if (rc > 0) return 1;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

/* Notices (CREATE TABLE IF NOT EXISTS's "skipping", the FATAL a server
 * sends before it closes an idle connection) would go to stderr, nginx's
 * error log, by default. What matters of them reaches the caller through
 * the results. */
static void pg_quiet(void *arg, const PGresult *res) {
    (void)arg, (void)res;
}

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/* A cancel request that waits for the server at most KF_PG_CANCEL_WAIT_MS. */
static void pg_cancel(PGconn *c) {
    PGcancelConn *cc = PQcancelCreate(c);
    double deadline = kf_clock_ms() + KF_PG_CANCEL_WAIT_MS;
    if (!cc) return;
    if (PQcancelStart(cc)) {
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED &&
               pg_wait(PQcancelSocket(cc), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                       deadline) > 0)
            st = PQcancelPoll(cc);
    }
    PQcancelFinish(cc);
}
#else
static void pg_cancel(PGconn *c) {
    (void)c; /* see the top of the file */
}
#endif

/* ---- connecting ---- */

typedef struct pg_reason {
    const char *key;
    kf_pg_kind kind;
    const char *text;
} pg_reason;

/* The server's refusals, by SQLSTATE or by its two-character class. */
static const pg_reason pg_refusals[] = {
    {"28P01", KF_PG_AUTH, "password authentication failed: check the user and its password (the URI's, or the PGPASSFILE's)"},
    {"28000", KF_PG_AUTH, "the server refused this user (no pg_hba.conf entry for it, or a role that may not log in): check the user and pg_hba.conf"},
    {"42501", KF_PG_AUTH, "the user may not connect to this database: GRANT CONNECT ON DATABASE to it"},
    {"3D000", KF_PG_CONFIG, "the database does not exist: check the database name in the URI"},
    {"57P03", KF_PG_UNREACHABLE, "the server is starting up, shutting down or recovering: try again shortly"},
    {"53300", KF_PG_UNREACHABLE, "the server has no free connection slot: check max_connections and who holds them"},
    {"57", KF_PG_UNREACHABLE, "the server is shutting down: try again once it is back"},
    {"53", KF_PG_UNREACHABLE, "the server is out of resources: check its log"},
    {"08", KF_PG_UNREACHABLE, "the server broke off the connection: check its log"},
    {"28", KF_PG_AUTH, "the server refused the login: check the user, the password and pg_hba.conf"},
    {NULL, KF_PG_OTHER, NULL}};

/* libpq's own words when no server refused: English, as libpq writes them
 * in the C locale, which Lua and nginx keep. */
static const pg_reason pg_failures[] = {
    {"Connection refused", KF_PG_UNREACHABLE, "connection refused: is PostgreSQL running there, listening on that address and port (listen_addresses, port)?"},
    {"No such file or directory", KF_PG_UNREACHABLE, "no server socket there: is PostgreSQL running, and is that its unix_socket_directories?"},
    {"could not translate host name", KF_PG_UNREACHABLE, "the host name does not resolve: check the host"},
    {"No route to host", KF_PG_UNREACHABLE, "no route to the host: check the host and the network"},
    {"Network is unreachable", KF_PG_UNREACHABLE, "the network is unreachable: check the host and the network"},
    {"timed out", KF_PG_UNREACHABLE, "the connection timed out: check the host, the port and any firewall between"},
    {"server closed the connection", KF_PG_UNREACHABLE, "the server closed the connection: check its log"},
    {"Permission denied", KF_PG_CONFIG, "the server's socket may not be opened by this process: check its permissions"},
    {"SSL", KF_PG_OTHER, "TLS failed: check sslmode and the server's TLS settings"},
    {"GSSAPI", KF_PG_OTHER, "GSSAPI failed: check gssencmode and the Kerberos settings"},
    {NULL, KF_PG_OTHER, NULL}};

/* The last SQLSTATE in a connection's error text. PQERRORS_SQLSTATE
 * makes each error the server sent "SEVERITY:  XXXXX\n", and nothing
 * else of its words. */
static int pg_sqlstate(const char *msg, char state[6]) {
    const char *p = msg;
    int found = 0;
    while ((p = strstr(p, ":  ")) != NULL) {
        int i;
        p += 3;
        for (i = 0; i < 5 && ((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'Z')); i++)
            ;
        if (i == 5 && (p[5] == '\n' || p[5] == '\0')) {
            memcpy(state, p, 5);
            state[5] = '\0';
            found = 1;
        }
    }
    return found;
}

/* Why the connection failed, from what libpq knows; *state gets the
 * server's SQLSTATE, if it sent one. before_network: it failed before
 * PQconnectStartParams returned. */
static kf_pg_kind pg_why(PGconn *c, int before_network, const char **reason, char state[6]) {
    const char *msg = pg_or(PQerrorMessage(c), "");
    const pg_reason *r;
    state[0] = '\0';
    if (PQconnectionNeedsPassword(c)) {
        *reason = "the server asks for a password and none was given: put it in the URI or in a PGPASSFILE";
        return KF_PG_AUTH;
    }
    if (pg_sqlstate(msg, state)) {
        for (r = pg_refusals; r->key; r++)
            if (strncmp(state, r->key, strlen(r->key)) == 0) {
                *reason = r->text;
                return r->kind;
            }
        *reason = "the server refused the connection: check its log";
        return KF_PG_OTHER;
    }
    for (r = pg_failures; r->key; r++)
        if (strstr(msg, r->key)) {
            *reason = r->text;
            return r->kind;
        }
    /* libpq names the server in every failure to reach it; without that,
     * it refused a parameter before trying. */
    if (before_network && !strstr(msg, "connection to server")) {
        *reason = "libpq refused the URI's parameters: check them (port, sslmode, ...)";
        return KF_PG_CONFIG;
    }
    *reason = "the connection failed for a reason kfsmtp does not know: try psql with the same URI";
    return KF_PG_OTHER;
}

static const char *pg_option(const PQconninfoOption *o, const char *key) {
    for (; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0) return o->val;
    return NULL;
}

static kf_pg_kind pg_connect_fail(kf_pg_error *err, kf_pg_kind kind, PGconn *c,
                                  const PQconninfoOption *opts, const char *reason,
                                  const char *state) {
    pg_text t = {err->msg, sizeof err->msg, 0};
    err->msg[0] = '\0';
    pg_put(&t, "cannot connect to PostgreSQL");
    /* Without a URI libpq could read there is nothing to name. */
    if (c || opts) {
        pg_put(&t, " (");
        pg_where(&t, pg_or(c ? PQhost(c) : NULL, pg_option(opts, "host")),
                 pg_or(c ? PQport(c) : NULL, pg_option(opts, "port")),
                 pg_or(c ? PQdb(c) : NULL, pg_option(opts, "dbname")),
                 pg_or(c ? PQuser(c) : NULL, pg_option(opts, "user")));
        pg_put(&t, ")");
    }
    pg_put(&t, ": %s", reason);
    if (state && state[0]) pg_put(&t, " (SQLSTATE %s)", state);
    pg_mask(err->msg, pg_option(opts, "password"));
    if (c) pg_mask(err->msg, PQpass(c));
    err->kind = kind;
    return kind;
}

static int pg_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Whether raw[0..end), percent-decoded, is exactly s. */
static int pg_decodes_to(const char *raw, const char *end, const char *s) {
    while (raw < end) {
        int c = (unsigned char)*raw++;
        if (c == '%' && end - raw >= 2 && pg_hex(raw[0]) >= 0 && pg_hex(raw[1]) >= 0) {
            c = pg_hex(raw[0]) * 16 + pg_hex(raw[1]);
            raw += 2;
        }
        if (*s == '\0' || (unsigned char)*s != c) return 0;
        s++;
    }
    return *s == '\0';
}

/* A password with an unescaped '@' or '/' ("u:p@ss@host/db") reads two
 * ways: libpq takes its first part as the password and the rest as the
 * host, port or database, which a message would then name. So the
 * password the URI seems to hold (from the first ':' of its user
 * information to its last '@' before any query) must be the one libpq
 * read. */
static int pg_ambiguous(const char *uri, const char *password) {
    const char *start = strstr(uri, "://"), *end, *at = NULL, *colon, *p;
    if (!start) return 0;
    start += 3;
    end = start + strcspn(start, "?");
    for (p = start; p < end; p++)
        if (*p == '@') at = p;
    if (!at) return 0;
    colon = memchr(start, ':', (size_t)(at - start));
    if (!colon) return 0;
    return !pg_decodes_to(colon + 1, at, password ? password : "");
}

static char *pg_strdup(const char *s) {
    return strdup(s ? s : "");
}

kf_pg_kind kf_pg_connect(kf_pg *pg, const char *uri, long connect_timeout_ms,
                         const char *application_name, kf_pg_error *err) {
    /* Ours first, so the URI's own parameters win over them; the URI
     * (dbname, expanded); then what the caller asked for by name, and
     * UTF-8, which the profile is, whatever the database's encoding. */
    const char *keys[10] = {"keepalives", "keepalives_idle", "keepalives_interval",
                            "keepalives_count", "fallback_application_name", "dbname",
                            "client_encoding"};
    const char *values[10] = {"1", "10", "5", "3", "kfsmtp", uri, "UTF8"};
    char *parse_error = NULL, state[6];
    double deadline = kf_clock_ms() + (double)connect_timeout_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    PQconninfoOption *opts;
    const char *reason;
    kf_pg_kind kind;
    PGconn *c;
    if (application_name) {
        keys[7] = "application_name";
        values[7] = application_name;
    }
    err->kind = KF_PG_OK;
    if (strncmp(uri, "postgresql://", 13) != 0 && strncmp(uri, "postgres://", 11) != 0)
        return pg_connect_fail(err, KF_PG_CONFIG, NULL, NULL, "the URI must start with postgresql:// (postgresql://user@host:port/database)", NULL);
    opts = PQconninfoParse(uri, &parse_error);
    if (!opts) {
        /* libpq's words quote the part it did not understand: not used. */
        if (!parse_error)
            return pg_connect_fail(err, KF_PG_OTHER, NULL, NULL, "out of memory", NULL);
        PQfreemem(parse_error);
        return pg_connect_fail(err, KF_PG_CONFIG, NULL, NULL, "the URI is not a valid PostgreSQL URI: write it as postgresql://user@host:port/database?parameter=value", NULL);
    }
    if (pg_ambiguous(uri, pg_option(opts, "password"))) {
        PQconninfoFree(opts);
        return pg_connect_fail(err, KF_PG_CONFIG, NULL, NULL, "the URI's user name or password holds a character it must percent-encode: '@' as %40, ':' as %3A, '/' as %2F, '?' as %3F", NULL);
    }
    c = PQconnectStartParams(keys, values, 1);
    if (!c) {
        kind = pg_connect_fail(err, KF_PG_OTHER, NULL, opts, "out of memory", NULL);
        PQconninfoFree(opts);
        return kind;
    }
    /* Set before the first PQconnectPoll reads the server's answer. */
    PQsetErrorVerbosity(c, PQERRORS_SQLSTATE);
    PQsetNoticeReceiver(c, pg_quiet, NULL);
    if (PQstatus(c) == CONNECTION_BAD) {
        kind = pg_why(c, 1, &reason, state);
        goto fail;
    }
    /* PQconnectPoll's own rule: wait as though it had said "writing". */
    while (st != PGRES_POLLING_OK) {
        int ready;
        if (st == PGRES_POLLING_FAILED) {
            kind = pg_why(c, 0, &reason, state);
            goto fail;
        }
        ready = pg_wait(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (ready == 0) {
            char late[160];
            snprintf(late, sizeof late, "no answer within %ld ms: is the host reachable, the port right and the server not stalled?", connect_timeout_ms);
            kind = pg_connect_fail(err, KF_PG_UNREACHABLE, c, opts, late, NULL);
            PQfinish(c);
            PQconninfoFree(opts);
            return kind;
        }
        if (ready < 0) {
            kind = pg_why(c, 0, &reason, state);
            goto fail;
        }
        st = PQconnectPoll(c);
    }
    PQconninfoFree(opts);
    PQsetErrorVerbosity(c, PQERRORS_DEFAULT);
    pg->host = pg_strdup(PQhost(c));
    pg->port = pg_strdup(PQport(c));
    pg->database = pg_strdup(PQdb(c));
    pg->user = pg_strdup(PQuser(c));
    pg->conn = c;
    pg->timeout_ms = connect_timeout_ms;
    /* Non-blocking, so that sending a long profile waits under poll too. */
    if (!pg->host || !pg->port || !pg->database || !pg->user || PQsetnonblocking(c, 1) != 0) {
        kf_pg_free(pg);
        return pg_connect_fail(err, KF_PG_OTHER, NULL, NULL, "out of memory", NULL);
    }
    return KF_PG_OK;
fail:
    pg_connect_fail(err, kind, c, opts, reason, state);
    PQfinish(c);
    PQconninfoFree(opts);
    return kind;
}

/* ---- queries ---- */

static kf_pg_kind __attribute__((format(printf, 5, 6)))
pg_fail(kf_pg *pg, const pg_call *call, kf_pg_error *err, kf_pg_kind kind, const char *fmt, ...) {
    pg_text t = {err->msg, sizeof err->msg, 0};
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    err->msg[0] = '\0';
    pg_put(&t, "PostgreSQL (");
    pg_where(&t, pg->host, pg->port, pg->database, NULL);
    pg_put(&t, "): %s failed: %s", call->what, reason);
    if (pg->conn) pg_mask(err->msg, PQpass(pg->conn));
    err->kind = kind;
    return kind;
}

/* Closes a connection that was lost or left waiting; the object keeps
 * where it was connected, for info and for messages. */
static void pg_drop(kf_pg *pg) {
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
    pg->lost = 1;
    pg->session_timeout_ms = pg->local_timeout_ms = 0;
}

static kf_pg_kind pg_lost(kf_pg *pg, const pg_call *call, kf_pg_error *err) {
    kf_pg_kind k = pg_fail(pg, call, err, KF_PG_UNREACHABLE, "the connection was lost (the server stopped, or the network failed): connect again");
    pg_drop(pg);
    return k;
}

static kf_pg_kind pg_late(kf_pg *pg, const pg_call *call, kf_pg_error *err) {
    kf_pg_kind k = pg_fail(pg, call, err, KF_PG_UNREACHABLE, "no answer within %ld ms, so the connection is closed: is the server stalled, or overloaded, or does another writer hold the lock?", call->timeout_ms);
    if (pg->conn) pg_cancel(pg->conn);
    pg_drop(pg);
    return k;
}

/* Whether the connection can take a query; if not, err says why. */
static int pg_usable(kf_pg *pg, const pg_call *call, kf_pg_error *err) {
    if (!pg->conn) {
        pg_fail(pg, call, err, KF_PG_UNREACHABLE, pg->lost ? "the connection was lost earlier: connect again" : "the connection is closed: connect again");
        return 0;
    }
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        pg_lost(pg, call, err);
        return 0;
    }
    return 1;
}

/* What a statement's error means. A statement the server's own
 * statement_timeout stopped is as late as one the deadline stopped. */
static kf_pg_kind pg_error(kf_pg *pg, const pg_call *call, const PGresult *res, kf_pg_error *err) {
    const char *state = pg_or(PQresultErrorField(res, PG_DIAG_SQLSTATE), "");
    const char *primary = pg_or(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), "(no message)");
    kf_pg_kind kind = KF_PG_OTHER;
    if (PQstatus(pg->conn) != CONNECTION_OK) return pg_lost(pg, call, err);
    if (strcmp(state, "57014") == 0) return pg_late(pg, call, err);
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 || strncmp(state, "53", 2) == 0)
        kind = KF_PG_UNREACHABLE;
    else if (strncmp(state, "28", 2) == 0 || strcmp(state, "42501") == 0)
        kind = KF_PG_AUTH;
    else if (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0 ||
             strcmp(state, "3F000") == 0 || strcmp(state, "3D000") == 0)
        kind = KF_PG_CONFIG;
    /* The server's words about its own objects: no value of ours is ever
     * in them (the profile is a parameter, stored as it is). */
    pg_fail(pg, call, err, kind, "%.240s (SQLSTATE %s)", primary, state);
    if (kind == KF_PG_UNREACHABLE) pg_drop(pg);
    return kind;
}

/* Runs one statement within the call's deadline; *out gets its result. */
static kf_pg_kind pg_exec(kf_pg *pg, const pg_call *call, const char *sql, int n,
                          const char *const *values, PGresult **out, kf_pg_error *err) {
    PGconn *c = pg->conn;
    PGresult *res = NULL, *r;
    kf_pg_kind kind;
    int flushed;
    *out = NULL;
    if (!PQsendQueryParams(c, sql, n, NULL, values, NULL, NULL, 0)) return pg_lost(pg, call, err);
    /* Reading while the rest is sent: a server answering an earlier
     * message must not wait on us while we wait on it. */
    while ((flushed = PQflush(c)) == 1) {
        int ready = pg_wait(PQsocket(c), POLLIN | POLLOUT, call->deadline);
        if (ready == 0) return pg_late(pg, call, err);
        if (ready < 0 || !PQconsumeInput(c)) return pg_lost(pg, call, err);
    }
    if (flushed < 0) return pg_lost(pg, call, err);
    for (;;) {
        while (PQisBusy(c)) {
            int ready = pg_wait(PQsocket(c), POLLIN, call->deadline);
            if (ready == 0 || ready < 0 || !PQconsumeInput(c)) {
                PQclear(res);
                return ready == 0 ? pg_late(pg, call, err) : pg_lost(pg, call, err);
            }
        }
        r = PQgetResult(c);
        if (!r) break;
        /* One statement: one result; any other is only cleared. */
        if (!res) res = r;
        else PQclear(r);
    }
    if (!res) return pg_lost(pg, call, err);
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        *out = res;
        return KF_PG_OK;
    default:
        kind = pg_error(pg, call, res, err);
        PQclear(res);
        return kind;
    }
}

/* pg_exec for a statement whose result is not needed. */
static kf_pg_kind pg_run(kf_pg *pg, const pg_call *call, const char *sql, int n,
                         const char *const *values, kf_pg_error *err) {
    PGresult *res;
    kf_pg_kind kind = pg_exec(pg, call, sql, n, values, &res, err);
    PQclear(res);
    return kind;
}

int kf_pg_in_transaction(const kf_pg *pg) {
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) return -1;
    return PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
}

/* Makes the server's statement_timeout the call's: for the session
 * outside a transaction, for the transaction inside one (set_config's
 * is_local), and only when it is not that already. */
static kf_pg_kind pg_timeout(kf_pg *pg, const pg_call *call, kf_pg_error *err) {
    int local = kf_pg_in_transaction(pg) == 1;
    long now = local && pg->local_timeout_ms ? pg->local_timeout_ms : pg->session_timeout_ms;
    char ms[24];
    const char *values[2];
    kf_pg_kind kind;
    if (now == call->timeout_ms) return KF_PG_OK;
    snprintf(ms, sizeof ms, "%ld", call->timeout_ms);
    values[0] = ms;
    values[1] = local ? "true" : "false";
    kind = pg_run(pg, call, PG_SQL_SET_TIMEOUT, 2, values, err);
    if (kind != KF_PG_OK) return kind;
    if (local) pg->local_timeout_ms = call->timeout_ms;
    else pg->session_timeout_ms = call->timeout_ms;
    return KF_PG_OK;
}

/* Ends a failed transaction, if the connection is still there to end it. */
static void pg_abort(kf_pg *pg, long timeout_ms) {
    pg_call call;
    kf_pg_error ignored;
    pg->local_timeout_ms = 0;
    if (kf_pg_in_transaction(pg) != 1) return;
    call = pg_start("rollback", pg, timeout_ms < KF_PG_ROLLBACK_WAIT_MS ? timeout_ms : KF_PG_ROLLBACK_WAIT_MS);
    pg_run(pg, &call, "ROLLBACK", 0, NULL, &ignored);
}

/* Ends a transaction with COMMIT, which the server answers with ROLLBACK
 * (and no error) for one that had failed. */
static kf_pg_kind pg_commit(kf_pg *pg, const pg_call *call, kf_pg_error *err) {
    PGresult *res;
    kf_pg_kind kind = pg_exec(pg, call, "COMMIT", 0, NULL, &res, err);
    int committed = kind == KF_PG_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    PQclear(res);
    pg->local_timeout_ms = 0;
    if (kind != KF_PG_OK) return kind;
    if (!committed) return pg_fail(pg, call, err, KF_PG_OTHER, "the server rolled the transaction back");
    return KF_PG_OK;
}

kf_pg_kind kf_pg_ensure_table(kf_pg *pg, long timeout_ms, kf_pg_error *err) {
    pg_call call = pg_start("ensure_table", pg, timeout_ms);
    const char *values[1];
    PGresult *res;
    kf_pg_kind kind;
    int exists;
    if (!pg_usable(pg, &call, err)) return err->kind;
    if ((kind = pg_timeout(pg, &call, err)) != KF_PG_OK) return kind;
    /* Looked up first: a user who may use the table but not create tables
     * would get "permission denied" from CREATE TABLE IF NOT EXISTS. */
    values[0] = KF_PG_TABLE;
    if ((kind = pg_exec(pg, &call, PG_SQL_EXISTS, 1, values, &res, err)) != KF_PG_OK) return kind;
    exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (exists) return KF_PG_OK;
    /* Two first starts at once would both create, and one fail on the
     * catalog's unique index: the lock makes the second find it made. */
    values[0] = KF_PG_LOCK_KEY;
    if ((kind = pg_run(pg, &call, "BEGIN", 0, NULL, err)) != KF_PG_OK ||
        (kind = pg_run(pg, &call, PG_SQL_LOCK, 1, values, err)) != KF_PG_OK ||
        (kind = pg_run(pg, &call, PG_SQL_CREATE, 0, NULL, err)) != KF_PG_OK ||
        (kind = pg_commit(pg, &call, err)) != KF_PG_OK) {
        pg_abort(pg, call.timeout_ms);
        return kind;
    }
    return KF_PG_OK;
}

kf_pg_kind kf_pg_load(kf_pg *pg, long timeout_ms, PGresult **row, kf_pg_error *err) {
    pg_call call = pg_start("load", pg, timeout_ms);
    kf_pg_kind kind;
    *row = NULL;
    if (!pg_usable(pg, &call, err)) return err->kind;
    if ((kind = pg_timeout(pg, &call, err)) != KF_PG_OK) return kind;
    return pg_exec(pg, &call, PG_SQL_LOAD, 0, NULL, row, err);
}

kf_pg_kind kf_pg_begin_locked(kf_pg *pg, long timeout_ms, PGresult **row, kf_pg_error *err) {
    pg_call call = pg_start("begin_locked", pg, timeout_ms);
    const char *values[1] = {KF_PG_LOCK_KEY};
    kf_pg_kind kind;
    *row = NULL;
    if (!pg_usable(pg, &call, err)) return err->kind;
    /* Set for the session before BEGIN: the transaction's statements,
     * the lock wait above all, run under it. */
    if ((kind = pg_timeout(pg, &call, err)) != KF_PG_OK) return kind;
    if ((kind = pg_run(pg, &call, "BEGIN", 0, NULL, err)) != KF_PG_OK ||
        (kind = pg_run(pg, &call, PG_SQL_LOCK, 1, values, err)) != KF_PG_OK ||
        (kind = pg_exec(pg, &call, PG_SQL_LOAD " FOR UPDATE", 0, NULL, row, err)) != KF_PG_OK) {
        pg_abort(pg, call.timeout_ms);
        return kind;
    }
    return KF_PG_OK;
}

kf_pg_kind kf_pg_commit_write(kf_pg *pg, const char *text, long timeout_ms, long long *version,
                              kf_pg_error *err) {
    pg_call call = pg_start("commit_write", pg, timeout_ms);
    const char *values[2] = {text, KF_PG_CHANNEL};
    PGresult *res;
    kf_pg_kind kind;
    *version = 0;
    if (!pg_usable(pg, &call, err)) return err->kind;
    if (PQtransactionStatus(pg->conn) == PQTRANS_INERROR) {
        pg_abort(pg, call.timeout_ms);
        return pg_fail(pg, &call, err, KF_PG_OTHER, "the transaction had failed: begin_locked again");
    }
    if ((kind = pg_timeout(pg, &call, err)) != KF_PG_OK ||
        (kind = pg_exec(pg, &call, PG_SQL_WRITE, 2, values, &res, err)) != KF_PG_OK) {
        pg_abort(pg, call.timeout_ms);
        return kind;
    }
    if (PQntuples(res) == 1) *version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    /* A commit whose answer is lost may have been made: the caller learns
     * which from the version the next load reads. */
    if ((kind = pg_commit(pg, &call, err)) != KF_PG_OK) {
        pg_abort(pg, call.timeout_ms);
        return kind;
    }
    return KF_PG_OK;
}

void kf_pg_rollback(kf_pg *pg) {
    pg_abort(pg, pg->timeout_ms);
}

kf_pg_kind kf_pg_listen(kf_pg *pg, long timeout_ms, kf_pg_error *err) {
    pg_call call = pg_start("listen", pg, timeout_ms);
    kf_pg_kind kind;
    if (!pg_usable(pg, &call, err)) return err->kind;
    if ((kind = pg_timeout(pg, &call, err)) != KF_PG_OK) return kind;
    return pg_run(pg, &call, "LISTEN " KF_PG_CHANNEL, 0, NULL, err);
}

/* At most this many reads per poll: a flood of notifications waits for
 * the next poll rather than hold this one. */
#define PG_POLL_ROUNDS 16

int kf_pg_poll(kf_pg *pg, int *notified) {
    int rounds;
    *notified = 0;
    if (!pg->conn) return -1;
    for (rounds = 0; rounds < PG_POLL_ROUNDS; rounds++) {
        struct pollfd p;
        PGnotify *n;
        if (!PQconsumeInput(pg->conn)) break;
        /* This session's own writes count too: a caller that reloads on
         * news, rather than keep what it wrote, stays right. */
        while ((n = PQnotifies(pg->conn)) != NULL) {
            if (strcmp(n->relname, KF_PG_CHANNEL) == 0) *notified = 1;
            PQfreemem(n);
        }
        if (PQstatus(pg->conn) != CONNECTION_OK) break;
        /* More to read, or the end of the connection: read again, so a
         * server that said goodbye and closed is seen closed now. */
        p.fd = PQsocket(pg->conn);
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 0) <= 0) return 0;
    }
    if (rounds == PG_POLL_ROUNDS) return 0;
    pg_drop(pg);
    return -1;
}

int kf_pg_row(const PGresult *row, const char **text, size_t *len, long long *version) {
    if (!row || PQntuples(row) < 1 || PQnfields(row) < 2) return 0;
    *version = strtoll(PQgetvalue(row, 0, 0), NULL, 10);
    *text = PQgetvalue(row, 0, 1);
    *len = (size_t)PQgetlength(row, 0, 1);
    return 1;
}

void kf_pg_close(kf_pg *pg) {
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
    pg->session_timeout_ms = pg->local_timeout_ms = 0;
}

void kf_pg_free(kf_pg *pg) {
    kf_pg_close(pg);
    free(pg->host);
    free(pg->port);
    free(pg->database);
    free(pg->user);
    pg->host = pg->port = pg->database = pg->user = NULL;
}
