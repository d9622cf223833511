/* The OAuth 2.0 client-credentials token request (RelayAuthenticationType
 * 3): one HTTPS POST through libcurl, the form encoded by libcurl, the
 * answer returned as it came (Lua decodes the JSON). Its own easy handle is
 * kept so that the parsed CA bundle is reused, as for deliveries. */
#include <stdio.h>
#include <string.h>

#include "tls.h"
#include "deadline.h"
#include "token.h"

static size_t tok_write(char *data, size_t size, size_t n, void *userp) {
    kf_buf *body = userp;
    if (body->len + size * n > KF_TOKEN_MAX_BODY) return 0; /* aborts */
    kf_buf_append(body, data, size * n);
    return body->oom ? 0 : size * n;
}

static void tok_field(CURL *c, kf_buf *form, const char *name, const char *value) {
    char *escaped;
    if (!value) return;
    escaped = curl_easy_escape(c, value, 0);
    if (!escaped) { form->oom = 1; return; }
    if (form->len) kf_buf_append(form, "&", 1);
    kf_buf_puts(form, name);
    kf_buf_append(form, "=", 1);
    kf_buf_puts(form, escaped);
    /* The form carries the client secret. */
    explicit_bzero(escaped, strlen(escaped));
    curl_free(escaped);
}

/* Accept, then the caller's headers in their order; NULL when out of
 * memory. */
static struct curl_slist *tok_headers(const kf_token_req *req) {
    struct curl_slist *list = curl_slist_append(NULL, "Accept: application/json"), *more;
    int i;
    for (i = 0; list && i < req->nheaders; i++) {
        if (!(more = curl_slist_append(list, req->headers[i]))) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = more;
    }
    return list;
}

/* A caller's header may carry a key (an API gateway's): wiped like the
 * form. */
static void tok_free_headers(struct curl_slist *list) {
    struct curl_slist *h;
    for (h = list; h; h = h->next) explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(list);
}

CURLcode kf_token_fetch(kf_curlopt *o, const kf_token_req *req, kf_buf *body,
                        long *http_status, char errbuf[CURL_ERROR_SIZE]) {
    kf_buf form = {0};
    struct curl_slist *headers = NULL;
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    kf_deadline deadline;

    /* Read by the caller whatever happens below. */
    errbuf[0] = '\0';
    *http_status = 0;
    tok_field(o->curl, &form, "grant_type", "client_credentials");
    tok_field(o->curl, &form, "client_id", req->client_id);
    tok_field(o->curl, &form, "client_secret", req->client_secret);
    tok_field(o->curl, &form, "scope", req->scope);
    /* Azure AD v1 and some others name the audience "resource". */
    tok_field(o->curl, &form, "resource", req->audience);
    if (form.oom || !(headers = tok_headers(req))) {
        kf_buf_wipe_free(&form);
        return rc;
    }

    KF_SETOPT(o, CURLOPT_URL, req->endpoint);
    KF_SETOPT(o, CURLOPT_PROTOCOLS_STR, "https,http");
    KF_SETOPT(o, CURLOPT_NOSIGNAL, 1L);
    KF_SETOPT(o, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    kf_deadline_options(o, &deadline, req->timeout_ms);
    kf_curl_verify_options(o, req->ca_file, req->tls_verify);
    KF_SETOPT(o, CURLOPT_FOLLOWLOCATION, 0L);
    KF_SETOPT(o, CURLOPT_POSTFIELDS, form.data);
    KF_SETOPT(o, CURLOPT_POSTFIELDSIZE, (long)form.len);
    KF_SETOPT(o, CURLOPT_HTTPHEADER, headers);
    KF_SETOPT(o, CURLOPT_WRITEFUNCTION, tok_write);
    KF_SETOPT(o, CURLOPT_WRITEDATA, body);
    KF_SETOPT(o, CURLOPT_ERRORBUFFER, errbuf);
    if (o->code == CURLE_OK) {
        rc = curl_easy_perform(o->curl);
        if (rc == CURLE_ABORTED_BY_CALLBACK && deadline.hit) {
            rc = CURLE_OPERATION_TIMEDOUT;
            snprintf(errbuf, CURL_ERROR_SIZE, "no answer within timeout_ms (%ld ms)", req->timeout_ms);
        }
        if (curl_easy_getinfo(o->curl, CURLINFO_RESPONSE_CODE, http_status) != CURLE_OK)
            *http_status = 0;
    }
    /* Drop our pointers to the form (it holds the secret), the headers and
     * the caller's buffers. */
    KF_SETOPT(o, CURLOPT_POSTFIELDS, NULL);
    KF_SETOPT(o, CURLOPT_HTTPHEADER, NULL);
    KF_SETOPT(o, CURLOPT_WRITEDATA, NULL);
    KF_SETOPT(o, CURLOPT_ERRORBUFFER, NULL);
    /* The callback's data lives on this stack. */
    KF_SETOPT(o, CURLOPT_XFERINFODATA, NULL);
    KF_SETOPT(o, CURLOPT_NOPROGRESS, 1L);
    tok_free_headers(headers);
    kf_buf_wipe_free(&form);
    return o->code != CURLE_OK ? o->code : rc;
}
