/* SMTP test delivery: libcurl speaks SMTP and TLS; this file sets it up for
 * one fresh connection per test, watches the dialog through the debug
 * callback (stage reached, replies, redacted transcript, per-stage timing,
 * TLS facts) and classifies where a failure happened. Callbacks only write
 * into C buffers: nothing here can raise a Lua error inside libcurl. */
#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "delivery.h"

static void dlv_reset(kf_delivery *d) {
    kf_buf *bufs[] = {&d->transcript, &d->greeting, &d->reply, &d->final_reply, &d->ehlo};
    size_t i;
    for (i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kf_buf_clear(bufs[i]);
    kf_tls_reset(&d->tls);
    d->errbuf[0] = '\0';
    d->code = CURLE_OK;
    d->stage = KF_STAGE_GREETING;
    d->commands_sent = d->server_spoke = d->auth_sent = 0;
    d->body_bytes = d->body_noted = 0;
    d->credentials = d->aborted_no_auth = d->quit_sent = 0;
    d->tls_activity = d->tls_plain_reply = d->lines_dropped = 0;
    d->auth_mechanism[0] = '\0';
    d->t_starttls = d->t_tls_done = d->t_auth = d->t_mail = d->t_final = 0;
    d->connect_us = d->appconnect_us = d->total_us = d->os_errno = d->ssl_verify_result = 0;
    d->msg_pos = 0;
}

int kf_delivery_init(kf_delivery *d) {
    memset(d, 0, sizeof *d);
    d->curl = curl_easy_init();
    return d->curl ? 0 : -1;
}

void kf_delivery_close(kf_delivery *d) {
    kf_buf *bufs[] = {&d->transcript, &d->greeting, &d->reply, &d->final_reply, &d->ehlo};
    size_t i;
    if (d->curl) curl_easy_cleanup(d->curl);
    d->curl = NULL;
    for (i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kf_buf_free(bufs[i]);
    kf_tls_free(&d->tls);
}

static int dlv_verb_is(const char *line, size_t n, const char *verb) {
    size_t k = strlen(verb);
    if (n < k) return 0;
    if (strncasecmp(line, verb, k) != 0) return 0;
    return n == k || line[k] == ' ' || line[k] == ':';
}

static void dlv_client_line(kf_delivery *d, const char *line, size_t n) {
    kf_buf *t = &d->transcript;
    double now = kf_clock_ms();
    int secret = 0;

    if (dlv_verb_is(line, n, "QUIT")) {
        /* libcurl says goodbye after a failure too: the stage and reply
         * that matter are the ones before it. */
        d->quit_sent = 1;
        if (d->transcript_on)
            kf_buf_puts(t, t->len ? "\nC: QUIT" : "C: QUIT");
        return;
    }
    d->commands_sent++;
    kf_buf_clear(&d->reply);
    if (dlv_verb_is(line, n, "EHLO") || dlv_verb_is(line, n, "HELO")) {
        if (d->stage == KF_STAGE_TLS && d->t_starttls > 0) d->t_tls_done = now;
        d->stage = KF_STAGE_EHLO;
        kf_buf_clear(&d->ehlo);
    } else if (dlv_verb_is(line, n, "STARTTLS")) {
        d->stage = KF_STAGE_TLS;
        d->t_starttls = now;
    } else if (dlv_verb_is(line, n, "AUTH")) {
        size_t m = 5, start = 5;
        d->stage = KF_STAGE_AUTH;
        d->auth_sent = 1;
        d->t_auth = now;
        while (m < n && line[m] != ' ') m++;
        if (m > start && m - start < sizeof d->auth_mechanism) {
            memcpy(d->auth_mechanism, line + start, m - start);
            d->auth_mechanism[m - start] = '\0';
        }
        if (d->transcript_on) {
            kf_buf_puts(t, t->len ? "\nC: " : "C: ");
            kf_buf_append(t, line, m);
            if (m < n) kf_buf_puts(t, " ***");
        }
        return;
    } else if (dlv_verb_is(line, n, "MAIL")) {
        d->stage = KF_STAGE_MAIL;
        d->t_mail = now;
    } else if (dlv_verb_is(line, n, "RCPT")) {
        d->stage = KF_STAGE_RCPT;
    } else if (dlv_verb_is(line, n, "DATA")) {
        d->stage = KF_STAGE_DATA;
    } else if (d->stage == KF_STAGE_AUTH) {
        secret = 1; /* a SASL response: credentials, whatever the mechanism */
    }
    if (d->transcript_on) {
        kf_buf_puts(t, t->len ? "\nC: " : "C: ");
        if (secret) kf_buf_puts(t, "***");
        else kf_buf_append(t, line, n);
    }
}

static void dlv_server_line(kf_delivery *d, const char *line, size_t n) {
    d->server_spoke = 1;
    if (d->body_bytes && !d->body_noted) {
        /* The first line after the message body answers the body, not
         * DATA: the reply starts afresh as it does after a command. */
        d->body_noted = 1;
        kf_buf_clear(&d->reply);
        if (d->transcript_on)
            kf_buf_printf(&d->transcript, "%sC: [message, %d bytes, then .]",
                          d->transcript.len ? "\n" : "", d->body_bytes);
    }
    /* A server that floods lines (an endless "250-" reply) until the
     * deadline gets no more memory than this: the rest is not kept. */
    if (d->transcript.len + d->reply.len > KF_MAX_KEPT) {
        d->lines_dropped = 1;
        return;
    }
    if (d->transcript_on) {
        kf_buf_puts(&d->transcript, d->transcript.len ? "\nS: " : "S: ");
        kf_buf_append(&d->transcript, line, n);
    }
    if (d->quit_sent) return;
    kf_buf_line(&d->reply, line, n);
    if (d->commands_sent == 0) kf_buf_line(&d->greeting, line, n);
    else if (d->stage == KF_STAGE_EHLO) kf_buf_line(&d->ehlo, line, n);
    if (d->body_bytes && d->final_reply.len == 0 && (n < 4 || line[3] != '-')) {
        kf_buf_append(&d->final_reply, line, n);
        d->t_final = kf_clock_ms();
    }
}

static void dlv_each_line(kf_delivery *d, const char *data, size_t size,
                          void (*fn)(kf_delivery *, const char *, size_t)) {
    while (size > 0) {
        const char *nl = memchr(data, '\n', size);
        size_t n = nl ? (size_t)(nl - data) : size;
        size_t line_len = n;
        if (line_len > 0 && data[line_len - 1] == '\r') line_len--;
        if (line_len > 0 || nl) fn(d, data, line_len);
        if (!nl) break;
        size -= n + 1;
        data = nl + 1;
    }
}

static int dlv_debug(CURL *h, curl_infotype type, char *data, size_t size,
                     void *userp) {
    kf_delivery *d = userp;
    switch (type) {
    case CURLINFO_HEADER_OUT:
        kf_tls_capture(&d->tls, h);
        dlv_each_line(d, data, size, dlv_client_line);
        break;
    case CURLINFO_HEADER_IN:
        kf_tls_capture(&d->tls, h);
        dlv_each_line(d, data, size, dlv_server_line);
        break;
    case CURLINFO_DATA_OUT:
        d->body_bytes += (int)size;
        break;
    case CURLINFO_SSL_DATA_IN:
        /* libcurl shows each record header it reads. Where TLS was due, a
         * reply code there ("220 ", "500-") is the server speaking plain
         * SMTP: a named fact, not OpenSSL's words for it. */
        if (size >= 4 && isdigit((unsigned char)data[0]) && isdigit((unsigned char)data[1]) &&
            isdigit((unsigned char)data[2]) && (data[3] == ' ' || data[3] == '-'))
            d->tls_plain_reply = 1;
        /* fall through */
    case CURLINFO_SSL_DATA_OUT:
        /* TLS records prove a TCP connection even where libcurl records
         * its connect time only once TLS is up (implicit TLS). */
        d->tls_activity = 1;
        break;
    default:
        break;
    }
    return 0;
}

/* One command on a probe's connection (a copy of the handle that libcurl
 * left after its connect phase), and its whole reply read within the
 * deadline through the same line handlers as libcurl's own dialog.
 * Returns the reply's code, or 0 when none came (closed, error, time). */
static int dlv_exchange(kf_delivery *d, CURL *h, const char *command) {
    char wire[KF_MAX_COMMAND + 2], buf[512], line[1024];
    size_t len = strlen(command), sent = 0, have = 0, total = 0;
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (len > KF_MAX_COMMAND) return 0;
    memcpy(wire, command, len);
    memcpy(wire + len, "\r\n", 2);
    if (curl_easy_send(h, wire, len + 2, &sent) != CURLE_OK || sent != len + 2) return 0;
    dlv_client_line(d, command, len);
    if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK || sock == CURL_SOCKET_BAD)
        return 0;
    for (;;) {
        size_t n = 0, i;
        double left = d->deadline.at_ms - kf_clock_ms();
        CURLcode rc;
        /* A server that never stops sending gets no more than a reply's
         * worth of memory, and no more than the deadline. */
        if (left < 1) {
            d->deadline.hit = 1;
            return 0;
        }
        if (total > KF_MAX_REPLY) return 0;
        rc = curl_easy_recv(h, buf, sizeof buf, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd p = {sock, POLLIN, 0};
            if (poll(&p, 1, (int)left) <= 0) return 0;
            continue;
        }
        if (rc != CURLE_OK || n == 0) return 0;
        total += n;
        for (i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (have < sizeof line) line[have++] = buf[i];
                continue;
            }
            if (have > 0 && line[have - 1] == '\r') have--;
            dlv_server_line(d, line, have);
            /* The reply's last line: a code, then a space or nothing. */
            if (have >= 3 && (have == 3 || line[3] == ' ') && line[0] >= '1' && line[0] <= '5')
                return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
            have = 0;
        }
    }
}

/* A probe's end on the copy of the handle: for quit_after = "rcpt", MAIL
 * and RCPT (libcurl cannot stop before DATA, and inside DATA the only way
 * out is to drop the connection); then, whatever came of them, QUIT and
 * its 221, so that the server logs a clean session and rate limiters count
 * no abort. libcurl itself closes such a connection without a word. */
static void dlv_finish_probe(kf_delivery *d, CURL *h, const kf_delivery_req *req) {
    char command[KF_MAX_COMMAND + 1];
    if (d->code == CURLE_OK && d->credentials && !d->auth_sent) {
        /* The server offered no AUTH: configured credentials are never
         * skipped silently. */
        d->aborted_no_auth = 1;
        d->code = CURLE_ABORTED_BY_CALLBACK;
    }
    if (d->code == CURLE_OK && req->quit_after == KF_QUIT_RCPT) {
        const char *verbs[] = {"MAIL FROM:", "RCPT TO:"};
        const char *args[] = {req->mail_from, req->rcpt_to};
        size_t k;
        for (k = 0; k < 2 && d->code == CURLE_OK; k++) {
            int code;
            snprintf(command, sizeof command, "%s%s", verbs[k], args[k]);
            code = dlv_exchange(d, h, command);
            if (code / 100 != 2)
                d->code = code ? CURLE_SEND_ERROR
                               : d->deadline.hit ? CURLE_OPERATION_TIMEDOUT : CURLE_RECV_ERROR;
        }
    }
    if (d->code != CURLE_OPERATION_TIMEDOUT && d->code != CURLE_RECV_ERROR) dlv_exchange(d, h, "QUIT");
}

static size_t dlv_read(char *buf, size_t size, size_t nitems, void *userp) {
    kf_delivery *d = userp;
    size_t room = size * nitems, left = d->msg_len - d->msg_pos;
    /* libcurl goes on without AUTH when the server does not offer it; with
     * credentials configured that is a misconfiguration to report, and
     * stopping here (after 354, before any message byte) delivers nothing. */
    if (d->credentials && !d->auth_sent) {
        d->aborted_no_auth = 1;
        return CURL_READFUNC_ABORT;
    }
    if (left < room) room = left;
    memcpy(buf, d->msg + d->msg_pos, room);
    d->msg_pos += room;
    return room;
}

static int dlv_url(kf_buf *url, const kf_delivery_req *req) {
    int bracket = req->host[0] != '[' && strchr(req->host, ':') != NULL;
    const char *p;
    kf_buf_printf(url, "%s://%s%s%s:%ld/",
                  req->tls_mode == KF_TLS_IMPLICIT ? "smtps" : "smtp",
                  bracket ? "[" : "", req->host, bracket ? "]" : "", req->port);
    /* The path is the EHLO name; validated names need escaping only for
     * the characters a URL path treats specially. */
    for (p = req->helo; *p; p++) {
        if (strchr("%#?/ ", *p)) kf_buf_printf(url, "%%%02X", (unsigned char)*p);
        else kf_buf_append(url, p, 1);
    }
    return url->oom ? -1 : 0;
}

int kf_delivery_run(kf_delivery *d, const kf_delivery_req *req) {
    CURL *c = d->curl, *h = c;
    kf_curlopt o = {c, CURLE_OK, NULL};
    kf_buf url = {0};
    struct curl_slist *rcpt = NULL;
    int implicit = req->tls_mode == KF_TLS_IMPLICIT;
    int starttls = req->tls_mode == KF_TLS_STARTTLS;
    int rc = 0;
    curl_off_t t;
    int connect_only = req->quit_after != KF_QUIT_NEVER;

    dlv_reset(d);
    if (dlv_url(&url, req) != 0) { kf_buf_free(&url); return -1; }
    rcpt = curl_slist_append(NULL, req->rcpt_to);
    if (!rcpt) { kf_buf_free(&url); return -1; }
    d->msg = req->message;
    d->msg_len = req->message_len;
    d->credentials = req->username != NULL && req->quit_after != KF_QUIT_CONNECT &&
                     req->quit_after != KF_QUIT_TLS;
    d->transcript_on = req->want_transcript;

    /* Every option is set on every run, so nothing leaks from one test into
     * the next while the handle (and libcurl's CA cache) is kept. */
    KF_SETOPT(&o, CURLOPT_URL, url.data);
    KF_SETOPT(&o, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    KF_SETOPT(&o, CURLOPT_NOSIGNAL, 1L);
    KF_SETOPT(&o, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    kf_deadline_options(&o, &d->deadline, req->timeout_ms);
    /* A test must test: a new connection and a full handshake every time. */
    KF_SETOPT(&o, CURLOPT_FRESH_CONNECT, 1L);
    KF_SETOPT(&o, CURLOPT_FORBID_REUSE, 1L);
    KF_SETOPT(&o, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    KF_SETOPT(&o, CURLOPT_USE_SSL,
              (long)((starttls && req->quit_after != KF_QUIT_CONNECT) || implicit
                         ? CURLUSESSL_ALL : CURLUSESSL_NONE));
    kf_curl_verify_options(&o, req->ca_file, req->tls_verify);
    KF_SETOPT(&o, CURLOPT_PINNEDPUBLICKEY, req->pinned_pubkey);
    KF_SETOPT(&o, CURLOPT_USERNAME, d->credentials ? req->username : NULL);
    KF_SETOPT(&o, CURLOPT_PASSWORD, d->credentials ? req->password : NULL);
    KF_SETOPT(&o, CURLOPT_XOAUTH2_BEARER, d->credentials ? req->bearer : NULL);
    /* With a token, only the OAuth mechanisms: never a password mechanism
     * with an empty password. */
    if (req->auth_mechanism >= 0)
        snprintf(d->login_options, sizeof d->login_options, "AUTH=%s", kf_sasl_names[req->auth_mechanism]);
    else
        snprintf(d->login_options, sizeof d->login_options, "%s",
                 req->bearer ? "AUTH=OAUTHBEARER;AUTH=XOAUTH2" : "");
    KF_SETOPT(&o, CURLOPT_LOGIN_OPTIONS,
              d->credentials && d->login_options[0] ? d->login_options : NULL);
    /* The first SASL message goes on the AUTH line itself (RFC 4954's
     * initial response): one round trip less for PLAIN, LOGIN and the
     * OAuth mechanisms, which a distant relay makes worth 20-150 ms. */
    KF_SETOPT(&o, CURLOPT_SASL_IR, 1L);
    KF_SETOPT(&o, CURLOPT_MAIL_FROM, req->mail_from);
    KF_SETOPT(&o, CURLOPT_MAIL_RCPT, rcpt);
    KF_SETOPT(&o, CURLOPT_UPLOAD, 1L);
    KF_SETOPT(&o, CURLOPT_READFUNCTION, dlv_read);
    KF_SETOPT(&o, CURLOPT_READDATA, d);
    KF_SETOPT(&o, CURLOPT_VERBOSE, 1L);
    KF_SETOPT(&o, CURLOPT_DEBUGFUNCTION, dlv_debug);
    KF_SETOPT(&o, CURLOPT_DEBUGDATA, d);
    KF_SETOPT(&o, CURLOPT_ERRORBUFFER, d->errbuf);

    /* A probe that stops inside libcurl's connect phase (greeting, TLS,
     * EHLO, AUTH) runs CONNECT_ONLY on a copy of the handle, so that its
     * connection closes with the copy instead of staying on the kept one.
     * Without the copy the probe would deliver: then nothing runs. */
    if (o.code == CURLE_OK && connect_only) {
        h = curl_easy_duphandle(c);
        if (!h) {
            h = c;
            rc = -1;
        } else {
            kf_curlopt_note(&o, curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L),
                            "CURLOPT_CONNECT_ONLY");
            /* Kept open after the connect phase, for dlv_goodbye; the copy's
             * cleanup closes it. */
            kf_curlopt_note(&o, curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 0L),
                            "CURLOPT_FORBID_REUSE");
        }
    }
    if (o.code == CURLE_OK && rc == 0) {
        d->t_start = kf_clock_ms();
        d->code = curl_easy_perform(h);
        if (d->code == CURLE_ABORTED_BY_CALLBACK && d->deadline.hit) {
            d->code = CURLE_OPERATION_TIMEDOUT;
            snprintf(d->errbuf, sizeof d->errbuf, "no answer within timeout_ms (%ld ms)",
                     req->timeout_ms);
        }
        if (curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &t) == CURLE_OK) d->connect_us = (long)t;
        if (curl_easy_getinfo(h, CURLINFO_APPCONNECT_TIME_T, &t) == CURLE_OK) d->appconnect_us = (long)t;
        if (curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &t) == CURLE_OK) d->total_us = (long)t;
        if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &d->os_errno) != CURLE_OK) d->os_errno = 0;
        if (curl_easy_getinfo(h, CURLINFO_SSL_VERIFYRESULT, &d->ssl_verify_result) != CURLE_OK)
            d->ssl_verify_result = 0;
        if (h != c && d->code == CURLE_OK) dlv_finish_probe(d, h, req);
    }
    if (h != c) curl_easy_cleanup(h);

    /* Drop our pointers to the caller's strings and the secret. */
    KF_SETOPT(&o, CURLOPT_PASSWORD, NULL);
    KF_SETOPT(&o, CURLOPT_XOAUTH2_BEARER, NULL);
    KF_SETOPT(&o, CURLOPT_USERNAME, NULL);
    KF_SETOPT(&o, CURLOPT_MAIL_RCPT, NULL);
    KF_SETOPT(&o, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(rcpt);
    kf_buf_free(&url);
    d->msg = NULL;
    d->refused = o;
    return o.code != CURLE_OK ? -2 : rc;
}

enum kf_stage kf_delivery_failed_stage(const kf_delivery *d,
                                       const kf_delivery_req *req) {
    int implicit = req->tls_mode == KF_TLS_IMPLICIT;
    switch (d->code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return KF_STAGE_RESOLVE;
    case CURLE_COULDNT_CONNECT:
        return KF_STAGE_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return KF_STAGE_TLS;
    case CURLE_LOGIN_DENIED:
        return KF_STAGE_AUTH;
    case CURLE_ABORTED_BY_CALLBACK:
        if (d->aborted_no_auth) return KF_STAGE_AUTH;
        break;
    default:
        break;
    }
    if (d->connect_us == 0 && !d->server_spoke && !d->tls_activity) return KF_STAGE_CONNECT;
    if (!d->server_spoke)
        return implicit && d->appconnect_us == 0 ? KF_STAGE_TLS : KF_STAGE_GREETING;
    if (d->commands_sent == 0) return KF_STAGE_GREETING;
    return d->stage;
}
