/* The Lua side of pgstore.c: the C layer of the PostgreSQL store, which
 * the store's Lua backend builds on. Failures of the world (the server,
 * the network, the URI, the password) return nil, message, kind; only a
 * wrong argument, or a method called in the wrong state, raises.
 *
 *   core.pg_connect{ uri = "postgresql://user@host:port/database?...",
 *                    connect_timeout_ms = 10000, application_name = "kfsmtp" }
 *     --> conn | nil, message, kind
 *   uri: a postgresql:// or postgres:// URI of at most 4096 bytes, read
 *   by libpq (so PGPASSFILE, ~/.pgpass and the PG* variables apply). Its
 *   own parameters win over kfsmtp's TCP keepalives (10 s idle, then every
 *   5 s, 3 probes); client_encoding is always UTF8. connect_timeout_ms
 *   (1 .. 86400000, default 10000): the whole connection, in milliseconds;
 *   also every call's default timeout. application_name: at most 63
 *   bytes, default "kfsmtp" unless the URI names one.
 *
 * kind is one of
 *   "unreachable"  refused, no route, timed out, server starting up or
 *                  shutting down, no free connection slot; after a
 *                  connection was made: a call that timed out or found the
 *                  connection lost. The connection is then closed: connect
 *                  again.
 *   "auth"         the server refused the user or its password, or the
 *                  privilege a statement needs
 *   "config"       the URI is wrong, or names a database that does not
 *                  exist; the table is missing (call ensure_table)
 *   "other"        anything else
 * The message names the host, port and database (and user, when
 * connecting) and what to check. It never holds the password: it is built
 * from those names and kfsmtp's own words, never from the URI or libpq's
 * message. A URI libpq cannot read, or whose user information reads two
 * ways (a password with an unescaped '@' or '/'), is "config" naming
 * nothing.
 *
 * The methods (each checks its object; timeout_ms, 1 .. 86400000, is the
 * call's deadline, by default the connect timeout; a call past it closes
 * the connection and returns nil, message, "unreachable"):
 *   conn:ensure_table(timeout_ms) --> true | nil, message, kind
 *     creates table kfsmtp_profile if it does not exist (looked up first,
 *     so a user without CREATE may call it once the table is there).
 *     Raises inside begin_locked's transaction.
 *   conn:load(timeout_ms) --> text, version | false | nil, message, kind
 *     the profile's text and version (an integer), or false: no profile yet
 *   conn:begin_locked(timeout_ms) --> text | false, version | 0
 *                                     | nil, message, kind
 *     opens a transaction holding the writers' lock: the row as load
 *     gives it (false, 0 when there is none), and no other writer until
 *     commit_write or rollback. Raises inside a transaction.
 *   conn:commit_write(text, timeout_ms) --> version | nil, message, kind
 *     writes text (UTF-8 without NUL, at most 1 MiB) as the profile with
 *     the next version, notifies the listeners and commits; any failure
 *     rolls back. Raises outside begin_locked's transaction. A commit
 *     whose answer was lost ("unreachable") may have been made.
 *   conn:rollback() --> true
 *     ends begin_locked's transaction; never fails (at most 1 s)
 *   conn:listen(timeout_ms) --> true | nil, message, kind
 *     LISTEN kfsmtp_profile, for poll
 *   conn:poll() --> notified, alive
 *     never waits and sends nothing: whether a write was notified since
 *     the last poll (any connection's, this one's own too once it
 *     listens), and whether the connection is still there (false when the
 *     server or the network closed it; it is then closed). A listener
 *     that polls on every read costs the server nothing while the
 *     profile is unchanged. A stalled server looks alive; a silent
 *     network partition shows when the TCP keepalives give up (~25 s).
 *   conn:info() --> { host =, port = (an integer), database =, user = }
 *     where it is (or was) connected; never the password
 *   conn:close()  also __gc and, in Lua 5.4, __close
 *
 * Each Lua state makes its own metatable and every connection is its own
 * (an nginx worker thread has its own Lua VM); libpq is thread-safe per
 * connection. */
#include <stdlib.h>
#include <string.h>

#include "luafield.h"
#include "parts.h"
#include "pgstore.h"
#include "vocab.h"

#define LPG_MT "kfsmtp.pg"
#define LPG_RESULT_MT "kfsmtp.pg_result"

static int lpg_fail(lua_State *L, const kf_pg_error *err) {
    lua_pushnil(L);
    lua_pushstring(L, err->msg);
    lua_pushstring(L, kf_pg_kind_names[err->kind]);
    return 3;
}

static kf_pg *lpg_self(const kf_door *in) {
    return kf_arg_object(in, 1, "self", LPG_MT);
}

static long lpg_timeout(const kf_door *in, int arg, const kf_pg *pg) {
    return (long)kf_arg_int(in, arg, "timeout_ms", 1, KF_MAX_TIMEOUT_MS, pg->timeout_ms);
}

static int lpg_result_gc(lua_State *L) {
    PGresult **box = lua_touserdata(L, 1);
    PQclear(*box);
    *box = NULL;
    return 0;
}

/* A result in a userdata on the stack whose __gc clears it, so that a
 * memory error raised while its values are pushed leaks nothing. */
static PGresult **lpg_newresult(lua_State *L) {
    PGresult **box = kf_newuserdata(L, sizeof *box);
    *box = NULL;
    if (luaL_newmetatable(L, LPG_RESULT_MT)) {
        lua_pushcfunction(L, lpg_result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

/* text, version | false, 0 (with_zero) | false */
static int lpg_push_row(lua_State *L, PGresult **box, int with_zero) {
    const char *text;
    size_t len;
    long long version;
    int n = 1;
    if (kf_pg_row(*box, &text, &len, &version)) {
        lua_pushlstring(L, text, len);
        kf_pushint(L, version);
        n = 2;
    } else {
        lua_pushboolean(L, 0);
        if (with_zero) {
            kf_pushint(L, 0);
            n = 2;
        }
    }
    PQclear(*box);
    *box = NULL;
    return n;
}

static int lpg_ensure_table(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:ensure_table");
    kf_pg *pg = lpg_self(&in);
    long timeout_ms = lpg_timeout(&in, 2, pg);
    kf_pg_error err;
    /* Its own transaction would commit begin_locked's. */
    if (kf_pg_in_transaction(pg) == 1)
        return luaL_error(L, "kfsmtp.core.pg:ensure_table: inside a transaction: commit_write or rollback first");
    if (kf_pg_ensure_table(pg, timeout_ms, &err) != KF_PG_OK) return lpg_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int lpg_load(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:load");
    kf_pg *pg = lpg_self(&in);
    long timeout_ms = lpg_timeout(&in, 2, pg);
    PGresult **box = lpg_newresult(L);
    kf_pg_error err;
    if (kf_pg_load(pg, timeout_ms, box, &err) != KF_PG_OK) return lpg_fail(L, &err);
    return lpg_push_row(L, box, 0);
}

static int lpg_begin_locked(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:begin_locked");
    kf_pg *pg = lpg_self(&in);
    long timeout_ms = lpg_timeout(&in, 2, pg);
    PGresult **box;
    kf_pg_error err;
    if (kf_pg_in_transaction(pg) == 1)
        return luaL_error(L, "kfsmtp.core.pg:begin_locked: already in a transaction: commit_write or rollback first");
    box = lpg_newresult(L);
    if (kf_pg_begin_locked(pg, timeout_ms, box, &err) != KF_PG_OK) return lpg_fail(L, &err);
    return lpg_push_row(L, box, 1);
}

static int lpg_commit_write(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:commit_write");
    kf_pg *pg = lpg_self(&in);
    const char *text = kf_arg_text(&in, 2, "text", KF_PG_MAX_TEXT);
    long timeout_ms = lpg_timeout(&in, 3, pg);
    long long version;
    kf_pg_error err;
    /* Without a connection the call fails below as unreachable: the
     * transaction went with it, which is the world's doing, not the
     * caller's. */
    if (kf_pg_in_transaction(pg) == 0)
        return luaL_error(L, "kfsmtp.core.pg:commit_write: no transaction: call begin_locked first");
    if (kf_pg_commit_write(pg, text, timeout_ms, &version, &err) != KF_PG_OK)
        return lpg_fail(L, &err);
    kf_pushint(L, version);
    return 1;
}

static int lpg_rollback(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:rollback");
    kf_pg_rollback(lpg_self(&in));
    lua_pushboolean(L, 1);
    return 1;
}

static int lpg_listen(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:listen");
    kf_pg *pg = lpg_self(&in);
    kf_pg_error err;
    if (kf_pg_listen(pg, lpg_timeout(&in, 2, pg), &err) != KF_PG_OK) return lpg_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int lpg_poll(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:poll");
    int notified, alive = kf_pg_poll(lpg_self(&in), &notified) == 0;
    lua_pushboolean(L, notified);
    lua_pushboolean(L, alive);
    return 2;
}

static int lpg_info(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:info");
    kf_pg *pg = lpg_self(&in);
    char *end;
    long port;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, pg->host ? pg->host : "");
    lua_setfield(L, -2, "host");
    /* One port once connected: the one of the host it reached. */
    port = strtol(pg->port ? pg->port : "", &end, 10);
    if (pg->port && *pg->port && !*end) kf_pushint(L, port);
    else lua_pushstring(L, pg->port ? pg->port : "");
    lua_setfield(L, -2, "port");
    lua_pushstring(L, pg->database ? pg->database : "");
    lua_setfield(L, -2, "database");
    lua_pushstring(L, pg->user ? pg->user : "");
    lua_setfield(L, -2, "user");
    return 1;
}

static int lpg_close(lua_State *L) {
    kf_door in = kf_door_args(L, "pg:close");
    kf_pg_close(lpg_self(&in));
    return 0;
}

static int lpg_gc(lua_State *L) {
    kf_pg *pg = luaL_testudata(L, 1, LPG_MT);
    if (pg) kf_pg_free(pg);
    return 0;
}

static const luaL_Reg lpg_methods[] = {
    {"ensure_table", lpg_ensure_table},
    {"load", lpg_load},
    {"begin_locked", lpg_begin_locked},
    {"commit_write", lpg_commit_write},
    {"rollback", lpg_rollback},
    {"listen", lpg_listen},
    {"poll", lpg_poll},
    {"info", lpg_info},
    {"close", lpg_close},
    {NULL, NULL}};

static int lpg_connect(lua_State *L) {
    kf_door in = kf_door_fields(L, "pg_connect", 3);
    const char *uri = kf_field_text(&in, "uri", KF_PG_MAX_URI);
    long timeout_ms = (long)kf_field_int(&in, "connect_timeout_ms", 1, KF_MAX_TIMEOUT_MS,
                                         KF_DEFAULT_CONNECT_TIMEOUT_MS);
    const char *app = kf_field_opttext(&in, "application_name", KF_PG_MAX_APP);
    kf_pg_error err;
    kf_pg *pg = kf_newuserdata(L, sizeof *pg);
    memset(pg, 0, sizeof *pg);
    /* On before connecting: whatever happens next, __gc frees it. */
    if (luaL_newmetatable(L, LPG_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, lpg_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lpg_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lpg_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    if (kf_pg_connect(pg, uri, timeout_ms, app, &err) != KF_PG_OK) return lpg_fail(L, &err);
    return 1;
}

const luaL_Reg kf_pgstore_functions[] = {
    {"pg_connect", lpg_connect},
    {NULL, NULL}};
