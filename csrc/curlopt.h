/* Options set on a libcurl handle with every result checked. KF_SETOPT
 * keeps the first option libcurl refused (its name and code) and goes on,
 * so a run of options, and the run that clears them after a transfer, needs
 * one check at the end: the caller then cleans up, returns, and its Lua
 * binding raises once it owns no memory and no transfer. */
#ifndef KFSMTP_CURLOPT_H
#define KFSMTP_CURLOPT_H

#include <curl/curl.h>

typedef struct kf_curlopt {
    CURL *curl;
    CURLcode code;    /* CURLE_OK until an option is refused */
    const char *name; /* the refused option, "CURLOPT_..." */
} kf_curlopt;

static inline void kf_curlopt_note(kf_curlopt *o, CURLcode rc, const char *name) {
    if (rc != CURLE_OK && o->code == CURLE_OK) {
        o->code = rc;
        o->name = name;
    }
}

#define KF_SETOPT(o, option, value) \
    kf_curlopt_note((o), curl_easy_setopt((o)->curl, option, value), #option)

#endif
