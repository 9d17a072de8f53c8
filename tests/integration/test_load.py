"""bin/lb-load against lb-backend: it counts exactly what the backend served.

lb-load is found next to the lb under test (build/asan/bin/lb-load beside
build/asan/bin/lb), else in bin/; LOAD_BIN overrides. Every run is bounded by
-n or -d and by a subprocess time limit.
"""

import json
import os
import subprocess

from harness import ASAN_PATTERNS, ROOT, HttpConn, check, eq, fail, timeout


def _load_bin(t):
    env = os.environ.get("LOAD_BIN")
    if env:
        return env
    beside = os.path.join(os.path.dirname(t.lb_bin), "lb-load")
    if os.access(beside, os.X_OK):
        return beside
    return os.path.join(ROOT, "bin", "lb-load")


def _run(t, args, limit_s=20):
    """Run lb-load to completion: (exit code, stdout, stderr)."""
    binary = _load_bin(t)
    if not os.access(binary, os.X_OK):
        fail("%s is not built" % binary)
    try:
        p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=limit_s * t.slow, cwd=t.tmp)
    except subprocess.TimeoutExpired:
        fail("lb-load %s did not finish within %.0fs" % (" ".join(args), limit_s * t.slow))
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for pat in ASAN_PATTERNS:
        check(pat not in err, "lb-load stderr has %r:\n%s" % (pat, err[-3000:]))
    return p.returncode, out, err


def _run_json(t, args, limit_s=20):
    rc, out, err = _run(t, list(args) + ["--json"], limit_s)
    eq(rc, 0, "lb-load exit status (stderr: %s)" % err.strip()[-500:])
    # stderr is not a terminal here: no progress line, nothing at all
    eq(err, "", "lb-load stderr when not a terminal")
    try:
        return json.loads(out)
    except ValueError as e:
        fail("lb-load --json printed no JSON (%s): %r" % (e, out[:500]))


class Counters:
    """A backend's /__stats read over one connection kept open, so the probe adds
    no connection between readings. The Python stand-in counts /__stats itself
    as a request; that one is subtracted."""

    def __init__(self, t, backend):
        self.c = HttpConn(t, backend.port)
        self.self_counted = 1 if t.use_py_backend() else 0
        self.first = self.read()

    def read(self):
        r = self.c.request("GET", "/__stats", host="127.0.0.1")
        eq(r.status, 200, "backend /__stats status")
        return r.json()

    def delta(self):
        now = self.read()
        return (now["requests"] - self.first["requests"] - self.self_counted,
                now["connections"] - self.first["connections"])


def _no_errors(res):
    eq(res["errors"], {"connect": 0, "reset": 0, "timeout": 0, "parse": 0, "other": 0}, "lb-load errors")


@timeout(30)
def test_load_counts_closed_loop(t):
    b1 = t.backend("b1")
    probe = Counters(t, b1)
    res = _run_json(t, ["http://127.0.0.1:%d/" % b1.port, "-n", "5000", "-c", "10"])
    served, conns = probe.delta()
    eq(res["requests"], 5000, "lb-load requests")
    eq(served, 5000, "requests the backend served")
    eq(res["status"], {"1xx": 0, "2xx": 5000, "3xx": 0, "4xx": 0, "5xx": 0}, "lb-load status classes")
    _no_errors(res)
    eq(res["backends"], {"b1": 5000}, "lb-load per-backend counts")
    eq(res["connections"], 10, "connections lb-load opened")
    eq(conns, 10, "connections the backend accepted")
    eq(res["open_loop"], None, "open_loop of a closed-loop run")
    lat = res["latency_us"]
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"],
          "latency percentiles out of order: %r" % lat)


@timeout(30)
def test_load_counts_open_loop(t):
    b1 = t.backend("b1")
    probe = Counters(t, b1)
    res = _run_json(t, ["http://127.0.0.1:%d/" % b1.port, "--rate", "2000", "-d", "2s", "-c", "10"])
    served, _ = probe.delta()
    eq(res["requests"], served, "lb-load requests vs the backend's count")
    check(abs(res["requests"] - 4000) <= 80, "open loop at 2000/s for 2s: %d requests" % res["requests"])
    _no_errors(res)
    ol = res["open_loop"]
    eq(ol["scheduled"], 4000, "requests scheduled in 2s at 2000/s")
    eq(ol["sent"], res["requests"], "requests sent")
    eq(ol["dropped"], 0, "requests dropped")
    eq(res["backends"], {"b1": res["requests"]}, "lb-load per-backend counts")
    check(1.9 <= res["duration_s"] <= 2.0 + 5.0 * t.slow, "duration %.3fs" % res["duration_s"])


@timeout(30)
def test_load_open_loop_queueing(t):
    """A server slower than the schedule: requests queue for a connection, every
    connection is used, and latency counts the wait from the scheduled time."""
    b1 = t.backend("b1")
    probe = Counters(t, b1)
    # 8 connections to a 50 ms endpoint serve at most 160/s: 400 due in 1s queue up
    res = _run_json(t, ["http://127.0.0.1:%d/sleep/50" % b1.port, "--rate", "400", "-d", "1s", "-c", "8"])
    served, conns = probe.delta()
    eq(res["requests"], 400, "lb-load requests")
    eq(served, 400, "requests the backend served")
    _no_errors(res)
    eq(res["connections"], 8, "connections lb-load opened (its whole allowance)")
    eq(conns, 8, "connections the backend accepted")
    lat = res["latency_us"]
    check(lat["min"] >= 50000, "latency below the server's 50 ms: %r" % lat)
    # the last request is due at 1s and served at 2.5s at the earliest
    check(lat["max"] >= 1200000, "max latency %d us hides the queueing" % lat["max"])
    check(res["open_loop"]["backlog_max"] >= 100, "backlog_max %d" % res["open_loop"]["backlog_max"])


@timeout(30)
def test_load_ramp_schedule(t):
    b1 = t.backend("b1")
    probe = Counters(t, b1)
    # 1000/s reached after a 1s ramp: 2000 - 1000 / 2 requests in 2s
    res = _run_json(t, ["http://127.0.0.1:%d/" % b1.port, "--rate", "1000", "--ramp", "1s",
                        "-d", "2s", "-c", "4", "-t", "2"])
    served, _ = probe.delta()
    eq(res["open_loop"]["scheduled"], 1500, "requests scheduled with the ramp")
    eq(res["requests"], 1500, "lb-load requests")
    eq(served, 1500, "requests the backend served")
    _no_errors(res)


@timeout(30)
def test_load_new_conn(t):
    b1 = t.backend("b1")
    probe = Counters(t, b1)
    res = _run_json(t, ["http://127.0.0.1:%d/" % b1.port, "-n", "500", "-c", "5", "--new-conn"])
    served, conns = probe.delta()
    eq(res["requests"], 500, "lb-load requests")
    eq(served, 500, "requests the backend served")
    eq(res["connections"], 500, "connections lb-load opened")
    eq(conns, served, "connections the backend accepted (one per request)")
    eq(res["keep_alive"], False, "keep_alive with --new-conn")
    _no_errors(res)


@timeout(30)
def test_load_connect_errors(t):
    port = t.port()  # nothing listens there
    res = _run_json(t, ["http://127.0.0.1:%d/" % port, "-n", "50", "-c", "5"])
    eq(res["requests"], 0, "responses from a closed port")
    eq(res["errors"]["connect"], 50, "connect errors (one per request)")
    eq(sum(res["errors"].values()), 50, "errors of any class")


@timeout(30)
def test_load_loopback_only(t):
    for url in ("http://10.1.2.3:80/", "http://localhost:%d/" % t.port(), "http://[2001:db8::1]:80/",
                "http://192.168.0.1/", "https://127.0.0.1/", "http://[::ffff:127.0.0.1]:80/"):
        rc, out, err = _run(t, [url, "-n", "1"], limit_s=10)
        eq(rc, 2, "exit status for %s" % url)
        eq(out, "", "stdout for %s" % url)
        check("lb-load:" in err, "no error message for %s: %r" % (url, err))
    rc, out, err = _run(t, ["http://127.0.0.1:%d/" % t.port(), "-n", "1", "--json"], limit_s=10)
    eq(rc, 0, "a 127.0.0.0/8 address is accepted")
