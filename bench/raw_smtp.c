/*
 * raw_smtp: the floor for kfsmtp's benchmark -- a lock-step plain SMTP client
 * over raw sockets, TCP_NODELAY on.
 *
 *   raw_smtp --host H --port P --mode plain --n N [--ca CAFILE]
 *            [--user U --password-file F] [--from ADDR] [--to ADDR]
 *
 * (--ca, --user and --password-file are accepted for the shared command line
 * and ignored: there is no TLS and no AUTH here.  --mode starttls exits 2.)
 *
 * Each delivery: connect, greeting (2xx), EHLO (2xx), MAIL (2xx), RCPT (2xx),
 * DATA (354), message + "." (2xx), QUIT (2xx), close.  One command at a time,
 * each reply read in full (multi-line replies included) and its code checked.
 *
 * stdout: one line per delivery, its latency in integer microseconds.
 * Exit 0 when every delivery succeeded; 1 (message on stderr) otherwise;
 * 2 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 30

struct opts {
	const char *host;
	const char *port;
	long n;
	const char *from;
	const char *to;
};

struct conn {
	int fd;
	char buf[4096];
	size_t len; /* bytes in buf */
	size_t pos; /* first unread byte */
	char last[512]; /* last reply line, for error messages */
};

static char errmsg[1024];

static void usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "raw_smtp: %s\n", msg);
	fprintf(stderr,
		"usage: raw_smtp --host H --port P --mode plain --n N [--ca CAFILE]\n"
		"                [--user U --password-file F] [--from ADDR] [--to ADDR]\n");
	exit(2);
}

static long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "raw_smtp: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	const char *mode = NULL;
	int i;

	memset(o, 0, sizeof *o);
	o->n = -1;
	o->from = "kf@example.com";
	o->to = "ops@example.com";

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v;

		if (i + 1 >= argc)
			usage("missing value for an option");
		v = argv[++i];
		if (!strcmp(a, "--host"))
			o->host = v;
		else if (!strcmp(a, "--port")) {
			parse_long(v, "--port", 1, 65535);
			o->port = v;
		} else if (!strcmp(a, "--mode"))
			mode = v;
		else if (!strcmp(a, "--n"))
			o->n = parse_long(v, "--n", 0, 1000000000L);
		else if (!strcmp(a, "--ca") || !strcmp(a, "--user") ||
			 !strcmp(a, "--password-file"))
			; /* accepted, unused: plain SMTP without AUTH */
		else if (!strcmp(a, "--from"))
			o->from = v;
		else if (!strcmp(a, "--to"))
			o->to = v;
		else {
			fprintf(stderr, "raw_smtp: unknown option %s\n", a);
			usage(NULL);
		}
	}
	if (!o->host || !o->port || !mode || o->n < 0)
		usage("--host, --port, --mode and --n are required");
	if (!strcmp(mode, "starttls")) {
		fprintf(stderr, "raw_smtp: --mode starttls is not supported (plain only)\n");
		exit(2);
	}
	if (strcmp(mode, "plain"))
		usage("--mode must be plain");
}

/* The fixed message as DATA content: dot-stuffed, then the final ".\r\n". */
static char *build_data(const char *from, const char *to, size_t *len)
{
	char date[64];
	char msg[2048];
	time_t now = time(NULL);
	struct tm tm;
	char *out;
	size_t i, o = 0;
	int n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	n = snprintf(msg, sizeof msg,
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
	if (n < 0 || (size_t)n >= sizeof msg) {
		fprintf(stderr, "raw_smtp: --from/--to too long\n");
		exit(2);
	}
	/* worst case every line gains a dot; plus the terminating ".\r\n" */
	out = malloc((size_t)n * 2 + 8);
	if (!out) {
		fprintf(stderr, "raw_smtp: out of memory\n");
		exit(1);
	}
	for (i = 0; i < (size_t)n; i++) {
		if (msg[i] == '.' && (i == 0 || msg[i - 1] == '\n'))
			out[o++] = '.';
		out[o++] = msg[i];
	}
	memcpy(out + o, ".\r\n", 3);
	o += 3;
	*len = o;
	return out;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int open_conn(const struct addrinfo *ai, struct conn *c)
{
	const struct addrinfo *a;
	struct timeval tv = {IO_TIMEOUT_S, 0};
	int one = 1;
	int saved = 0;

	for (a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);

		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
			saved = errno;
			close(fd);
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			c->fd = fd;
			c->len = c->pos = 0;
			c->last[0] = '\0';
			return 0;
		}
		saved = errno;
		close(fd);
	}
	snprintf(errmsg, sizeof errmsg, "connect: %s", strerror(saved));
	return -1;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errmsg, sizeof errmsg, "send: %s", strerror(errno));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One reply line (without CRLF) into LINE; -1 on error/EOF/overlong. */
static int read_line(struct conn *c, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		while (c->pos < c->len) {
			char ch = c->buf[c->pos++];

			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = '\0';
				return 0;
			}
			if (n + 1 >= cap) {
				snprintf(errmsg, sizeof errmsg, "reply line too long");
				return -1;
			}
			line[n++] = ch;
		}
		for (;;) {
			ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);

			if (r > 0) {
				c->len = (size_t)r;
				c->pos = 0;
				break;
			}
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				snprintf(errmsg, sizeof errmsg, "connection closed by server");
			else
				snprintf(errmsg, sizeof errmsg, "recv: %s", strerror(errno));
			return -1;
		}
	}
}

/*
 * Read a complete (possibly multi-line) reply and check that its code starts
 * with the digit WANT.  WHAT names the step for error messages.
 */
static int expect(struct conn *c, char want, const char *what)
{
	char line[sizeof c->last];
	char code[4] = {0};

	for (;;) {
		if (read_line(c, line, sizeof line) < 0) {
			char tmp[sizeof errmsg];

			snprintf(tmp, sizeof tmp, "%s", errmsg);
			snprintf(errmsg, sizeof errmsg, "%.64s: %.900s", what, tmp);
			return -1;
		}
		memcpy(c->last, line, sizeof line);
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			snprintf(errmsg, sizeof errmsg, "%s: malformed reply: %s", what, line);
			return -1;
		}
		if (code[0] == '\0')
			memcpy(code, line, 3);
		else if (memcmp(code, line, 3) != 0) {
			snprintf(errmsg, sizeof errmsg, "%s: inconsistent multi-line reply: %s",
				 what, line);
			return -1;
		}
		if (line[3] != '-')
			break;
	}
	if (code[0] != want) {
		snprintf(errmsg, sizeof errmsg, "%s: unexpected reply: %s", what, c->last);
		return -1;
	}
	return 0;
}

static int command(struct conn *c, const char *cmd, char want, const char *what)
{
	if (send_all(c, cmd, strlen(cmd)) < 0)
		return -1;
	return expect(c, want, what);
}

static int deliver(const struct addrinfo *ai, const char *mail, const char *rcpt,
		   const char *data, size_t data_len)
{
	struct conn c;
	int rc = -1;

	if (open_conn(ai, &c) < 0)
		return -1;
	if (expect(&c, '2', "greeting") < 0)
		goto out;
	if (command(&c, "EHLO localhost\r\n", '2', "EHLO") < 0)
		goto out;
	if (command(&c, mail, '2', "MAIL") < 0)
		goto out;
	if (command(&c, rcpt, '2', "RCPT") < 0)
		goto out;
	if (command(&c, "DATA\r\n", '3', "DATA") < 0)
		goto out;
	if (send_all(&c, data, data_len) < 0 || expect(&c, '2', "end of data") < 0)
		goto out;
	if (command(&c, "QUIT\r\n", '2', "QUIT") < 0)
		goto out;
	rc = 0;
out:
	close(c.fd);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct addrinfo hints, *ai = NULL;
	char mail[600], rcpt[600];
	char *data;
	size_t data_len;
	long i;
	int gai;

	parse_args(argc, argv, &o);
	data = build_data(o.from, o.to, &data_len);
	if ((size_t)snprintf(mail, sizeof mail, "MAIL FROM:<%s>\r\n", o.from) >= sizeof mail ||
	    (size_t)snprintf(rcpt, sizeof rcpt, "RCPT TO:<%s>\r\n", o.to) >= sizeof rcpt) {
		fprintf(stderr, "raw_smtp: --from/--to too long\n");
		return 2;
	}

	/* Resolve once, outside the timed loop. */
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	gai = getaddrinfo(o.host, o.port, &hints, &ai);
	if (gai != 0) {
		fprintf(stderr, "raw_smtp: %s: %s\n", o.host, gai_strerror(gai));
		return 1;
	}

	for (i = 0; i < o.n; i++) {
		long long t0 = now_us();

		if (deliver(ai, mail, rcpt, data, data_len) < 0) {
			fprintf(stderr, "raw_smtp: delivery %ld failed: %s\n", i + 1, errmsg);
			freeaddrinfo(ai);
			return 1;
		}
		printf("%lld\n", now_us() - t0);
	}

	freeaddrinfo(ai);
	free(data);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "raw_smtp: write error on stdout\n");
		return 1;
	}
	return 0;
}
