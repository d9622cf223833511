/* The OAuth 2.0 client-credentials token request (RelayAuthenticationType
 * 3): one HTTPS POST through libcurl, the form encoded by libcurl, the
 * answer returned as it came (Lua decodes the JSON). Its own easy handle is
 * kept so that the parsed CA bundle is reused, as for deliveries. */
#include <string.h>

#include "delivery.h"
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

CURLcode kf_token_fetch(CURL *c, const kf_token_req *req, kf_buf *body, long *http_status,
                        char errbuf[CURL_ERROR_SIZE]) {
    kf_buf form = {0};
    struct curl_slist *headers = NULL;
    CURLcode rc;

    tok_field(c, &form, "grant_type", "client_credentials");
    tok_field(c, &form, "client_id", req->client_id);
    tok_field(c, &form, "client_secret", req->client_secret);
    tok_field(c, &form, "scope", req->scope);
    /* Azure AD v1 and some others name the audience "resource". */
    tok_field(c, &form, "resource", req->audience);
    if (form.oom) { kf_buf_wipe_free(&form); return CURLE_OUT_OF_MEMORY; }
    headers = curl_slist_append(NULL, "Accept: application/json");

    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, req->endpoint);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    kf_curl_verify_options(c, req->ca_file, req->tls_verify);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)form.len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tok_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    rc = curl_easy_perform(c);
    *http_status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    kf_buf_wipe_free(&form);
    return rc;
}
