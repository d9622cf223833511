"""The latency part of `make bench`: one test delivery at a time through
delay_relay.py, so that every round trip costs 20 ms, as a relay in another
data centre would. Round trips are counted by the relay (turns of the
conversation), time by the client; bench/README.md derives the minimum each
scenario allows.

    run(work, certs_hint, quick) -> {(scenario, contender): row}

Servers (bench/mail_servers.lua): Debian's Postfix with Dovecot SASL, and
Exim, whose oauth port offers XOAUTH2 alone, as Microsoft 365 does, and takes
the token the specs' endpoint issued last (spec/support/token_server.py,
HTTPS, HTTP/1.1 keep-alive); one endpoint's tokens live 60 s, so kfsmtp
never keeps them, the other's an hour.
"""
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from delay_relay import Relay

PY = "/usr/bin/python3"
DELAY_MS = 10.0
RTT_MS = 2 * DELAY_MS


def _wait_file(path, what, timeout=15):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise SystemExit("%s did not start" % what)
        time.sleep(0.02)
    return open(path).read().strip()


class Servers:
    """Postfix (+Dovecot), Exim and two token endpoints, each listener used
    behind a relay of its own."""

    def __init__(self, work, procs):
        self.work, self.procs = work, procs
        token_dirs = {kind: os.path.join(work, "token-" + kind) for kind in ("fresh", "cached")}
        # Exim reads the token files as its own user (Debian-exim), not root.
        os.chmod(work, 0o755)
        for d in token_dirs.values():
            os.makedirs(d, mode=0o755)
        # Exim's oauth port takes what either endpoint issued last.
        self.mail = subprocess.Popen(["lua5.4", "bench/mail_servers.lua"] +
                                     [os.path.join(d, "token") for d in token_dirs.values()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.mail.stdout.readline()
        if not line:
            raise SystemExit("bench/mail_servers.lua did not start")
        self.pf = json.loads(line)
        self.ca, cert, key = self.pf["ca"], self.pf["cert"], self.pf["key"]
        self.secret_file = os.path.join(work, "client-secret")
        with open(self.secret_file, "w") as f:
            f.write("bench-client-secret\n")
        self.relays = {}
        for server, listener in (("postfix", "mx"), ("postfix", "submission_plain"), ("postfix", "smtps_login"),
                                 ("exim", "plain"), ("exim", "oauth")):
            self.relays[server + "_" + listener] = Relay("127.0.0.1", self.pf[server][listener], DELAY_MS).start()
        # A token that lives 60 s is never cached (kfsmtp keeps a token until
        # a minute before it expires): every test fetches a fresh one.
        for kind, expires in (("fresh", 60), ("cached", 3600)):
            tdir = token_dirs[kind]
            self._start("%s spec/support/token_server.py --dir %s --cert %s --key %s --client-id bench "
                        "--client-secret-file %s --expires-in %d" % (PY, tdir, cert, key, self.secret_file, expires))
            tport = int(_wait_file(os.path.join(tdir, "port"), "token_server.py"))
            self.relays["token_" + kind] = Relay("127.0.0.1", tport, DELAY_MS).start()

    def _start(self, cmd):
        p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)

    def port(self, name):
        return self.relays[name].listen_port

    def token_url(self, kind):
        return "https://127.0.0.1:%d/token" % self.port("token_" + kind)

    def fetch_token(self, kind):
        """A token fetched outside any timing (for the curl CLI's cached case)."""
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "bench",
                                       "client_secret": "bench-client-secret", "scope": "bench"}).encode()
        ctx = ssl.create_default_context(cafile=self.ca)
        with urllib.request.urlopen(self.token_url(kind), body, context=ctx, timeout=10) as r:
            return json.load(r)["access_token"]

    def stop(self):
        for r in self.relays.values():
            r.stop()
        try:
            self.mail.stdin.write("quit\n")
            self.mail.stdin.close()
            self.mail.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.mail.kill()


# The scenarios: (key, title, relays used, minimum for the first test of a
# process, minimum for a later one). bench/README.md derives the minimums.
SCENARIOS = [
    ("plain", "Postfix: plain, anonymous", ("postfix_mx",), 7, 7),
    ("starttls", "Postfix: STARTTLS + AUTH PLAIN", ("postfix_submission_plain",), 11, 11),
    ("exim_starttls", "Exim: STARTTLS + AUTH PLAIN", ("exim_plain",), 11, 11),
    ("implicit", "Postfix: implicit TLS + AUTH LOGIN", ("postfix_smtps_login",), 10, 10),
    ("oauth_fresh", "Exim: type 3, fresh token (STARTTLS + XOAUTH2)", ("token_fresh", "exim_oauth"), 13, 12),
    ("oauth_cached", "Exim: type 3, cached token (STARTTLS + XOAUTH2)", ("token_cached", "exim_oauth"), 13, 11),
]

CONTENDERS = ["kfsmtp.test() Lua 5.4", "bare libcurl", "Python smtplib", "swaks (process each)",
              "curl CLI (process each)"]


def _commands(sv, key, n):
    """{contender: (kind, command)} for one scenario; a contender that
    cannot do it is absent (swaks 20201014 has no XOAUTH2)."""
    pf, ca, pwfile = sv.pf, sv.ca, sv.pf["password_file"]
    password = open(pwfile).read().strip()
    host = "127.0.0.1"
    if key == "plain":
        port, mode, sender, rcpt, auth = sv.port("postfix_mx"), "plain", pf["sender"], pf["postfix_rcpt"], ""
    elif key == "starttls":
        port, mode, sender, rcpt = sv.port("postfix_submission_plain"), "starttls", pf["sender"], "someone@example.org"
        auth = "PLAIN"
    elif key == "exim_starttls":
        port, mode, sender, rcpt = sv.port("exim_plain"), "starttls", pf["sender"], "someone@example.org"
        auth = "PLAIN"
    elif key == "implicit":
        port, mode, sender, rcpt = sv.port("postfix_smtps_login"), "implicit", pf["sender"], "someone@example.org"
        auth = "LOGIN"
    else:
        kind = key.split("_")[1]
        port, mode, sender, rcpt = sv.port("exim_oauth"), "starttls", "kf@example.com", "ops@example.com"
        auth = "XOAUTH2"
    common = "--host %s --port %d --mode %s --from %s --to %s" % (host, port, mode, sender, rcpt)
    if mode != "plain":
        common += " --ca %s" % ca
    if auth in ("PLAIN", "LOGIN"):
        creds = " --user %s --password-file %s" % (pf["user"], pwfile)
        lib_creds = creds + " --mech %s" % auth
    elif auth == "XOAUTH2":
        once = " --token once" if kind == "cached" else " --token each"
        creds = " --user kf@example.com --token-url %s --client-id bench --client-secret-file %s" % (
            sv.token_url(kind), sv.secret_file)
        lib_creds = creds + once
    else:
        creds = lib_creds = ""
    cmds = {
        "kfsmtp.test() Lua 5.4": ("loop", "lua5.4 bench/kfsmtp_loop.lua %s%s --n %d" % (common, creds, n)),
        "bare libcurl": ("loop", "build/bench/curl_loop --handle reuse %s%s --n %d" % (common, lib_creds, n)),
        "Python smtplib": ("loop", "%s bench/smtplib_loop.py %s%s --n %d" % (PY, common, lib_creds, n)),
    }
    msg = os.path.join(sv.work, "message.txt")
    if not os.path.exists(msg):
        with open(msg, "w") as f:
            f.write("Subject: kfsmtp latency benchmark\r\n\r\nA fixed message.\r\n")
    curl = "curl -s -S --mail-from %s --mail-rcpt %s -T %s" % (sender, rcpt, msg)
    if key == "plain":
        cmds["swaks (process each)"] = ("proc", "swaks --silent 2 --server %s:%d --from %s --to %s" % (
            host, port, sender, rcpt))
        cmds["curl CLI (process each)"] = ("proc", "%s smtp://%s:%d" % (curl, host, port))
    elif auth in ("PLAIN", "LOGIN"):
        tls = "--tls" if mode == "starttls" else "--tlsc"
        cmds["swaks (process each)"] = ("proc", "swaks --silent 2 --server %s:%d %s --tls-verify --tls-ca-path %s "
                                        "--auth %s --auth-user %s --auth-password %s --from %s --to %s" % (
                                            host, port, tls, ca, auth, pf["user"], password, sender, rcpt))
        url = "%s://%s:%d" % ("smtps" if mode == "implicit" else "smtp", host, port)
        cmds["curl CLI (process each)"] = ("proc", "%s --ssl-reqd --cacert %s --user %s:%s --login-options AUTH=%s %s" % (
            curl, ca, pf["user"], password, auth, url))
    else:
        # Cached: {bearer} is the endpoint's latest token, fetched just
        # before the run (the server takes no other).
        bearer = ("$(curl -s -S --cacert %s -d grant_type=client_credentials -d client_id=bench "
                  "-d client_secret=bench-client-secret -d scope=bench %s | sed 's/.*\"access_token\": *\"\\([^\"]*\\)\".*/\\1/')"
                  % (ca, sv.token_url(kind))) if kind == "fresh" else "{bearer}"
        cmds["curl CLI (process each)"] = ("proc", "%s --ssl-reqd --cacert %s --user kf@example.com: "
                                           "--oauth2-bearer \"%s\" smtp://%s:%d" % (curl, ca, bearer, host, port))
    return cmds


def _turns(sv, names):
    return sum(sv.relays[n].turns for n in names)


def _run_loop(sv, names, cmd, n):
    """[(ms, round trips)] per test, the relay read as each latency comes."""
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, base = [], _turns(sv, names)
    for line in p.stdout:
        now = _turns(sv, names)
        out.append((int(line) / 1000.0, now - base))
        base = now
    err = p.stderr.read()
    if p.wait() != 0 or len(out) != n:
        raise RuntimeError("%s: %s" % (cmd, err.strip()[-300:]))
    return out


def _run_procs(sv, names, cmd, n):
    out = []
    for _ in range(n):
        base, t0 = _turns(sv, names), time.monotonic()
        r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ms = (time.monotonic() - t0) * 1000.0
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (cmd, r.stderr.strip()[-300:]))
        # The last reply was counted before the client read it; its close
        # carries no data.
        out.append((ms, _turns(sv, names) - base))
    return out


def run(work, procs, quick):
    later = 2 if quick else 10
    sv = Servers(work, procs)
    rows = {}
    try:
        for key, title, names, _, _ in SCENARIOS:
            cmds = _commands(sv, key, 1 + later)
            for who in CONTENDERS:
                if who not in cmds:
                    continue
                kind, cmd = cmds[who]
                if "{bearer}" in cmd:
                    cmd = cmd.replace("{bearer}", sv.fetch_token("cached"))
                try:
                    tests = (_run_loop if kind == "loop" else _run_procs)(sv, names, cmd, 1 + later)
                except RuntimeError as e:
                    print("  latency %s, %s failed: %s" % (title, who, e), file=sys.stderr)
                    continue
                rest = tests[1:]
                rows[(key, who)] = {
                    "first_ms": tests[0][0], "first_rt": tests[0][1],
                    "ms": statistics.median([t[0] for t in rest]), "rt": statistics.median([t[1] for t in rest]),
                    "rt_max": max(t[1] for t in rest), "rt_min": min(t[1] for t in rest),
                }
    finally:
        sv.stop()
    return rows


def _rt(row):
    lo, hi = row["rt_min"], row["rt_max"]
    return ("%d" % row["rt"] if lo == hi else "%g (%d–%d)" % (row["rt"], lo, hi))


def report(rows, quick):
    later = 2 if quick else 10
    print("\n## Latency: every round trip costs %d ms (bench/delay_relay.py, %g ms each way)\n" % (RTT_MS, DELAY_MS))
    print("One test delivery at a time; \"first\" is a process's first test, \"later\" the median of the next %d "
          "(one process each for swaks and curl, so every test is a first). Round trips are counted by the relay; "
          "ms ÷ %d is the cross-check.\n" % (later, RTT_MS))
    print("| scenario | minimum first / later | contender | round trips first / later | ms first / later | later ms ÷ %d |"
          % RTT_MS)
    print("| --- | --- | --- | --- | --- | --- |")
    for key, title, _, min_first, min_later in SCENARIOS:
        for who in CONTENDERS:
            row = rows.get((key, who))
            if not row:
                continue
            print("| %s | %d / %d | %s | %d / %s | %.0f / %.0f | %.1f |" % (
                title, min_first, min_later, who, row["first_rt"], _rt(row), row["first_ms"], row["ms"],
                row["ms"] / RTT_MS))
    print("\n### Latency targets (this run)\n")
    met, total = 0, 0
    for key, title, _, min_first, min_later in SCENARIOS:
        k = rows.get((key, "kfsmtp.test() Lua 5.4"))
        if not k:
            print("- %s: kfsmtp did not run: MISSED" % title)
            total += 1
            continue
        checks = [("round trips = minimum (%d / %d)" % (min_first, min_later),
                   k["first_rt"] == min_first and k["rt_max"] == min_later)]
        s = rows.get((key, "Python smtplib"))
        if s:
            checks.append(("round trips ≤ smtplib's (%d / %s)" % (s["first_rt"], _rt(s)),
                           k["first_rt"] <= s["first_rt"] and k["rt"] <= s["rt"]))
            checks.append(("time ≤ smtplib's (%.1f ≤ %.1f ms)" % (k["ms"], s["ms"]), k["ms"] <= s["ms"]))
        w = rows.get((key, "swaks (process each)"))
        if w:
            checks.append(("time ≤ swaks' (%.1f ≤ %.1f ms)" % (k["ms"], w["ms"]), k["ms"] <= w["ms"]))
        met += sum(1 for _, ok in checks if ok)
        total += len(checks)
        print("- %s: kfsmtp %d / %s round trips, %.0f ms: %s" % (
            title, k["first_rt"], _rt(k), k["ms"],
            "; ".join("%s %s" % (label, "met" if ok else "MISSED") for label, ok in checks)))
    return met, total
