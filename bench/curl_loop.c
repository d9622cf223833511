/*
 * curl_loop: the "bare libcurl" baseline for kfsmtp's benchmark.
 *
 *   curl_loop --host H --port P --mode plain|starttls|implicit --n N
 *             [--ca CAFILE] [--user U --password-file F] [--mech PLAIN|LOGIN]
 *             [--token-url URL --client-id ID --client-secret-file F
 *              [--scope S] [--token each|once]]
 *             [--from ADDR] [--to ADDR] [--handle new|reuse]
 *
 * N sequential deliveries of one small fixed message, each over a new TCP
 * connection (CURLOPT_FRESH_CONNECT + CURLOPT_FORBID_REUSE) and, in starttls
 * mode, a full TLS handshake (the TLS session-ID cache is switched off, so no
 * resumption).  --handle new: curl_easy_init/cleanup per delivery (timed);
 * --handle reuse: one easy handle for the whole run.  CURLOPT_CAPATH is left at
 * libcurl's default on purpose, and so is CURLOPT_SASL_IR (off).
 *
 * --token-url: an OAuth client-credentials token (HTTP POST on an easy handle
 * of its own, kept for the run, so libcurl may keep its connection), then
 * the bearer (XOAUTH2/OAUTHBEARER) for --user. --token each: one per
 * delivery, timed with it; once: one before the first delivery.
 *
 * stdout: one line per delivery, its latency in integer microseconds.
 * Exit 0 when every delivery succeeded; 1 (message on stderr) otherwise;
 * 2 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
	const char *host;
	long port;
	int starttls;
	int implicit;
	const char *mech;
	const char *token_url;
	const char *client_id;
	const char *client_secret_file;
	const char *scope;
	int token_each;
	long n;
	const char *ca;
	const char *user;
	const char *password_file;
	const char *from;
	const char *to;
	int reuse;
};

struct upload {
	const char *data;
	size_t len;
	size_t off;
};

static void usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "curl_loop: %s\n", msg);
	fprintf(stderr,
		"usage: curl_loop --host H --port P --mode plain|starttls|implicit --n N\n"
		"                 [--ca CAFILE] [--user U --password-file F] [--mech PLAIN|LOGIN]\n"
		"                 [--token-url URL --client-id ID --client-secret-file F\n"
		"                  [--scope S] [--token each|once]]\n"
		"                 [--from ADDR] [--to ADDR] [--handle new|reuse]\n");
	exit(2);
}

static long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "curl_loop: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	const char *mode = NULL;
	const char *handle = "new";
	const char *token = "each";
	int i;

	memset(o, 0, sizeof *o);
	o->port = -1;
	o->n = -1;
	o->from = "kf@example.com";
	o->to = "ops@example.com";
	o->mech = "PLAIN";
	o->scope = "bench";

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v;

		if (i + 1 >= argc)
			usage("missing value for an option");
		v = argv[++i];
		if (!strcmp(a, "--host"))
			o->host = v;
		else if (!strcmp(a, "--port"))
			o->port = parse_long(v, "--port", 1, 65535);
		else if (!strcmp(a, "--mode"))
			mode = v;
		else if (!strcmp(a, "--n"))
			o->n = parse_long(v, "--n", 0, 1000000000L);
		else if (!strcmp(a, "--ca"))
			o->ca = v;
		else if (!strcmp(a, "--user"))
			o->user = v;
		else if (!strcmp(a, "--password-file"))
			o->password_file = v;
		else if (!strcmp(a, "--from"))
			o->from = v;
		else if (!strcmp(a, "--to"))
			o->to = v;
		else if (!strcmp(a, "--handle"))
			handle = v;
		else if (!strcmp(a, "--mech"))
			o->mech = v;
		else if (!strcmp(a, "--token-url"))
			o->token_url = v;
		else if (!strcmp(a, "--client-id"))
			o->client_id = v;
		else if (!strcmp(a, "--client-secret-file"))
			o->client_secret_file = v;
		else if (!strcmp(a, "--scope"))
			o->scope = v;
		else if (!strcmp(a, "--token"))
			token = v;
		else {
			fprintf(stderr, "curl_loop: unknown option %s\n", a);
			usage(NULL);
		}
	}
	if (!o->host || o->port < 0 || !mode || o->n < 0)
		usage("--host, --port, --mode and --n are required");
	if (!strcmp(mode, "plain"))
		o->starttls = 0;
	else if (!strcmp(mode, "starttls"))
		o->starttls = 1;
	else if (!strcmp(mode, "implicit"))
		o->implicit = 1;
	else
		usage("--mode must be plain, starttls or implicit");
	if (strcmp(o->mech, "PLAIN") && strcmp(o->mech, "LOGIN"))
		usage("--mech must be PLAIN or LOGIN");
	if (!strcmp(token, "each"))
		o->token_each = 1;
	else if (strcmp(token, "once"))
		usage("--token must be each or once");
	if (o->token_url && !(o->client_id && o->client_secret_file && o->user))
		usage("--token-url needs --client-id, --client-secret-file and --user");
	if (!strcmp(handle, "new"))
		o->reuse = 0;
	else if (!strcmp(handle, "reuse"))
		o->reuse = 1;
	else
		usage("--handle must be new or reuse");
	if (!o->token_url && (o->user == NULL) != (o->password_file == NULL))
		usage("--user and --password-file go together");
}

/* First line of FILE, without its line end; exits on failure. */
static char *read_password(const char *path)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	char *p;

	if (!f) {
		fprintf(stderr, "curl_loop: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	p = strdup(buf);
	if (!p) {
		fprintf(stderr, "curl_loop: out of memory\n");
		exit(1);
	}
	return p;
}

/* The fixed message (~450 bytes, CRLF line ends). */
static char *build_message(const char *from, const char *to, size_t *len)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	char *msg;
	int n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	n = (int)(strlen(date) + strlen(from) + strlen(to)) + 600;
	msg = malloc((size_t)n);
	if (!msg) {
		fprintf(stderr, "curl_loop: out of memory\n");
		exit(1);
	}
	n = snprintf(msg, (size_t)n,
		     "Date: %s\r\n"
		     "From: %s\r\n"
		     "To: %s\r\n"
		     "Subject: kfsmtp benchmark delivery\r\n"
		     "Message-ID: <bench.0001.kfsmtp@example.com>\r\n"
		     "MIME-Version: 1.0\r\n"
		     "Content-Type: text/plain; charset=UTF-8\r\n"
		     "\r\n"
		     "This is a fixed benchmark message sent by kfsmtp's bench clients.\r\n"
		     "Every delivery uses a fresh connection and, where asked, a full TLS handshake.\r\n"
		     "Nothing in it needs to be read by anyone; it only has to arrive intact.\r\n",
		     date, from, to);
	*len = (size_t)n;
	return msg;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	struct upload *u = userp;
	size_t room = size * nitems;
	size_t left = u->len - u->off;

	if (left > room)
		left = room;
	memcpy(buf, u->data + u->off, left);
	u->off += left;
	return left;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

struct setup {
	const struct opts *o;
	const char *url;
	const char *password;
	const char *bearer;
	char *mail_from;
	struct curl_slist *rcpt;
	struct upload *up;
	char *errbuf;
};

#define SET(h, opt, val)                                                        \
	do {                                                                    \
		CURLcode rc_ = curl_easy_setopt((h), (opt), (val));             \
		if (rc_ != CURLE_OK) {                                          \
			fprintf(stderr, "curl_loop: setopt %s: %s\n", #opt,     \
				curl_easy_strerror(rc_));                       \
			exit(1);                                                \
		}                                                               \
	} while (0)

static void configure(CURL *h, const struct setup *s)
{
	const struct opts *o = s->o;

	SET(h, CURLOPT_URL, s->url);
	SET(h, CURLOPT_ERRORBUFFER, s->errbuf);
	SET(h, CURLOPT_NOSIGNAL, 1L);
	SET(h, CURLOPT_FRESH_CONNECT, 1L);
	SET(h, CURLOPT_FORBID_REUSE, 1L);
	SET(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	if (o->starttls || o->implicit) {
		SET(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
		SET(h, CURLOPT_SSL_VERIFYPEER, 1L);
		SET(h, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	if (o->ca)
		SET(h, CURLOPT_CAINFO, o->ca);
	if (o->token_url) {
		SET(h, CURLOPT_USERNAME, o->user);
		SET(h, CURLOPT_XOAUTH2_BEARER, s->bearer);
		SET(h, CURLOPT_LOGIN_OPTIONS, "AUTH=OAUTHBEARER;AUTH=XOAUTH2");
	} else if (o->user) {
		char login_options[16];

		snprintf(login_options, sizeof login_options, "AUTH=%s", o->mech);
		SET(h, CURLOPT_USERNAME, o->user);
		SET(h, CURLOPT_PASSWORD, s->password);
		SET(h, CURLOPT_LOGIN_OPTIONS, login_options);
	}
	SET(h, CURLOPT_MAIL_FROM, s->mail_from);
	SET(h, CURLOPT_MAIL_RCPT, s->rcpt);
	SET(h, CURLOPT_UPLOAD, 1L);
	SET(h, CURLOPT_READFUNCTION, read_cb);
	SET(h, CURLOPT_READDATA, s->up);
}

struct body {
	char data[4096];
	size_t len;
};

static size_t body_cb(char *data, size_t size, size_t n, void *userp)
{
	struct body *b = userp;

	if (b->len + size * n >= sizeof b->data)
		return 0;
	memcpy(b->data + b->len, data, size * n);
	b->len += size * n;
	b->data[b->len] = '\0';
	return size * n;
}

/* The access token from the endpoint's JSON answer, in *token (malloc'd);
 * the handle is kept by the caller so that its connection may be reused. */
static void fetch_token(CURL *t, const struct opts *o, const char *form, char **token)
{
	struct body b = {{0}, 0};
	const char *p, *q;
	long status = 0;
	CURLcode rc;

	SET(t, CURLOPT_URL, o->token_url);
	SET(t, CURLOPT_NOSIGNAL, 1L);
	SET(t, CURLOPT_POSTFIELDS, form);
	SET(t, CURLOPT_WRITEFUNCTION, body_cb);
	SET(t, CURLOPT_WRITEDATA, &b);
	if (o->ca)
		SET(t, CURLOPT_CAINFO, o->ca);
	rc = curl_easy_perform(t);
	curl_easy_getinfo(t, CURLINFO_RESPONSE_CODE, &status);
	p = rc == CURLE_OK && status == 200 ? strstr(b.data, "\"access_token\"") : NULL;
	p = p ? strchr(p + 14, '"') : NULL;
	q = p ? strchr(p + 1, '"') : NULL;
	if (!q) {
		fprintf(stderr, "curl_loop: token endpoint: %s, HTTP %ld\n", curl_easy_strerror(rc), status);
		exit(1);
	}
	free(*token);
	*token = strndup(p + 1, (size_t)(q - p - 1));
	if (!*token) {
		fprintf(stderr, "curl_loop: out of memory\n");
		exit(1);
	}
}

static char *bracketed(const char *addr)
{
	size_t n = strlen(addr) + 3;
	char *p = malloc(n);

	if (!p) {
		fprintf(stderr, "curl_loop: out of memory\n");
		exit(1);
	}
	snprintf(p, n, "<%s>", addr);
	return p;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct setup s;
	struct upload up;
	char errbuf[CURL_ERROR_SIZE];
	char url[512];
	char *password = NULL;
	char *rcpt_addr;
	char *token = NULL;
	char form[2048];
	CURL *h = NULL, *t = NULL;
	long i;

	parse_args(argc, argv, &o);
	if (o.password_file)
		password = read_password(o.password_file);
	if (o.token_url) {
		char *secret = read_password(o.client_secret_file);

		snprintf(form, sizeof form, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
			 o.client_id, secret, o.scope);
		free(secret);
	}

	memset(&up, 0, sizeof up);
	up.data = build_message(o.from, o.to, &up.len);

	/* Bracket IPv6 literals in the URL. */
	if (strchr(o.host, ':'))
		snprintf(url, sizeof url, "%s://[%s]:%ld", o.implicit ? "smtps" : "smtp", o.host, o.port);
	else
		snprintf(url, sizeof url, "%s://%s:%ld", o.implicit ? "smtps" : "smtp", o.host, o.port);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "curl_loop: curl_global_init failed\n");
		return 1;
	}

	memset(&s, 0, sizeof s);
	s.o = &o;
	s.url = url;
	s.password = password;
	s.mail_from = bracketed(o.from);
	rcpt_addr = bracketed(o.to);
	s.rcpt = curl_slist_append(NULL, rcpt_addr);
	s.up = &up;
	s.errbuf = errbuf;
	if (!s.rcpt) {
		fprintf(stderr, "curl_loop: out of memory\n");
		return 1;
	}

	if (o.token_url) {
		t = curl_easy_init();
		if (!t) {
			fprintf(stderr, "curl_loop: curl_easy_init failed\n");
			return 1;
		}
		if (!o.token_each)
			fetch_token(t, &o, form, &token);
		s.bearer = token;
	}

	if (o.reuse) {
		h = curl_easy_init();
		if (!h) {
			fprintf(stderr, "curl_loop: curl_easy_init failed\n");
			return 1;
		}
		configure(h, &s);
	}

	for (i = 0; i < o.n; i++) {
		long long t0, t1;
		CURLcode rc;

		up.off = 0;
		errbuf[0] = '\0';
		t0 = now_us();
		if (o.token_url && o.token_each) {
			fetch_token(t, &o, form, &token);
			s.bearer = token;
			/* libcurl copies the string: a reused handle gets the new one. */
			if (o.reuse)
				SET(h, CURLOPT_XOAUTH2_BEARER, s.bearer);
		}
		if (!o.reuse) {
			h = curl_easy_init();
			if (!h) {
				fprintf(stderr, "curl_loop: curl_easy_init failed\n");
				return 1;
			}
			configure(h, &s);
		}
		rc = curl_easy_perform(h);
		if (!o.reuse) {
			curl_easy_cleanup(h);
			h = NULL;
		}
		t1 = now_us();
		if (rc != CURLE_OK) {
			fprintf(stderr, "curl_loop: delivery %ld failed: %s%s%s\n", i + 1,
				curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf);
			return 1;
		}
		/* At once: bench/latency.py reads the relay's count at each line. */
		printf("%lld\n", t1 - t0);
		fflush(stdout);
	}

	if (h)
		curl_easy_cleanup(h);
	if (t)
		curl_easy_cleanup(t);
	free(token);
	curl_slist_free_all(s.rcpt);
	free(rcpt_addr);
	free(s.mail_from);
	free(password);
	free((char *)up.data);
	curl_global_cleanup();
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "curl_loop: write error on stdout\n");
		return 1;
	}
	return 0;
}
