#!/usr/bin/python3
"""SMTP capture server for the specs (aiosmtpd on asyncio).

Run with Debian's interpreter, which has aiosmtpd:

  /usr/bin/python3 spec/support/smtpd.py --dir DIR [--host H] [--port N]
      [--mode plain|starttls|implicit] [--cert FILE --key FILE] [--require-tls]
      [--auth USER:PASSWORD | --auth-file FILE] [--auth-required]
      [--auth-plaintext] [--oauth-token-file FILE [--oauth-only]
      [--oauth-mechs XOAUTH2|OAUTHBEARER|XOAUTH2,OAUTHBEARER]]
      [--behaviour BEHAVIOUR] [--debug]

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

OAuth (--oauth-token-file FILE): AUTH also offers XOAUTH2 and OAUTHBEARER
(--oauth-mechs picks which; --oauth-only drops LOGIN and PLAIN even with
--auth). The bearer token must equal FILE's content, stripped, read at each
AUTH, so the token never appears in argv. Either mechanism takes an initial
response or answers a bare AUTH with "334 " and reads it then:
  XOAUTH2      "user=USER\x01auth=Bearer TOKEN\x01\x01"
  OAUTHBEARER  "n,a=USER,\x01host=H\x01port=P\x01auth=Bearer TOKEN\x01\x01"
Success is "235 2.7.0 Authentication successful" and USER is auth_login in
msg-N.json. On a wrong token (or an unparsable payload):
  XOAUTH2      334 base64({"status":"401","schemes":"bearer",
                            "scope":"https://outlook.office.com/SMTP.Send"}),
               then, whatever the client's next line, "535 5.7.3 Authentication
               unsuccessful" (as Microsoft 365 does)
  OAUTHBEARER  334 base64({"status":"invalid_token"}), then, whatever the
               client's next line (normally base64 of "\x01"), "535 5.7.8
               Authentication credentials invalid" (RFC 7628)
A "*" or bad base64 at the bare-AUTH prompt gets aiosmtpd's 501.

In normal behaviour a sender whose local part is "blocked" is refused at MAIL
(553), a recipient whose local part is "nobody" at RCPT (550).

--behaviour selects one deliberate fault per run (pid and port are written as
usual in every case; client disconnects never stop the server; SIGTERM does):

  normal                normal SMTP session
  silent                accept the connection, never say anything
  greet421              greet with 421 and close (over TLS in implicit mode)
  close_after_greeting  greet "220 HOSTNAME ESMTP" and close at once (over TLS
                        in implicit mode)
  data554               normal session, but DATA itself (after the usual
                        HELO/AUTH/RCPT checks) is answered
                        "554 5.6.0 Message rejected: content refused"
  reject_after_data     DATA gets 354 and the message is read, then the final
                        dot is answered "554 5.7.1 Message rejected as spam";
                        no msg-N files are written
  drop_mid_data         DATA gets 354; the connection is closed as soon as the
                        first line of content arrives (no reply, nothing saved)
  drip                  the greeting "220 HOSTNAME ESMTP drip" is sent one byte
                        every 2 seconds, then " drip" keeps dripping the same
                        way; the line never ends (no CRLF) while the client
                        stays connected; all input is discarded (TLS-wrapped in
                        implicit mode)
  tls_stall             raw TCP, never TLS whatever --mode says: accept, read
                        and discard everything (e.g. a ClientHello), never
                        answer, keep the connection open
  starttls_stall        --mode starttls only, a hand-rolled line protocol:
                        220 greeting; EHLO -> 250-HOSTNAME / 250 STARTTLS;
                        HELO, NOOP, RSET -> 250; QUIT -> 221 and close;
                        STARTTLS -> "220 Ready to start TLS" and then silence
                        (input read and discarded, no handshake ever); anything
                        else -> 530 5.7.0 Must issue a STARTTLS command first.
                        Command lines go to commands.log
  no_starttls_auth      --mode plain only: a normal session whose EHLO offers
                        neither STARTTLS nor AUTH (--auth and
                        --oauth-token-file are ignored)

silent, tls_stall and starttls_stall never use TLS, so they need no --cert.
"""

import warnings

warnings.simplefilter("ignore")

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax

GREET_421 = b"421 4.3.2 Service not available, closing transmission channel\r\n"
DATA_554 = "554 5.6.0 Message rejected: content refused"
SPAM_554 = "554 5.7.1 Message rejected as spam"
DRIP_INTERVAL = 2.0

BEHAVIOURS = [
    "normal",
    "silent",
    "greet421",
    "close_after_greeting",
    "data554",
    "reject_after_data",
    "drop_mid_data",
    "drip",
    "tls_stall",
    "starttls_stall",
    "no_starttls_auth",
]
# Behaviours that never speak TLS, so need no certificate.
NO_TLS = ("silent", "tls_stall", "starttls_stall")

OAUTH_MECHS = ("XOAUTH2", "OAUTHBEARER")
XOAUTH2_ERROR = {
    "status": "401",
    "schemes": "bearer",
    "scope": "https://outlook.office.com/SMTP.Send",
}
XOAUTH2_535 = "535 5.7.3 Authentication unsuccessful"
OAUTHBEARER_ERROR = {"status": "invalid_token"}
OAUTHBEARER_535 = "535 5.7.8 Authentication credentials invalid"


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def local_part(address):
    return address.rpartition("@")[0] if "@" in address else address


def log_command(path, text):
    try:
        with open(path, "a", encoding="latin-1") as f:
            f.write(text + "\n")
    except OSError:
        pass


def masked_command(text):
    verb, _, rest = text.partition(" ")
    if verb.upper() == "AUTH":
        words = rest.split()
        return "AUTH %s ***" % words[0] if words else "AUTH ***"
    return text


def parse_xoauth2(blob):
    """(user, token) from "user=U\\x01auth=Bearer T\\x01\\x01", else None."""
    fields = blob.split(b"\x01")
    if len(fields) < 3 or fields[-2:] != [b"", b""]:
        return None
    user, token = None, None
    for f in fields[:-2]:
        key, sep, value = f.partition(b"=")
        if not sep:
            return None
        if key == b"user":
            user = value
        elif key == b"auth":
            token = bearer_token(value)
    if user is None or token is None:
        return None
    return user, token


def parse_oauthbearer(blob):
    """(user or b"", token) from an RFC 7628 client response, else None."""
    fields = blob.split(b"\x01")
    if len(fields) < 3 or fields[-2:] != [b"", b""]:
        return None
    gs2 = fields[0].split(b",")
    # gs2-header: cbind-flag "," [authzid] "," -- the last part is empty.
    if len(gs2) != 3 or gs2[0] not in (b"n", b"y") or gs2[2] != b"":
        return None
    user = b""
    if gs2[1]:
        if not gs2[1].startswith(b"a="):
            return None
        user = gs2[1][2:].replace(b"=2C", b",").replace(b"=3D", b"=")
    token = None
    for f in fields[1:-2]:
        key, sep, value = f.partition(b"=")
        if not sep:
            return None
        if key == b"auth":
            token = bearer_token(value)
    if token is None:
        return None
    return user, token


def bearer_token(value):
    scheme, sep, token = value.partition(b" ")
    if not sep or scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def read_token_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError:
        return b""


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

    def __init__(self, handler, *, commands_log, behaviour="normal", oauth_token_file=None,
                 **kwargs):
        # Attribute names must not start with "auth_" (see Handler).
        self._kf_oauth_token_file = oauth_token_file
        super().__init__(handler, **kwargs)
        self._kf_log_path = commands_log
        self._kf_behaviour = behaviour
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
            text = masked_command(line.rstrip(b"\r\n").decode("latin-1"))
        log_command(self._kf_log_path, text)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        self._kf_state = "auth"
        try:
            return await super().smtp_AUTH(arg)
        finally:
            self._kf_state = None

    # OAuth mechanisms. aiosmtpd offers every auth_* method; serve() excludes
    # these unless --oauth-token-file is given. Called as method(self, args).

    async def _kf_oauth_blob(self, args):
        """The decoded client response, or MISSING when already answered."""
        if len(args) == 1:
            return await self.challenge_auth("")
        try:
            return base64.b64decode(args[1].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING

    def _kf_token_ok(self, token):
        expected = read_token_file(self._kf_oauth_token_file) if self._kf_oauth_token_file else b""
        return bool(expected) and hmac.compare_digest(token, expected)

    async def _kf_oauth(self, args, parse, error, final):
        blob = await self._kf_oauth_blob(args)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        parsed = parse(blob)
        if parsed is not None and self._kf_token_ok(parsed[1]):
            return AuthResult(success=True, auth_data=parsed[0].decode("utf-8", "replace"))
        # The failure dance: an error challenge, then whatever the client
        # answers (empty line, base64 "\x01", "*", ...), the final 535.
        await self.push(b"334 " + base64.b64encode(json.dumps(error).encode("ascii")))
        await self._reader.readline()
        await self.push(final)
        return AuthResult(success=False, handled=True)

    async def auth_XOAUTH2(self, _, args):
        return await self._kf_oauth(args, parse_xoauth2, XOAUTH2_ERROR, XOAUTH2_535)

    async def auth_OAUTHBEARER(self, _, args):
        return await self._kf_oauth(args, parse_oauthbearer, OAUTHBEARER_ERROR, OAUTHBEARER_535)

    async def _kf_data_refused(self, arg):
        """aiosmtpd's own checks before DATA's 354; True if one answered."""
        if await self.check_helo_needed():
            return True
        if await self.check_auth_needed("DATA"):
            return True
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return True
        if arg:
            await self.push("501 Syntax: DATA")
            return True
        return False

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        if self._kf_behaviour == "data554":
            if not await self._kf_data_refused(arg):
                await self.push(DATA_554)
            return
        if self._kf_behaviour == "drop_mid_data":
            if await self._kf_data_refused(arg):
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            # Stays "data": nothing more from this connection is logged.
            self._kf_state = "data"
            try:
                await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError:
                pass  # an overlong first line is still a first line
            if self.transport is not None:
                self.transport.close()
            # Park until connection_lost() cancels this session, so that no
            # line already buffered is read as a command meanwhile.
            await asyncio.get_running_loop().create_future()
        self._kf_state = "data"
        try:
            return await super().smtp_DATA(arg)
        finally:
            self._kf_state = None


class Handler:
    # No attribute here may start with "auth_": aiosmtpd takes those for
    # AUTH mechanisms.
    def __init__(self, directory, offer_auth, reject_data=False):
        self.dir = directory
        self.offer_auth = offer_auth
        self.reject_data = reject_data
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
        if self.reject_data:
            return SPAM_554
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


class CloseAfterGreeting(asyncio.Protocol):
    def __init__(self, hostname):
        self.greeting = ("220 %s ESMTP\r\n" % hostname).encode("ascii")

    def connection_made(self, transport):
        transport.write(self.greeting)
        transport.close()


class Drip(asyncio.Protocol):
    """Drips a greeting line one byte at a time and never ends it."""

    def __init__(self, hostname, interval=DRIP_INTERVAL):
        self.first = ("220 %s ESMTP drip" % hostname).encode("ascii")
        self.interval = interval
        self.transport = None
        self.task = None

    def connection_made(self, transport):
        self.transport = transport
        self.task = asyncio.get_running_loop().create_task(self._drip())

    async def _drip(self):
        chunk, i = self.first, 0
        while not self.transport.is_closing():
            self.transport.write(chunk[i : i + 1])
            i += 1
            if i == len(chunk):
                chunk, i = b" drip", 0
            await asyncio.sleep(self.interval)

    def connection_lost(self, exc):
        if self.task is not None:
            self.task.cancel()


class StarttlsStall(asyncio.Protocol):
    """Offers STARTTLS, says 220 to it, then never does the handshake."""

    MAX_LINE = 4096

    def __init__(self, hostname, commands_log):
        self.hostname = hostname.encode("ascii")
        self.log_path = commands_log
        self.transport = None
        self.buf = b""
        self.done = False  # after STARTTLS or QUIT: read and discard

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"220 %s ESMTP\r\n" % self.hostname)

    def data_received(self, data):
        if self.done:
            return
        self.buf += data
        while not self.done:
            line, sep, rest = self.buf.partition(b"\n")
            if not sep:
                if len(self.buf) > self.MAX_LINE:
                    self.buf = b""
                    log_command(self.log_path, "<overlong line>")
                    self.transport.write(b"500 5.5.2 Line too long\r\n")
                return
            self.buf = rest
            self.command(line.rstrip(b"\r\n"))
        self.buf = b""

    def command(self, line):
        text = line.decode("latin-1")
        log_command(self.log_path, masked_command(text))
        verb = text.partition(" ")[0].upper()
        write = self.transport.write
        if verb == "EHLO":
            write(b"250-%s\r\n250 STARTTLS\r\n" % self.hostname)
        elif verb == "HELO":
            write(b"250 %s\r\n" % self.hostname)
        elif verb in ("NOOP", "RSET"):
            write(b"250 OK\r\n")
        elif verb == "QUIT":
            write(b"221 Bye\r\n")
            self.done = True
            self.transport.close()
        elif verb == "STARTTLS":
            write(b"220 Ready to start TLS\r\n")
            self.done = True
        else:
            write(b"530 5.7.0 Must issue a STARTTLS command first\r\n")


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
    p.add_argument("--auth-file", metavar="FILE",
                   help="read USER:PASSWORD from FILE, keeping it out of argv")
    p.add_argument("--auth-required", action="store_true")
    p.add_argument("--auth-plaintext", action="store_true")
    p.add_argument("--oauth-token-file", metavar="FILE",
                   help="offer XOAUTH2/OAUTHBEARER; the valid token is FILE's content")
    p.add_argument("--oauth-only", action="store_true",
                   help="offer only the OAuth mechanisms, not LOGIN/PLAIN")
    p.add_argument("--oauth-mechs", default="XOAUTH2,OAUTHBEARER",
                   metavar="XOAUTH2|OAUTHBEARER|XOAUTH2,OAUTHBEARER")
    p.add_argument("--behaviour", choices=BEHAVIOURS, default="normal")
    p.add_argument("--hostname", default="localhost", help="name in the greeting and EHLO reply")
    p.add_argument("--debug", action="store_true", help="log the SMTP traffic to stderr")
    args = p.parse_args(argv)
    if args.behaviour == "starttls_stall" and args.mode != "starttls":
        p.error("--behaviour starttls_stall needs --mode starttls")
    if args.behaviour == "no_starttls_auth" and args.mode != "plain":
        p.error("--behaviour no_starttls_auth needs --mode plain")
    if args.mode != "plain" and args.behaviour not in NO_TLS and not (args.cert and args.key):
        p.error("--mode %s needs --cert and --key" % args.mode)
    if args.auth_file is not None:
        with open(args.auth_file, encoding="utf-8") as f:
            args.auth = f.read().rstrip("\r\n")
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASSWORD")
    mechs = [m.strip().upper() for m in args.oauth_mechs.split(",") if m.strip()]
    if not mechs or any(m not in OAUTH_MECHS for m in mechs):
        p.error("--oauth-mechs takes XOAUTH2, OAUTHBEARER or XOAUTH2,OAUTHBEARER")
    args.oauth_mechs = mechs
    if args.oauth_only and args.oauth_token_file is None:
        p.error("--oauth-only needs --oauth-token-file")
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
    uses_tls = args.mode != "plain" and args.behaviour not in NO_TLS
    ctx = tls_context(args) if uses_tls else None
    implicit = ctx if args.mode == "implicit" else None
    commands_log = os.path.join(directory, "commands.log")

    if args.behaviour in ("silent", "tls_stall"):
        factory, server_ssl = Silent, None
    elif args.behaviour == "greet421":
        factory, server_ssl = Greet421, implicit
    elif args.behaviour == "close_after_greeting":
        factory, server_ssl = (lambda: CloseAfterGreeting(args.hostname)), implicit
    elif args.behaviour == "drip":
        factory, server_ssl = (lambda: Drip(args.hostname)), implicit
    elif args.behaviour == "starttls_stall":
        factory, server_ssl = (lambda: StarttlsStall(args.hostname, commands_log)), None
    else:
        auth_enabled = args.auth is not None and args.behaviour != "no_starttls_auth"
        oauth_file = args.oauth_token_file
        oauth_enabled = oauth_file is not None and args.behaviour != "no_starttls_auth"
        if oauth_enabled:
            oauth_file = os.path.abspath(oauth_file)
        if args.oauth_only and oauth_enabled:
            auth_enabled = False
        kwargs = dict(
            hostname=args.hostname,
            auth_required=args.auth_required,
            # Implicit TLS is TLS too, but aiosmtpd only counts STARTTLS.
            auth_require_tls=not (args.auth_plaintext or args.mode == "implicit"),
        )
        excluded = []
        if auth_enabled:
            user, _, password = args.auth.partition(":")
            kwargs["authenticator"] = make_authenticator(user, password)
        else:
            excluded += ["LOGIN", "PLAIN"]
        excluded += [m for m in OAUTH_MECHS if not (oauth_enabled and m in args.oauth_mechs)]
        kwargs["auth_exclude_mechanism"] = excluded
        if args.mode == "starttls":
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = args.require_tls
        handler = Handler(
            directory, auth_enabled or oauth_enabled,
            reject_data=args.behaviour == "reject_after_data",
        )

        def factory():
            return CaptureSMTP(
                handler, commands_log=commands_log, behaviour=args.behaviour,
                oauth_token_file=oauth_file if oauth_enabled else None, loop=loop, **kwargs
            )

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
