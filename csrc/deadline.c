/* A deadline libcurl keeps everywhere. CURLOPT_TIMEOUT_MS bounds the
 * transfer, but not the wait for the reply to QUIT when the connection is
 * closed (only CURLOPT_SERVER_RESPONSE_TIMEOUT does, 120 s by default, in
 * whole seconds), and a reply dripped a byte at a time keeps resetting
 * nothing libcurl measures. libcurl calls the progress callback at least
 * once a second while it waits in any of these places, so the callback
 * stops the transfer within about a second of the deadline. */
#include <time.h>

#include "deadline.h"

double kf_clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int dl_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    kf_deadline *dl = userp;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (kf_clock_ms() < dl->at_ms) return 0;
    dl->hit = 1;
    return 1; /* abort: CURLE_ABORTED_BY_CALLBACK */
}

void kf_deadline_options(kf_curlopt *o, kf_deadline *dl, long timeout_ms) {
    dl->at_ms = kf_clock_ms() + (double)timeout_ms;
    dl->hit = 0;
    KF_SETOPT(o, CURLOPT_TIMEOUT_MS, timeout_ms);
    KF_SETOPT(o, CURLOPT_SERVER_RESPONSE_TIMEOUT, (timeout_ms + 999) / 1000);
    KF_SETOPT(o, CURLOPT_NOPROGRESS, 0L);
    KF_SETOPT(o, CURLOPT_XFERINFOFUNCTION, dl_progress);
    KF_SETOPT(o, CURLOPT_XFERINFODATA, dl);
}
