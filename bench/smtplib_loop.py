#!/usr/bin/python3
"""smtplib_loop: Python's smtplib as a contender in kfsmtp's benchmark.

usage: smtplib_loop.py --host H --port P --mode plain|starttls --n N
           [--ca CAFILE] [--user U --password-file F] [--from ADDR] [--to ADDR]

N sequential deliveries of one small fixed message, each on a new TCP
connection; in starttls mode EHLO, STARTTLS, EHLO, AUTH PLAIN, with a full TLS
handshake every time (no session is handed to the next connection), the server
certificate checked against --ca and --host.

stdout: one line per delivery, its latency in integer microseconds.
Exit 0 when every delivery succeeded; 1 (message on stderr) otherwise;
2 for usage errors.
"""
import argparse
import smtplib
import ssl
import sys
import time

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
    p.add_argument("--mode", choices=["plain", "starttls"], required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--ca")
    p.add_argument("--user")
    p.add_argument("--password-file")
    p.add_argument("--from", dest="sender", default="kf@example.com")
    p.add_argument("--to", dest="recipient", default="ops@example.com")
    args = p.parse_args()  # exits 2 on usage errors
    if (args.user is None) != (args.password_file is None):
        p.error("--user and --password-file go together")
    if args.n < 0:
        p.error("--n must be >= 0")
    return args


def read_password(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def deliver(args, ctx, password, message):
    # local_hostname given: smtplib would otherwise run socket.getfqdn() (a
    # resolver lookup) on every connection just to name itself in EHLO.
    s = smtplib.SMTP(args.host, args.port, local_hostname="localhost", timeout=TIMEOUT)
    try:
        s.ehlo()
        if args.mode == "starttls":
            if not s.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
            s.starttls(context=ctx)
            s.ehlo()
        if args.user is not None:
            s.user, s.password = args.user, password
            s.auth("PLAIN", s.auth_plain)
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
    if args.mode == "starttls":
        # One context for the run (CA loaded once); client-side OpenSSL keeps
        # no session cache, and no session is passed on, so every connection
        # does a full handshake.
        ctx = ssl.create_default_context(cafile=args.ca)
    message = build_message(args.sender, args.recipient)
    out = []
    for i in range(args.n):
        t0 = time.monotonic_ns()
        try:
            deliver(args, ctx, password, message)
        except (OSError, smtplib.SMTPException) as e:
            sys.stdout.write("".join(out))
            sys.stdout.flush()
            print("smtplib_loop: delivery %d failed: %s: %s" % (i + 1, type(e).__name__, e),
                  file=sys.stderr)
            return 1
        out.append("%d\n" % ((time.monotonic_ns() - t0) // 1000))
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
