#!/usr/bin/python3
"""OAuth 2.0 client-credentials token endpoint for the specs (http.server only).

  /usr/bin/python3 spec/support/token_server.py --dir DIR --cert CERT --key KEY
      --client-id ID --client-secret-file F [--expires-in SECONDS [--expires-in-text]] [--http]
      [--host H] [--port N] [--delay-ms N]

Serves HTTPS (plain HTTP with --http, then --cert/--key are not needed) on
127.0.0.1, an ephemeral port unless --port. The client secret is the first
line of F, so it never appears in argv.

--delay-ms holds every answer back that long (a slow endpoint).
--echo-secret quotes a refused client secret, decoded and as sent, in the
401's error and error_description (a careless endpoint).

Any POST path is the token endpoint (the specs use /token). The body is
application/x-www-form-urlencoded: grant_type=client_credentials, client_id,
client_secret, scope (and optionally resource or audience). The client may
authenticate with HTTP Basic (client_secret_basic) instead of body fields.

  200 {"access_token": "tok-N-<hex>", "token_type": "Bearer", "expires_in": S}
      (S as a JSON string with --expires-in-text, as Azure AD v1 sends it)
      N counts issued tokens from 1
  400 {"error": "invalid_request", ...}          no grant_type / bad body
  400 {"error": "unsupported_grant_type", ...}   grant_type not client_credentials
  401 {"error": "invalid_client", "error_description": "AADSTS7000215: ..."}
      wrong client_id or client_secret
  405 {"error": "invalid_request", ...}          method other than POST

Files in DIR:
  pid                this process's pid (written before port)
  port               the listening TCP port, "N\\n" (written atomically; a
                     stale one is removed at start, so it appearing means ready)
  connections        number of TCP connections accepted so far (a client
                     that keeps its connection alive sends many requests on one)
  requests           number of HTTP requests received so far (any method or
                     outcome), rewritten atomically after each
  token              the current valid token (the latest issued), atomically
  issued             every issued token, one per line, oldest first
  last_request.json  the last POST: {"path", "grant_type", "client_id",
                     "scope", "resource"?, "audience"?, "status", "headers"};
                     headers is every request header as [name, value] in
                     the order received, but Authorization; never the
                     secret; written atomically

Quiet: no request log, no tracebacks. SIGTERM or SIGINT stops it (exit 0).
"""

import argparse
import base64
import binascii
import hmac
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONNECTION_TIMEOUT = 10.0
MAX_BODY = 64 * 1024


def atomic_write(path, data):
    tmp = "%s.tmp.%d" % (path, threading.get_ident())
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class State:
    def __init__(self, directory, client_id, client_secret, expires_in, delay_ms=0,
                 echo_secret=False):
        self.delay_ms = delay_ms
        self.echo_secret = echo_secret
        self.dir = directory
        self.client_id = client_id.encode("utf-8")
        self.client_secret = client_secret.encode("utf-8")
        self.expires_in = expires_in
        self.expires_in_text = False
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.issued = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    def count_request(self):
        with self.lock:
            self.requests += 1
            atomic_write(self.path("requests"), b"%d\n" % self.requests)

    def count_connection(self):
        with self.lock:
            self.connections += 1
            atomic_write(self.path("connections"), b"%d\n" % self.connections)

    def record(self, info):
        with self.lock:
            atomic_write(self.path("last_request.json"), json.dumps(info).encode("utf-8"))

    def client_ok(self, client_id, client_secret):
        if client_id is None or client_secret is None:
            return False
        id_ok = hmac.compare_digest(client_id.encode("utf-8"), self.client_id)
        secret_ok = hmac.compare_digest(client_secret.encode("utf-8"), self.client_secret)
        return id_ok and secret_ok

    def issue(self):
        with self.lock:
            self.issued += 1
            token = "tok-%d-%s" % (self.issued, secrets.token_hex(16))
            atomic_write(self.path("token"), token.encode("ascii") + b"\n")
            with open(self.path("issued"), "a", encoding="ascii") as f:
                f.write(token + "\n")
            return token


class TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kfsmtp-token-server"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT

    def log_message(self, format, *args):
        pass

    def handle(self):
        # Once per connection (its requests follow one another in here).
        self.server.state.count_connection()
        super().handle()

    def send_json(self, status, obj, extra_headers=()):
        body = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_allowed(self):
        self.server.state.count_request()
        self.discard_body()
        self.send_json(405, {"error": "invalid_request",
                             "error_description": "Use POST for the token endpoint."},
                       [("Allow", "POST")])

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = not_allowed

    def discard_body(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length)

    def basic_credentials(self):
        value = self.headers.get("Authorization") or ""
        scheme, _, blob = value.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            decoded = base64.b64decode(blob.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None, None
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)

    def do_POST(self):
        state = self.server.state
        state.count_request()
        body = self.discard_body()
        time.sleep(state.delay_ms / 1000)
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            form = None

        def field(name):
            values = form.get(name) if form else None
            return values[0] if values else None

        info = {"path": self.path}
        # Authorization may carry the client secret (client_secret_basic).
        info["headers"] = [[name, value] for name, value in self.headers.items()
                           if name.lower() != "authorization"]
        for name in ("grant_type", "client_id", "scope", "resource", "audience"):
            value = field(name)
            if value is not None or name in ("grant_type", "client_id", "scope"):
                info[name] = value

        client_id, client_secret = field("client_id"), field("client_secret")
        if client_id is None and client_secret is None:
            client_id, client_secret = self.basic_credentials()
            info["client_id"] = client_id

        grant_type = field("grant_type")
        if form is None or grant_type is None:
            status, reply = 400, {
                "error": "invalid_request",
                "error_description": "AADSTS900144: The request body must contain "
                                     "the following parameter: 'grant_type'.",
            }
        elif grant_type != "client_credentials":
            status, reply = 400, {
                "error": "unsupported_grant_type",
                "error_description": "AADSTS70003: The app requested an unsupported "
                                     "grant type '%s'." % grant_type,
            }
        elif not state.client_ok(client_id, client_secret):
            description = "AADSTS7000215: Invalid client secret provided."
            if state.echo_secret:
                # A careless endpoint: the secret as decoded, and as sent.
                raw = re.search(r"(?:^|&)client_secret=([^&]*)", body.decode("latin-1"))
                description += " Secret: %s (sent as %s)" % (client_secret, raw.group(1) if raw else "")
            status, reply = 401, {
                "error": "invalid_client" + (" " + client_secret if state.echo_secret else ""),
                "error_description": description,
            }
        else:
            status, reply = 200, {
                "access_token": state.issue(),
                "token_type": "Bearer",
                "expires_in": str(state.expires_in) if state.expires_in_text else state.expires_in,
            }
        info["status"] = status
        state.record(info)
        self.send_json(status, reply)


class TokenServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, state, ctx):
        self.state = state
        self.ctx = ctx
        super().__init__(address, TokenHandler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ctx is not None:
            # The handshake happens in the request's thread (finish_request),
            # so a stalled client cannot hold up accept().
            sock = self.ctx.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request, client_address):
        request.settimeout(CONNECTION_TIMEOUT)
        if self.ctx is not None:
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass


def parse_args(argv):
    p = argparse.ArgumentParser(description="OAuth 2.0 token endpoint for the specs")
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret-file", required=True, metavar="FILE",
                   help="the client secret is the first line of FILE")
    p.add_argument("--expires-in", type=int, default=3600, metavar="SECONDS")
    p.add_argument("--expires-in-text", action="store_true")
    p.add_argument("--delay-ms", type=int, default=0, metavar="N")
    p.add_argument("--echo-secret", action="store_true",
                   help="quote a refused client secret in error and error_description")
    args = p.parse_args(argv)
    if not args.http and not (args.cert and args.key):
        p.error("HTTPS needs --cert and --key (or use --http)")
    with open(args.client_secret_file, encoding="utf-8") as f:
        args.client_secret = f.readline().rstrip("\r\n")
    return args


def main(argv=None):
    args = parse_args(argv)
    directory = os.path.abspath(args.dir)
    os.makedirs(directory, exist_ok=True)
    try:
        os.unlink(os.path.join(directory, "port"))
    except FileNotFoundError:
        pass

    # SIGTERM/SIGINT are blocked before any thread exists (threads inherit
    # the mask) and taken with sigwait() by the main thread, so a signal can
    # never land in a request thread and wait for a poll tick.
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    state = State(directory, args.client_id, args.client_secret, args.expires_in, args.delay_ms,
                  args.echo_secret)
    state.expires_in_text = args.expires_in_text
    try:
        ctx = None
        if not args.http:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.cert, args.key)
        server = TokenServer((args.host, args.port), state, ctx)
    except (OSError, ssl.SSLError) as e:
        print("token_server.py: %s" % e, file=sys.stderr)
        return 1

    port = server.server_address[1]
    atomic_write(os.path.join(directory, "pid"), b"%d\n" % os.getpid())
    atomic_write(os.path.join(directory, "port"), b"%d\n" % port)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               daemon=True)
    serving.start()
    signal.sigwait(signals)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
