#!/usr/bin/python3
"""smtplib_loop: Python's smtplib as a contender in kfsmtp's benchmark.

usage: smtplib_loop.py --host H --port P --mode plain|starttls|implicit --n N
           [--ca CAFILE] [--user U --password-file F] [--mech PLAIN|LOGIN]
           [--token-url URL --client-id ID --client-secret-file F
            [--scope S] [--token each|once]] [--from ADDR] [--to ADDR]

N sequential deliveries of one small fixed message, each on a new TCP
connection; in starttls mode EHLO, STARTTLS, EHLO, AUTH (PLAIN unless --mech),
in implicit mode TLS from the first byte (SMTP_SSL), with a full TLS
handshake every time (no session is handed to the next connection), the server
certificate checked against --ca and --host.

With --token-url: an OAuth client-credentials token from that HTTPS endpoint
(http.client, one kept-alive connection for the run), then AUTH XOAUTH2 with
the --user mailbox. --token each fetches one per delivery (timed with it);
once fetches one before the first delivery.

stdout: one line per delivery, its latency in integer microseconds.
Exit 0 when every delivery succeeded; 1 (message on stderr) otherwise;
2 for usage errors.
"""
import argparse
import http.client
import json
import smtplib
import ssl
import sys
import time
import urllib.parse

TIMEOUT = 30


def build_message(sender, recipient):
    return (
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
        "Nothing in it needs to be read by anyone; it only has to arrive intact.\r\n"
        % (time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()), sender, recipient)
    ).encode("utf-8")


def parse_args():
    p = argparse.ArgumentParser(description="smtplib delivery loop")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "implicit"], required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--ca")
    p.add_argument("--user")
    p.add_argument("--password-file")
    p.add_argument("--mech", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--token-url")
    p.add_argument("--client-id")
    p.add_argument("--client-secret-file")
    p.add_argument("--scope", default="bench")
    p.add_argument("--token", choices=["each", "once"], default="each")
    p.add_argument("--from", dest="sender", default="kf@example.com")
    p.add_argument("--to", dest="recipient", default="ops@example.com")
    args = p.parse_args()  # exits 2 on usage errors
    if args.token_url and not (args.client_id and args.client_secret_file and args.user):
        p.error("--token-url needs --client-id, --client-secret-file and --user")
    if not args.token_url and (args.user is None) != (args.password_file is None):
        p.error("--user and --password-file go together")
    if args.n < 0:
        p.error("--n must be >= 0")
    return args


def read_password(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


class TokenClient:
    """The client-credentials request on one kept-alive HTTPS connection."""

    def __init__(self, args, ctx):
        url = urllib.parse.urlsplit(args.token_url)
        self.path = url.path or "/"
        self.conn = (http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=TIMEOUT)
                     if url.scheme == "https" else http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT))
        with open(args.client_secret_file, encoding="utf-8") as f:
            secret = f.readline().rstrip("\r\n")
        self.body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": args.client_id,
                                            "client_secret": secret, "scope": args.scope})

    def fetch(self):
        self.conn.request("POST", self.path, self.body, {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        r = self.conn.getresponse()
        doc = json.loads(r.read())
        if r.status != 200 or "access_token" not in doc:
            raise OSError("token endpoint answered %d" % r.status)
        return doc["access_token"]


def deliver(args, ctx, password, message, token=None):
    # local_hostname given: smtplib would otherwise run socket.getfqdn() (a
    # resolver lookup) on every connection just to name itself in EHLO.
    if args.mode == "implicit":
        s = smtplib.SMTP_SSL(args.host, args.port, local_hostname="localhost", timeout=TIMEOUT, context=ctx)
    else:
        s = smtplib.SMTP(args.host, args.port, local_hostname="localhost", timeout=TIMEOUT)
    try:
        s.ehlo()
        if args.mode == "starttls":
            if not s.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
            s.starttls(context=ctx)
            s.ehlo()
        if token is not None:
            blob = "user=%s\x01auth=Bearer %s\x01\x01" % (args.user, token)
            s.auth("XOAUTH2", lambda challenge=None: blob if challenge is None else "")
        elif args.user is not None:
            s.user, s.password = args.user, password
            s.auth(args.mech, s.auth_plain if args.mech == "PLAIN" else s.auth_login)
        refused = s.sendmail(args.sender, [args.recipient], message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        code, msg = s.quit()
        if code // 100 != 2:
            raise smtplib.SMTPResponseException(code, msg)
    finally:
        s.close()


def main():
    args = parse_args()
    password = read_password(args.password_file) if args.password_file else None
    ctx = None
    if args.mode != "plain" or (args.token_url or "").startswith("https:"):
        # One context for the run (CA loaded once); client-side OpenSSL keeps
        # no session cache, and no session is passed on, so every connection
        # does a full handshake.
        ctx = ssl.create_default_context(cafile=args.ca)
    message = build_message(args.sender, args.recipient)
    tokens = TokenClient(args, ctx) if args.token_url else None
    token = tokens.fetch() if tokens and args.token == "once" else None
    for i in range(args.n):
        t0 = time.monotonic_ns()
        try:
            if tokens and args.token == "each":
                token = tokens.fetch()
            deliver(args, ctx, password, message, token)
        except (OSError, smtplib.SMTPException) as e:
            print("smtplib_loop: delivery %d failed: %s: %s" % (i + 1, type(e).__name__, e),
                  file=sys.stderr)
            return 1
        # At once: bench/latency.py reads the relay's count at each line.
        print("%d" % ((time.monotonic_ns() - t0) // 1000), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
