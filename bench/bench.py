#!/usr/bin/python3
"""kfsmtp's benchmark: every contender against the same servers in one run,
interleaved and repeated, with ratios to the raw-socket floor and to the
bare libcurl loop. Benchmarks are not tests: nothing here fails on a number.

usage: bench/bench.py [--quick] [--reps N]   (run from the repository root)
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import latency

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
WORK = tempfile.mkdtemp(prefix="kfsmtp-bench.")
PROCS = []


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("server on port %d did not start" % port)


def start(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    PROCS.append(p)
    return p


def start_aiosmtpd(name, certs):
    d = os.path.join(WORK, name)
    os.makedirs(d)
    with open(os.path.join(d, "auth"), "w") as f:
        f.write("svc:bench-pw")
    start("%s spec/support/smtpd.py --dir %s --mode starttls --cert %s/server.crt --key %s/server.key "
          "--auth-file %s/auth --auth-required" % (PY, d, certs, certs, d))
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(d, "port")):
        if time.time() > deadline:
            raise SystemExit("aiosmtpd did not start")
        time.sleep(0.02)
    return int(open(os.path.join(d, "port")).read())


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_loop(cmd, n):
    """A client that does n deliveries itself and prints their latencies."""
    cpu0, t0 = children_cpu(), time.monotonic()
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    if out.returncode != 0:
        raise RuntimeError("%s: %s" % (cmd, out.stderr.strip()[-300:]))
    lat = [int(x) / 1000.0 for x in out.stdout.split()]
    if len(lat) != n:
        raise RuntimeError("%s printed %d latencies, wanted %d" % (cmd, len(lat), n))
    # Rate from the client's own latencies: process start-up is not a delivery.
    return sum(lat) / 1000.0, cpu, lat, out.stderr


def run_procs(cmd, n):
    """One process per delivery, as a shell user runs it."""
    lat = []
    cpu0 = children_cpu()
    for _ in range(n):
        t0 = time.monotonic()
        r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lat.append((time.monotonic() - t0) * 1000.0)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (cmd, r.stderr.strip()[-300:]))
    return sum(lat) / 1000.0, children_cpu() - cpu0, lat, ""


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


def measure(contenders, n, reps):
    """Interleaved: every contender once per repetition, in turn."""
    results = {name: [] for name, _, _ in contenders}
    for rep in range(reps):
        for name, kind, cmd in contenders:
            count = n if kind == "loop" else max(5, n // 10)
            try:
                secs, cpu, lat, err = (run_loop if kind == "loop" else run_procs)(cmd, count)
            except RuntimeError as e:
                print("  %s failed: %s" % (name, e), file=sys.stderr)
                continue
            results[name].append({"rate": count / secs, "p50": pct(lat, 50), "p99": pct(lat, 99),
                                  "cpu_ms": cpu * 1000.0 / count, "stderr": err})
    return results


def summarise(results, floor, base):
    rows = {}
    for name, runs in results.items():
        if not runs:
            continue
        rates = [r["rate"] for r in runs]
        rows[name] = {"rate": statistics.median(rates), "min": min(rates), "max": max(rates),
                      "p50": statistics.median(r["p50"] for r in runs),
                      "p99": statistics.median(r["p99"] for r in runs),
                      "cpu_ms": statistics.median(r["cpu_ms"] for r in runs)}
    for name, row in rows.items():
        row["vs_floor"] = row["rate"] / rows[floor]["rate"] if floor in rows else None
        row["vs_curl"] = row["rate"] / rows[base]["rate"] if base in rows else None
    return rows


def table(title, rows, floor, base):
    print("\n### %s\n" % title)
    print("| client | deliveries/s (median, min–max) | p50 ms | p99 ms | client CPU ms/delivery | × floor | × %s |" % base)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        f = "%.2f" % r["vs_floor"] if r["vs_floor"] else "—"
        c = "%.2f" % r["vs_curl"] if r["vs_curl"] else "—"
        print("| %s | %.0f (%.0f–%.0f) | %.2f | %.2f | %.3f | %s | %s |" % (
            name, r["rate"], r["min"], r["max"], r["p50"], r["p99"], r["cpu_ms"], f, c))


def target(label, value, goal):
    print("- %s: %.2f× (target ≥ %.2f×) %s" % (label, value, goal, "met" if value >= goal else "MISSED"))


def wrk(url, seconds, headers=(), script=None, conns=16):
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, env=dict(os.environ)).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def ms(label):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % label, out)
        v = float(m.group(1))
        return v / 1000.0 if m.group(2) == "us" else v * 1000.0 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": sum(int(x) for x in errors.groups()) if errors else 0}


def http_bench(quick):
    """nginx + lua-nginx-module: GET /SMTP against a static return of the same
    JSON on the same server and worker count; PUT /SMTP per second; GET
    latency while 16 tests hang on a silent SMTP server."""
    secs = 2 if quick else 5
    d = os.path.join(WORK, "nginx")
    os.makedirs(d)
    port = free_port()
    silent_dir = os.path.join(WORK, "silent")
    os.makedirs(silent_dir)
    start("%s spec/support/smtpd.py --dir %s --behaviour silent" % (PY, silent_dir))
    while not os.path.exists(os.path.join(silent_dir, "port")):
        time.sleep(0.02)
    silent = int(open(os.path.join(silent_dir, "port")).read())
    sh("KFSMTP_USER_PASSWORD=bench-pass-1 bin/kfsmtp user-add admin --users-file %s/users.json --permissions all" % d)
    sh("sh scripts/nginx-conf.sh %s %d %s/store.json %s/users.json 1 'connect_timeout_ms = 30000, timeout_ms = 30000,'"
       % (d, port, d, d))
    sh("nginx -p %s -c %s/nginx.conf" % (d, d))
    try:
        wait_port(port)
        auth = "Basic " + __import__("base64").b64encode(b"admin:bench-pass-1").decode()
        os.environ["KF_AUTH"] = auth
        hdrs = ("Authorization: " + auth, "X-Keyfactor-Requested-With: APIClient")
        base = "http://127.0.0.1:%d" % port
        sh("curl -sf -X PUT -H 'Authorization: %s' -H 'X-Keyfactor-Requested-With: x' -H 'Content-Type: application/json' "
           "-d '{\"Host\":\"mail.example.com\",\"SenderAccount\":\"kf@example.com\"}' %s/KeyfactorAPI/SMTP" % (auth, base))
        gets, statics = [], []
        for _ in range(1 if quick else 3):
            gets.append(wrk(base + "/KeyfactorAPI/SMTP", secs, hdrs))
            statics.append(wrk(base + "/static-smtp", secs))
        get = {k: statistics.median(g[k] for g in gets) for k in ("rps", "p50", "p99", "non2xx")}
        static = {k: statistics.median(g[k] for g in statics) for k in ("rps", "p50", "p99")}
        put = wrk(base + "/KeyfactorAPI/SMTP", secs, script="bench/wrk_put.lua", conns=4)
        # Idle GET latency, then the same under 16 tests held by a silent server.
        idle = wrk(base + "/KeyfactorAPI/SMTP", secs, hdrs, conns=4)
        body = json.dumps({"Host": "127.0.0.1", "Port": silent, "SenderAccount": "kf@example.com",
                           "TestRecipient": "ops@example.com"})
        hung = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-m", "60", "-X", "POST", "-H", "Authorization: " + auth,
                                  "-H", "X-Keyfactor-Requested-With: x", "-H", "Content-Type: application/json",
                                  "-d", body, base + "/KeyfactorAPI/SMTP/Test"]) for _ in range(16)]
        time.sleep(0.5)
        loaded = wrk(base + "/KeyfactorAPI/SMTP", secs, hdrs, conns=4)
        still_hung = sum(1 for h in hung if h.poll() is None)
        for h in hung:
            h.kill()
    finally:
        subprocess.run("nginx -p %s -c %s/nginx.conf -s stop" % (d, d), shell=True)
    # The fsync a PUT waits for, measured on the same file system.
    f = os.path.join(d, "fsync-probe")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT)
    t0 = time.monotonic()
    for _ in range(50):
        os.write(fd, b"x" * 200)
        os.fsync(fd)
    fsync_ms = (time.monotonic() - t0) * 1000.0 / 50
    os.close(fd)

    print("\n### HTTP API (nginx 1 worker, wrk -t1, %d s runs)\n" % secs)
    print("| request | requests/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    print("| GET /SMTP (Basic auth, store get, JSON) | %.0f | %.3f | %.3f |" % (get["rps"], get["p50"], get["p99"]))
    print("| `return 200 '<same JSON>'` | %.0f | %.3f | %.3f |" % (static["rps"], static["p50"], static["p99"]))
    print("| PUT /SMTP (4 connections; lock, write, fsync, rename) | %.0f | %.3f | %.3f |" % (put["rps"], put["p50"], put["p99"]))
    print("| GET /SMTP idle (4 connections) | %.0f | %.3f | %.3f |" % (idle["rps"], idle["p50"], idle["p99"]))
    print("| GET /SMTP while 16 tests hang on a silent server | %.0f | %.3f | %.3f |" % (loaded["rps"], loaded["p50"], loaded["p99"]))
    print("\nfsync of a small file here: %.3f ms; %d of 16 hung tests were still in flight when the loaded run ended; non-2xx GETs: %d"
          % (fsync_ms, still_hung, get["non2xx"]))
    return get, static, idle, loaded


def ratio(a, b):
    return a / b if b else float("nan")


class PgServer:
    """A throwaway PostgreSQL from spec/support/pg.lua, through
    bench/pg_server.lua: stall, resume and psql over its stdin."""

    def __init__(self):
        self.err = open(os.path.join(WORK, "pg_server.log"), "w")
        self.p = subprocess.Popen(["lua5.4", "bench/pg_server.lua"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise SystemExit("PostgreSQL did not start: " + open(os.path.join(WORK, "pg_server.log")).read()[-2000:])
        info = json.loads(line)
        self.uri, self.port, self.version = info["uri"], info["port"], info["version"]

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def stall(self):
        """--> how many processes were stopped."""
        return int(self.ask("stall").split()[1])

    def resume(self):
        self.ask("resume")

    def psql(self, sql):
        return json.loads(self.ask("psql " + sql))

    def close(self):
        if self.p.poll() is None:
            try:
                self.ask("quit")
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.err.close()


def start_node(name, store, auth_password):
    """An nginx node (1 worker) with the HTTP API on store, the same
    serve{} settings as http_bench's --> (folder, port)."""
    d = os.path.join(WORK, name)
    os.makedirs(d)
    port = free_port()
    sh("KFSMTP_USER_PASSWORD=%s bin/kfsmtp user-add admin --users-file %s/users.json --permissions all" % (auth_password, d))
    sh("sh scripts/nginx-conf.sh %s %d '%s' %s/users.json 1 'connect_timeout_ms = 30000, timeout_ms = 30000,'"
       % (d, port, store, d))
    sh("nginx -p %s -c %s/nginx.conf" % (d, d))
    wait_port(port)
    return d, port


def freshness(a_port, b_port, auth, n):
    """n changes PUT through node A; after each, node B is asked (GET, one
    kept-alive connection) until it answers with the change. --> the PUT's
    time, the time from node A's answer to node B's answer with the change
    (ms), and how many GETs node B needed for each."""
    import http.client
    hdrs = {"Authorization": auth, "X-Keyfactor-Requested-With": "APIClient"}
    conn_a = http.client.HTTPConnection("127.0.0.1", a_port, timeout=30)
    conn_b = http.client.HTTPConnection("127.0.0.1", b_port, timeout=30)

    def call(conn, method, body=None):
        h = dict(hdrs)
        if body is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, "/KeyfactorAPI/SMTP", body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read()

    puts, seen, polls = [], [], []
    try:
        # Node B's first requests make its worker threads' Lua VMs and
        # their connections: not part of any change's time.
        for _ in range(5):
            call(conn_b, "GET")
        for i in range(n):
            name = "http change %d" % i
            body = json.dumps({"Host": "mail.example.com", "SenderAccount": "kf@example.com", "SenderName": name})
            t0 = time.monotonic()
            status, data = call(conn_a, "PUT", body)
            t1 = time.monotonic()
            if status != 200:
                raise RuntimeError("PUT through node A: %d %s" % (status, data[:200]))
            k = 0
            while True:
                status, data = call(conn_b, "GET")
                k += 1
                if status == 200 and json.loads(data)["SenderName"] == name:
                    break
                if time.monotonic() - t1 > 5:
                    raise RuntimeError("node B did not answer with change %d within 5 s (last: %d %s)" % (i, status, data[:200]))
            t2 = time.monotonic()
            puts.append((t1 - t0) * 1000.0)
            seen.append((t2 - t1) * 1000.0)
            polls.append(k)
    finally:
        conn_a.close()
        conn_b.close()
    return puts, seen, polls


def store_freshness(uri, n):
    """bench/fresh_loop.lua: n updates in one process, get() asked every
    0.1 ms in another (a store object and connections each) --> the time
    from each update's return (its commit) to the other process's get()
    returning it (ms), and how many changes it never saw."""
    reader = subprocess.Popen(["lua5.4", "bench/fresh_loop.lua", "read", uri, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if reader.stdout.readline().strip() != "ready":
            raise RuntimeError("fresh_loop.lua read: " + reader.stderr.read()[-500:])
        w = subprocess.run(["lua5.4", "bench/fresh_loop.lua", "write", uri, str(n)], capture_output=True, text=True, timeout=300)
        if w.returncode != 0:
            raise RuntimeError("fresh_loop.lua write: " + w.stderr[-500:])
        out, err = reader.communicate(timeout=60)
        if reader.returncode != 0:
            raise RuntimeError("fresh_loop.lua read: " + err[-500:])
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    def times(text):
        return {k: float(v) for k, v in (line.split("\t") for line in text.split("\n") if line)}
    committed, seen = times(w.stdout), times(out)
    delays = [(seen[k] - t) * 1000.0 for k, t in committed.items() if k in seen]
    return delays, n - len(delays)


def store_bench(quick, reps):
    """The file store against the PostgreSQL store over HTTP: one nginx
    node per store, the same settings, GET/s and PUT/s by wrk, interleaved
    and repeated; how soon a change PUT through one PostgreSQL node is
    answered by another; GET latency while the database is stalled."""
    secs = 1 if quick else 5
    reps = 1 if quick else reps
    changes = 20 if quick else 200
    password = "bench-pass-1"
    auth = "Basic " + __import__("base64").b64encode(("admin:" + password).encode()).decode()
    os.environ["KF_AUTH"] = auth
    hdrs = ("Authorization: " + auth, "X-Keyfactor-Requested-With: APIClient")
    server = PgServer()
    nodes = []
    try:
        file_dir, file_port = start_node("node-file", os.path.join(WORK, "node-file-store.json"), password)
        nodes.append(file_dir)
        pg_dir, pg_port = start_node("node-pg-a", server.uri, password)
        nodes.append(pg_dir)
        b_dir, b_port = start_node("node-pg-b", server.uri, password)
        nodes.append(b_dir)
        stores = (("file", file_port), ("PostgreSQL", pg_port))
        urls = {name: "http://127.0.0.1:%d/KeyfactorAPI/SMTP" % port for name, port in stores}
        # A profile in each store, then (but in quick mode) a warm-up
        # second of GETs for each node.
        for name, _ in stores:
            sh("curl -sf -X PUT -H 'Authorization: %s' -H 'X-Keyfactor-Requested-With: x' -H 'Content-Type: application/json' "
               "-d '{\"Host\":\"mail.example.com\",\"SenderAccount\":\"kf@example.com\"}' %s" % (auth, urls[name]))
            if not quick:
                wrk(urls[name], 1, hdrs)
        # Each repetition: PostgreSQL's PUT and GET, then the file's GET and
        # PUT. A file store written in the last two seconds is read again
        # on every GET (see README, "The store"): the file's GET comes two
        # runs after any PUT of its. And node A's last run before the
        # stalled one below is GETs on 16 connections, so each Lua VM that
        # serves the stalled run has read the last change (one that had
        # not would wait on the stopped database).
        runs = {name: {"get": [], "put": []} for name, _ in stores}
        for _ in range(reps):
            runs["PostgreSQL"]["put"].append(wrk(urls["PostgreSQL"], secs, script="bench/wrk_put.lua", conns=4))
            runs["PostgreSQL"]["get"].append(wrk(urls["PostgreSQL"], secs, hdrs))
            runs["file"]["get"].append(wrk(urls["file"], secs, hdrs))
            runs["file"]["put"].append(wrk(urls["file"], secs, script="bench/wrk_put.lua", conns=4))
        rows = {}
        for name, _ in stores:
            rows[name] = {kind: {k: statistics.median(r[k] for r in runs[name][kind])
                                 for k in ("rps", "p50", "p99", "non2xx", "errors")}
                          for kind in ("get", "put")}

        # GETs idle, then with the postmaster and its backends stopped.
        idle = wrk(urls["PostgreSQL"], secs, hdrs, conns=4)
        stopped = server.stall()
        try:
            stalled = wrk(urls["PostgreSQL"], secs, hdrs, conns=4)
        finally:
            server.resume()
        after = None if quick else wrk(urls["PostgreSQL"], 1, hdrs, conns=4)

        # Not a test: a change never seen is said, and the run goes on.
        try:
            puts, seen, polls = freshness(pg_port, b_port, auth, changes)
        except RuntimeError as e:
            print("  freshness over HTTP failed: %s" % e, file=sys.stderr)
            puts, seen, polls = [], [], []
        try:
            commit_seen, missed = store_freshness(server.uri, changes)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print("  freshness between processes failed: %s" % e, file=sys.stderr)
            commit_seen, missed = [], changes
        connections = server.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'kfsmtp' AND usename = 'kfsmtp'")
    finally:
        for d in nodes:
            subprocess.run("nginx -p %s -c %s/nginx.conf -s stop" % (d, d), shell=True)
        server.close()

    print("\n### Stores over HTTP: the file against PostgreSQL (nginx 1 worker per store, wrk -t1, %d s runs, median of %d)\n"
          % (secs, reps))
    print("| store | GET /SMTP requests/s (16 connections) | GET p50 ms | GET p99 ms | PUT /SMTP requests/s (4 connections) | PUT p50 ms | PUT p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, _ in stores:
        g, p = rows[name]["get"], rows[name]["put"]
        print("| %s | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f |" % (name, g["rps"], g["p50"], g["p99"], p["rps"], p["p50"], p["p99"]))
    print("\nPostgreSQL %s on loopback, commits durable (fsync, synchronous_commit on); the same serve{} settings and PUT "
          "body (no secret) for both; non-2xx or socket errors: file %d, PostgreSQL %d"
          % (server.version, sum(rows["file"][k]["non2xx"] + rows["file"][k]["errors"] for k in ("get", "put")),
             sum(rows["PostgreSQL"][k]["non2xx"] + rows["PostgreSQL"][k]["errors"] for k in ("get", "put"))))
    print("GET/s PostgreSQL / file: %.2f×; PUT/s PostgreSQL / file: %.2f×" % (
        ratio(rows["PostgreSQL"]["get"]["rps"], rows["file"]["get"]["rps"]),
        ratio(rows["PostgreSQL"]["put"]["rps"], rows["file"]["put"]["rps"])))

    print("\n### Freshness across nodes (PostgreSQL store, %d changes each)\n" % changes)
    print("| from | to | median ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    if commit_seen:
        print("| update() returned (committed) in process A | get() returned it in process B (asked every 0.1 ms) | %.3f | %.3f | %.3f |" % (
            statistics.median(commit_seen), pct(commit_seen, 99), max(commit_seen)))
    if seen:
        print("| PUT /SMTP sent to node A (nginx) | node A's answer (lock, commit, NOTIFY) | %.3f | %.3f | %.3f |" % (
            statistics.median(puts), pct(puts, 99), max(puts)))
        print("| node A's answer | node B's (nginx) answer with the change, GETs sent one after another | %.3f | %.3f | %.3f |" % (
            statistics.median(seen), pct(seen, 99), max(seen)))
    print("\nprocess B missed %d of %d changes; node B answered with the change at its first GET after node A's answer "
          "in %d of %d (most GETs: %d); connections the two nginx nodes held at the end: %s"
          % (missed, changes, sum(1 for k in polls if k == 1), changes, max(polls or [0]), connections))

    print("\n### GET while the database is stalled (SIGSTOP to the postmaster and its %d children; PostgreSQL node, 4 connections, %d s)\n"
          % (stopped - 1, secs))
    print("| GET /SMTP | requests/s | p50 ms | p99 ms | non-2xx or socket errors |")
    print("| --- | --- | --- | --- | --- |")
    print("| database idle | %.0f | %.3f | %.3f | %d |" % (idle["rps"], idle["p50"], idle["p99"], idle["non2xx"] + idle["errors"]))
    print("| database stalled | %.0f | %.3f | %.3f | %d |" % (
        stalled["rps"], stalled["p50"], stalled["p99"], stalled["non2xx"] + stalled["errors"]))
    if after:
        print("| after it resumed (1 s) | %.0f | %.3f | %.3f | %d |" % (
            after["rps"], after["p50"], after["p99"], after["non2xx"] + after["errors"]))
    print("\nGET p99 while the database is stalled / idle GET p99: %.2f×" % ratio(stalled["p99"], idle["p99"]))
    return rows, seen, idle, stalled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few deliveries, one repetition (CI)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    n = 40 if args.quick else 400
    reps = 1 if args.quick else args.reps
    os.chdir(ROOT)
    os.makedirs("build/bench", exist_ok=True)
    sh("cc -O2 -Wall -Wextra -Werror -o build/bench/curl_loop bench/curl_loop.c $(pkg-config --cflags --libs libcurl)")
    sh("cc -O2 -Wall -Wextra -Werror -o build/bench/raw_smtp bench/raw_smtp.c")
    certs = os.path.join(WORK, "certs")
    sh("sh spec/support/certs.sh %s" % certs)
    bundle = os.path.join(WORK, "bundle.pem")
    with open(bundle, "w") as out:
        out.write(open("/etc/ssl/certs/ca-certificates.crt").read())
        out.write(open(os.path.join(certs, "ca.crt")).read())
    pwfile = os.path.join(WORK, "pw")
    with open(pwfile, "w") as f:
        f.write("bench-pw\n")
    sink = free_port()
    start("/usr/sbin/smtp-sink -u nobody 127.0.0.1:%d 512" % sink)
    wait_port(sink)
    tls = start_aiosmtpd("aiosmtpd", certs)
    store = os.path.join(WORK, "cli-store.json")
    print("machine: %s, %d cores; %s; reps %d, %d deliveries per loop run" % (
        os.uname().machine, os.cpu_count(), sh("lua5.4 -e 'package.cpath=\"build/lua5.4/?.so;\"..package.cpath "
        "print(require(\"kfsmtp.core\").curl_version)'").strip(), reps, n))

    plain = "--host 127.0.0.1 --port %d --mode plain" % sink
    plain_contenders = [
        ("raw socket (floor)", "loop", "build/bench/raw_smtp %s --n %d" % (plain, n)),
        ("libcurl new handle", "loop", "build/bench/curl_loop --handle new %s --n %d" % (plain, n)),
        ("libcurl reused handle", "loop", "build/bench/curl_loop --handle reuse %s --n %d" % (plain, n)),
        ("kfsmtp.test() Lua 5.4", "loop", "lua5.4 bench/kfsmtp_loop.lua %s --n %d" % (plain, n)),
        ("kfsmtp.test() LuaJIT", "loop", "luajit bench/kfsmtp_loop.lua %s --n %d" % (plain, n)),
        ("Python smtplib", "loop", "%s bench/smtplib_loop.py %s --n %d" % (PY, plain, n)),
        ("LuaSocket smtp (TCP_NODELAY)", "loop", "lua5.4 bench/luasocket_loop.lua %s --n %d" % (plain, n)),
        ("bin/kfsmtp test (process each)", "proc",
         "KFSMTP_STORE=%s bin/kfsmtp test --host 127.0.0.1 --port %d --no-use-ssl --sender-account kf@example.com "
         "--recipient ops@example.com" % (store, sink)),
        ("curl (process each)", "proc",
         "curl -s --mail-from kf@example.com --mail-rcpt ops@example.com -T /etc/hostname smtp://127.0.0.1:%d" % sink),
        ("swaks (process each)", "proc",
         "swaks --silent 2 --server 127.0.0.1:%d --from kf@example.com --to ops@example.com" % sink),
    ]
    starttls = "--host localhost --port %d --mode starttls --user svc --password-file %s" % (tls, pwfile)
    def tls_contenders(ca, n):
        return [
            ("libcurl new handle", "loop", "build/bench/curl_loop --handle new %s --ca %s --n %d" % (starttls, ca, n)),
            ("libcurl reused handle", "loop", "build/bench/curl_loop --handle reuse %s --ca %s --n %d" % (starttls, ca, n)),
            ("kfsmtp.test() Lua 5.4", "loop", "lua5.4 bench/kfsmtp_loop.lua %s --ca %s --n %d" % (starttls, ca, n)),
            ("kfsmtp.test() LuaJIT", "loop", "luajit bench/kfsmtp_loop.lua %s --ca %s --n %d" % (starttls, ca, n)),
            ("Python smtplib", "loop", "%s bench/smtplib_loop.py %s --ca %s --n %d" % (PY, starttls, ca, n)),
        ]

    rows_plain = summarise(measure(plain_contenders, n, reps), "raw socket (floor)", "libcurl reused handle")
    table("Plain SMTP to smtp-sink", rows_plain, "raw socket (floor)", "libcurl reused handle")
    rows_tls = summarise(measure(tls_contenders(os.path.join(certs, "ca.crt"), n // 2), n // 2, reps), None, "libcurl new handle")
    table("STARTTLS + AUTH to aiosmtpd, verified against a one-certificate CA file", rows_tls, None, "libcurl new handle")
    rows_sys = summarise(measure(tls_contenders(bundle, n // 2), n // 2, reps), None, "libcurl new handle")
    table("STARTTLS + AUTH, verified against the system CA bundle plus the test CA (%d certificates)"
          % open(bundle).read().count("BEGIN CERTIFICATE"), rows_sys, None, "libcurl new handle")

    # Memory: resident size after 100 and after many tests in one process.
    many = 1000 if args.quick else 10000
    err = subprocess.run("lua5.4 bench/kfsmtp_loop.lua %s --n %d --rss" % (plain, many), shell=True,
                         capture_output=True, text=True).stderr
    rss100 = int(re.search(r"rss_after_100 (\d+)", err).group(1))
    rss_end = int(re.search(r"rss_at_end (\d+)", err).group(1))

    latency_started = time.monotonic()
    latency_rows = latency.run(WORK, PROCS, args.quick)
    latency_met = latency.report(latency_rows, args.quick)
    print("\nThe latency part took %.1f s, servers' start and stop included." % (time.monotonic() - latency_started))

    http = http_bench(args.quick)
    store_bench(args.quick, reps)

    get_out = sh("lua5.4 bench/get_loop.lua %d" % (50000 if args.quick else 500000))
    get_rate, reread_rate = [float(x) for x in re.findall(r"[\d.]+", get_out)]
    get_out_jit = sh("luajit bench/get_loop.lua %d" % (50000 if args.quick else 500000))
    get_rate_jit, reread_rate_jit = [float(x) for x in re.findall(r"[\d.]+", get_out_jit)]

    print("\n### Targets (ratios measured in this run)\n")
    k, c = rows_plain.get("kfsmtp.test() Lua 5.4"), rows_plain.get("libcurl reused handle")
    if k and c:
        target("plain: kfsmtp.test() (Lua 5.4) / bare libcurl reused-handle loop", k["rate"] / c["rate"], 0.95)
    s = rows_plain.get("Python smtplib")
    if k and s:
        target("plain: kfsmtp.test() (Lua 5.4) / Python smtplib", k["rate"] / s["rate"], 1.0)
    k2, c2 = rows_sys.get("kfsmtp.test() Lua 5.4"), rows_sys.get("libcurl new handle")
    if k2 and c2:
        target("system CA bundle: kfsmtp.test() / bare libcurl new-handle loop", k2["rate"] / c2["rate"], 5.0)
    cli, sw, cu = (rows_plain.get(x) for x in ("bin/kfsmtp test (process each)", "swaks (process each)", "curl (process each)"))
    if cli and sw:
        target("CLI: bin/kfsmtp test / swaks, one process per delivery", cli["rate"] / sw["rate"], 5.0)
    if cli and cu:
        target("CLI: bin/kfsmtp test / curl, one process per delivery", cli["rate"] / cu["rate"], 1.0)
    print("- memory: resident %d KiB after 100 tests, %d KiB after %d: %+d KiB (target within 1024) %s" % (
        rss100, rss_end, many, rss_end - rss100, "met" if abs(rss_end - rss100) <= 1024 else "MISSED"))
    target("get() on an unchanged store / re-read + lua-cjson decode, Lua 5.4 (%.0f vs %.0f calls/s)"
           % (get_rate, reread_rate), get_rate / reread_rate, 20.0)
    target("get() on an unchanged store / re-read + lua-cjson decode, LuaJIT (%.0f vs %.0f calls/s)"
           % (get_rate_jit, reread_rate_jit), get_rate_jit / reread_rate_jit, 20.0)
    print("- latency (20 ms round trips): %d of %d targets met; the misses are marked above" % latency_met)
    get, static, idle, loaded = http
    target("HTTP: GET /SMTP / static return of the same JSON, same nginx and workers", get["rps"] / static["rps"], 0.7)
    print("- HTTP: GET p99 while 16 tests hang / idle GET p99: %.2f× (target ≤ 2×) %s" % (
        loaded["p99"] / idle["p99"], "met" if loaded["p99"] <= 2 * idle["p99"] else "MISSED"))


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(WORK, ignore_errors=True)
