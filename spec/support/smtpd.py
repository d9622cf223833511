#!/usr/bin/python3
"""SMTP capture server for the specs (aiosmtpd on asyncio).

Run with Debian's interpreter, which has aiosmtpd:

  /usr/bin/python3 spec/support/smtpd.py --dir DIR [--host H] [--port N]
      [--mode plain|starttls|implicit] [--cert FILE --key FILE] [--require-tls]
      [--auth USER:PASSWORD] [--auth-required] [--auth-plaintext]
      [--behaviour normal|silent|greet421] [--debug]

Files in DIR:
  pid           this process's pid (written before port)
  port          the listening TCP port, "N\\n" (written atomically; a stale one
                is removed at start, so its appearance means "ready")
  msg-N.eml     the message data of accepted message N (1, 2, ...), as received
                (dot-unstuffed, CRLF line ends)
  msg-N.json    its envelope and session facts; written last, atomically
  commands.log  each command line received, one per line (raw bytes minus CRLF);
                message data is not logged, AUTH is logged as "AUTH <MECH> ***"
                and every line of the AUTH exchange as "***"

In normal behaviour a sender whose local part is "blocked" is refused at MAIL
(553), a recipient whose local part is "nobody" at RCPT (550).
"""

import warnings

warnings.simplefilter("ignore")

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, syntax

GREET_421 = b"421 4.3.2 Service not available, closing transmission channel\r\n"


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def local_part(address):
    return address.rpartition("@")[0] if "@" in address else address


class LineLoggingReader(asyncio.StreamReader):
    """StreamReader that reports every line it hands out.

    aiosmtpd reads command lines, AUTH responses (readline, which calls
    readuntil) and DATA lines all through readuntil(); the protocol decides
    what to do with each line from the state it is in.
    """

    kf_sink = None

    async def readuntil(self, separator=b"\n"):
        try:
            line = await super().readuntil(separator)
        except asyncio.LimitOverrunError:
            if self.kf_sink is not None:
                self.kf_sink(None)
            raise
        if self.kf_sink is not None:
            self.kf_sink(line)
        return line


class CaptureSMTP(SMTP):
    """aiosmtpd's SMTP, logging command lines with AUTH secrets masked."""

    def __init__(self, handler, *, commands_log, **kwargs):
        super().__init__(handler, **kwargs)
        self._kf_log_path = commands_log
        self._kf_state = None  # None (commands), "auth" or "data"
        self._kf_overlong = False

    def _client_connected_cb(self, reader, writer):
        reader.__class__ = LineLoggingReader
        reader.kf_sink = self._kf_line
        return super()._client_connected_cb(reader, writer)

    def _kf_line(self, line):
        if self._kf_state == "data":
            return
        if self._kf_state == "auth":
            text = "***"
        elif line is None:
            # Too long for the reader; aiosmtpd discards it in pieces.
            self._kf_overlong = True
            return
        elif self._kf_overlong:
            self._kf_overlong = False
            text = "<overlong line>"
        else:
            text = line.rstrip(b"\r\n").decode("latin-1")
            verb, _, rest = text.partition(" ")
            if verb.upper() == "AUTH":
                words = rest.split()
                text = "AUTH %s ***" % words[0] if words else "AUTH ***"
        try:
            with open(self._kf_log_path, "a", encoding="latin-1") as f:
                f.write(text + "\n")
        except OSError:
            pass

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        self._kf_state = "auth"
        try:
            return await super().smtp_AUTH(arg)
        finally:
            self._kf_state = None

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        self._kf_state = "data"
        try:
            return await super().smtp_DATA(arg)
        finally:
            self._kf_state = None


class Handler:
    # No attribute here may start with "auth_": aiosmtpd takes those for
    # AUTH mechanisms.
    def __init__(self, directory, offer_auth):
        self.dir = directory
        self.offer_auth = offer_auth
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd leaves setting host_name to this hook when one exists.
        session.host_name = hostname
        if not self.offer_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if local_part(address).lower() == "blocked":
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if local_part(address).lower() == "nobody":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        data = envelope.original_content or b""
        transport = server.transport
        tls = bool(
            server._tls_protocol is not None
            or (transport is not None and transport.get_extra_info("ssl_object") is not None)
        )
        login = session.auth_data if session.authenticated else None
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "helo": session.host_name,
            "tls": tls,
            "auth_login": login,
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "size": len(data),
        }
        base = os.path.join(self.dir, "msg-%d" % n)
        atomic_write(base + ".eml", data)
        atomic_write(base + ".json", json.dumps(meta).encode("utf-8"))
        return "250 2.0.0 OK: queued as KF%d" % n


class Silent(asyncio.Protocol):
    """Accepts the connection and never says anything."""


class Greet421(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(GREET_421)
        transport.close()


def make_authenticator(user, password):
    user_b = user.encode("utf-8")
    password_b = password.encode("utf-8")

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", None)
        secret = getattr(auth_data, "password", None)
        if (
            isinstance(login, bytes)
            and isinstance(secret, bytes)
            and hmac.compare_digest(login, user_b)
            and hmac.compare_digest(secret, password_b)
        ):
            return AuthResult(success=True, auth_data=login.decode("utf-8", "replace"))
        return AuthResult(success=False, handled=False)

    return authenticator


def parse_args(argv):
    p = argparse.ArgumentParser(description="SMTP capture server for the specs")
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["plain", "starttls", "implicit"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--auth", metavar="USER:PASSWORD")
    p.add_argument("--auth-required", action="store_true")
    p.add_argument("--auth-plaintext", action="store_true")
    p.add_argument("--behaviour", choices=["normal", "silent", "greet421"], default="normal")
    p.add_argument("--hostname", default="localhost", help="name in the greeting and EHLO reply")
    p.add_argument("--debug", action="store_true", help="log the SMTP traffic to stderr")
    args = p.parse_args(argv)
    if args.mode != "plain" and not (args.cert and args.key):
        p.error("--mode %s needs --cert and --key" % args.mode)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASSWORD")
    return args


def tls_context(args):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def serve(args):
    loop = asyncio.get_running_loop()
    if not args.debug:
        # Client-side aborts (failed handshakes, resets) are expected in specs.
        loop.set_exception_handler(lambda loop, context: None)

    directory = os.path.abspath(args.dir)
    ctx = tls_context(args) if args.mode != "plain" else None
    implicit = ctx if args.mode == "implicit" else None

    if args.behaviour == "silent":
        factory, server_ssl = Silent, None
    elif args.behaviour == "greet421":
        factory, server_ssl = Greet421, implicit
    else:
        auth_enabled = args.auth is not None
        kwargs = dict(
            hostname=args.hostname,
            auth_required=args.auth_required,
            # Implicit TLS is TLS too, but aiosmtpd only counts STARTTLS.
            auth_require_tls=not (args.auth_plaintext or args.mode == "implicit"),
        )
        if auth_enabled:
            user, _, password = args.auth.partition(":")
            kwargs["authenticator"] = make_authenticator(user, password)
        else:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        if args.mode == "starttls":
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = args.require_tls
        handler = Handler(directory, auth_enabled)
        commands_log = os.path.join(directory, "commands.log")

        def factory():
            return CaptureSMTP(handler, commands_log=commands_log, loop=loop, **kwargs)

        server_ssl = implicit

    server = await loop.create_server(factory, host=args.host, port=args.port, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    atomic_write(os.path.join(directory, "pid"), b"%d\n" % os.getpid())
    atomic_write(os.path.join(directory, "port"), b"%d\n" % port)

    await stop.wait()
    server.close()


def main(argv=None):
    args = parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        logging.getLogger("mail.log").disabled = True
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    os.makedirs(args.dir, exist_ok=True)
    try:
        os.unlink(os.path.join(args.dir, "port"))
    except FileNotFoundError:
        pass
    try:
        asyncio.run(serve(args))
    except (OSError, ssl.SSLError) as e:
        print("smtpd.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
