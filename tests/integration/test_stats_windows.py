"""What an operator reads in an incident: latency over recent windows, states
that move on a timer with no traffic, outliers, serving in panic, the events,
the read API and the access log's new fields.

Windows come from the once-a-second sampler: every wait below is a bounded
poll of /stats.json (or of the access log file)."""

import json
import os
import signal
import socket
import threading
import time

from harness import HttpConn, check, config_text, eq, fail, timeout, wait_until


def _control(t, b, query):
    c = HttpConn(t, b.port)
    try:
        r = c.request("GET", "/__control?" + query, headers=[("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()
    eq(r.status, 200, "lb-backend %s /__control?%s" % (b.name, query))


def _pool(s, name="api"):
    for p in s["pools"]:
        if p["name"] == name:
            return p
    fail("no pool %s in /stats.json" % name)


def _be(s, name, pool="api"):
    for b in _pool(s, pool)["backends"]:
        if b["name"] == name:
            return b
    fail("no backend %s in /stats.json" % name)


def _reload(t, lb, cfg, ok):
    with open(lb.conf_path, "w") as f:
        f.write(config_text(cfg))
    lb.signal(signal.SIGHUP)
    wait_until(lambda: lb.stats()["reloads"]["ok"] == ok, 3 * t.slow, interval=0.05, what="reload %d" % ok)


class Load:
    """N client threads sending GET / on keep-alive connections until stopped."""

    def __init__(self, t, lb, n):
        self.t, self.lb, self.stop_flag, self.count, self.errors = t, lb, False, 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        for th in self.threads:
            th.start()

    def _run(self):
        try:
            c = HttpConn(self.t, self.lb.port, timeout=10 * self.t.slow)
            deadline = time.monotonic() + 60 * self.t.slow  # bounded whatever happens
            while not self.stop_flag and time.monotonic() < deadline:
                r = c.request("GET", "/")
                with self.lock:
                    self.count += 1
                if r.status != 200:
                    self.errors.append(r.status)
            c.close()
        except Exception as e:  # reported by stop()
            self.errors.append(repr(e))

    def stop(self):
        self.stop_flag = True
        for th in self.threads:
            th.join(15 * self.t.slow)
        return self.count


@timeout(60)
def test_latency_windows_follow_a_slowdown(t):
    """A backend slowed from 1 ms to 300 ms shows p50 >= 250 ms over the last 10 s within
    15 s, while since start still says fast; the pool and the listener follow too."""
    b1 = t.backend("b1")
    _control(t, b1, "latency=1ms")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"}))
    load = Load(t, lb, 4)
    wait_until(lambda: load.count >= 400, 20 * t.slow, what="400 fast requests")
    fast = load.count
    _control(t, b1, "latency=300ms")
    slowed = time.monotonic()
    try:
        def slow_seen():
            s = lb.stats()
            return s if _be(s, "b1")["latency_ms"]["last_10s"]["p50"] >= 250 else None
        s = wait_until(slow_seen, 15, interval=0.25, what="last_10s p50 >= 250 ms at b1")
    finally:
        n = load.stop()
    took = time.monotonic() - slowed
    eq(load.errors, [], "client errors")
    lat = _be(s, "b1")["latency_ms"]
    check(lat["since_start"]["p50"] < 50, "since-start p50 stays fast (%d fast requests first): %r" % (fast, lat))
    eq((lat["p50"], lat["p99"]), (lat["since_start"]["p50"], lat["since_start"]["p99"]),
       "top-level p50/p99 are those since start")
    check(lat["last_5m"]["p99"] >= 250, "last_5m p99 sees the slow requests: %r" % lat)
    check(lat["last_10s"]["count"] > 0 and lat["last_5m"]["count"] >= lat["last_10s"]["count"],
          "window counts: %r" % lat)
    for where, obj in (("pool", _pool(s)), ("listener", s["listeners"][0])):
        check(obj["latency_ms"]["last_5m"]["p99"] >= 250, "%s last_5m p99: %r" % (where, obj["latency_ms"]))
    t.note = "slow p50 seen %.1fs after the slowdown; %d requests in all" % (took, n)


@timeout(40)
def test_idle_breaker_half_opens_on_time(t):
    """An open breaker moves to half-open when open_for is over with no request at all,
    closes on a good probe, and a closed breaker has no reason left."""
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    pool = {"breaker": {"consecutive_failures": 3, "failure_rate": 0, "slow_call_rate": 0, "open_for": "2s",
                        "half_open_probes": 1},
            "retry": {"attempts": 0}}
    lb = t.lb(t.config(backends=[b1, b2], pool=pool))
    _control(t, b2, "error_rate=1")
    c = lb.conn()
    for _ in range(12):  # round-robin: the breaker opens at b2's third failure, then b1 takes all
        c.request("GET", "/")
    c.close()
    s = wait_until(lambda: (lambda s: s if _be(s, "b2")["breaker"] == "open" else None)(lb.stats()),
                   2 * t.slow, what="b2's breaker open")
    opened = _be(s, "b2")["breaker_since"]
    check("3 consecutive failures" in _be(s, "b2")["breaker_reason"], "reason: %r" % _be(s, "b2")["breaker_reason"])
    # no traffic from here on
    s = wait_until(lambda: (lambda s: s if _be(s, "b2")["breaker"] == "half-open" else None)(lb.stats()),
                   6 * t.slow, interval=0.1, what="b2 half-open with no traffic")
    b = _be(s, "b2")
    after = b["breaker_since"] - opened
    check(1.8 - 0.05 <= after <= 2.2 + 1.1 * t.slow,
          "half-open %.2fs after open (open_for 2s +-10%%, sampled once a second)" % after)
    eq(b["breaker_transitions"], {"opened": 1, "half_opened": 1, "closed": 0}, "transitions")
    eq(b["requests"], 3, "requests to b2 (none since it opened)")
    check(b["breaker_reason"] != "", "a half-open breaker still says why it opened")
    m = lb.admin_get("/metrics").body.decode()
    check('lb_backend_state{pool="api",backend="b2",admin="active",health="up",breaker="half-open"} 1' in m,
          "the metric says half-open")
    _control(t, b2, "error_rate=0")
    c = lb.conn()
    seen = set()
    for _ in range(4):
        seen.add(c.request("GET", "/").header("X-Backend"))
    eq(seen, {"b1", "b2"}, "b2 serves again after its probe")
    b = lb.backend_stats("api", "b2")
    eq((b["breaker"], b["breaker_reason"]), ("closed", ""), "closed, and no reason left")
    ev = lb.admin_get("/api/events").json()["events"]
    texts = [e["text"] for e in ev if e["backend"] == "b2" and e["kind"] == "breaker"]
    eq(len(texts), 3, "breaker events of b2: %r" % texts)
    check(texts[0].startswith("breaker closed") and texts[1].startswith("breaker half-open after")
          and texts[2].startswith("breaker open: 3 consecutive failures"), "newest first: %r" % texts)


def _traffic(lb, n):
    c = lb.conn()
    got = {}
    for _ in range(n):
        r = c.request("GET", "/")
        got[r.header("X-Backend")] = got.get(r.header("X-Backend"), 0) + 1
    c.close()
    return got


@timeout(60)
def test_outlier_flagged_then_ejected(t):
    """A backend with far more errors than its peers is flagged (stats, metrics, event)
    without ejection; with outlier.eject its breaker opens for it and it gets no traffic."""
    bs = [t.backend("b%d" % i) for i in range(1, 5)]
    _control(t, bs[3], "error_rate=0.5")
    pool = {"breaker": {"consecutive_failures": 0, "failure_rate": 0, "slow_call_rate": 0},
            "retry": {"attempts": 0}}
    cfg = t.config(backends=bs, pool=pool)
    lb = t.lb(cfg)
    _traffic(lb, 200)

    def flagged():
        s = lb.stats()
        return s if _be(s, "b4")["outlier"] else None
    s = wait_until(flagged, 4 * t.slow, interval=0.1, what="b4 flagged")
    o = _be(s, "b4")["outlier"]
    eq((o["kind"], o["pool_value"], o["ejected"]), ("errors", 0.0, False), "b4's outlier")
    check(0.3 <= o["value"] <= 0.7, "b4's error rate about 0.5: %r" % o)
    eq([_be(s, n)["outlier"] for n in ("b1", "b2", "b3")], [None, None, None], "the others")
    eq((_pool(s)["outliers"], _pool(s)["ejected"]), (1, 0), "pool counts")
    eq(_be(s, "b4")["breaker"], "closed", "flagged, not ejected")
    m = lb.admin_get("/metrics").body.decode()
    check('lb_backend_outlier{pool="api",backend="b4",kind="errors"} 1' in m, "metric for b4")
    check('lb_backend_outlier{pool="api",backend="b1",kind="errors"} 0' in m, "metric for b1")
    ev = [e for e in lb.admin_get("/api/events").json()["events"] if e["kind"] == "outlier"]
    eq([(e["pool"], e["backend"], e["level"]) for e in ev], [("api", "b4", "warn")], "outlier events")
    check(ev[0]["text"].startswith("outlier: error rate "), "event text: %r" % ev[0]["text"])

    cfg["pools"][0]["outlier"] = {"eject": True, "max_ejected": 0.25}
    _reload(t, lb, cfg, 1)
    s = wait_until(lambda: (lambda s: s if _be(s, "b4")["breaker"] == "open" else None)(lb.stats()),
                   3 * t.slow, interval=0.1, what="b4 ejected")
    b4 = _be(s, "b4")
    check(b4["breaker_reason"].startswith("ejected as an outlier: error rate"), "reason: %r" % b4["breaker_reason"])
    check(b4["outlier"] is None or b4["outlier"]["ejected"], "outlier: %r" % b4["outlier"])
    eq(_pool(s)["ejected"], 1, "ejected in the pool")
    got = _traffic(lb, 30)
    eq(got.get("b4", 0), 0, "requests to the ejected b4: %r" % got)


@timeout(60)
def test_outlier_by_latency(t):
    """A backend whose p99 is far above its peers' (60 ms against 1 ms) is flagged on latency."""
    bs = [t.backend("b%d" % i) for i in range(1, 5)]
    for b in bs[:3]:
        _control(t, b, "latency=1ms")
    _control(t, bs[3], "latency=60ms")
    lb = t.lb(t.config(backends=bs, timeouts={"backend": "5s"}))
    load = Load(t, lb, 4)
    try:
        wait_until(lambda: load.count >= 880, 40 * t.slow, what="880 requests (220 per backend)")
    finally:
        load.stop()
    eq(load.errors, [], "client errors")

    def flagged():
        s = lb.stats()
        return s if _be(s, "b4")["outlier"] else None
    o = _be(wait_until(flagged, 4 * t.slow, interval=0.1, what="b4 flagged on latency"), "b4")["outlier"]
    eq(o["kind"], "latency", "kind")
    check(o["value"] >= 50 and o["pool_value"] < o["value"] / 3, "p99 %r against the others' median %r" %
          (o["value"], o["pool_value"]))


@timeout(40)
def test_serving_in_panic_shown_and_cleared_without_traffic(t):
    """In panic, a backend whose breaker is open still takes traffic and says so; the
    pool's panic ends on the sampler's timer once the breaker half-opens, with no request."""
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    pool = {"panic_threshold": 0.6,
            "breaker": {"consecutive_failures": 2, "failure_rate": 0, "slow_call_rate": 0, "open_for": "2s"},
            "retry": {"attempts": 0}}
    lb = t.lb(t.config(backends=[b1, b2], pool=pool))
    _control(t, b2, "error_rate=1")
    _traffic(lb, 4)  # two failures at b2: open, and half the weight is left: panic

    def panic_seen():
        s = lb.stats()
        return s if _pool(s)["panic"] else None
    s = wait_until(panic_seen, 3 * t.slow, interval=0.1, what="the pool in panic")
    b2s = _be(s, "b2")
    eq((b2s["breaker"], b2s["state"], b2s["serving_in_panic"]), ("open", "open", True), "b2 in panic")
    eq(_be(s, "b1")["serving_in_panic"], False, "b1 is healthy")
    eq(_pool(s)["serving_in_panic"], 1, "the pool's count")
    got = _traffic(lb, 10)
    eq(got.get("b2", 0), 5, "b2 keeps serving in panic: %r" % got)
    _control(t, b2, "error_rate=0")
    # no traffic: the breaker half-opens on its timer and the panic ends with it

    def calm():
        s = lb.stats()
        return s if not _pool(s)["panic"] else None
    s = wait_until(calm, 6 * t.slow, interval=0.1, what="panic over with no traffic")
    eq(_be(s, "b2")["serving_in_panic"], False, "b2 no longer serving in panic")
    eq(_pool(s)["serving_in_panic"], 0, "the pool's count")
    kinds = [(e["kind"], e["level"]) for e in lb.admin_get("/api/events").json()["events"] if e["kind"] == "panic"]
    eq(kinds, [("panic", "info"), ("panic", "warn")], "panic events, newest first")


def test_read_api_and_reload_events(t):
    """GET /api/pools[/P[/backends/N]] answer what /stats.json holds; admin changes and
    reloads are events that say who and what changed."""
    b1, b2, b3 = t.backend("b1"), t.backend("b2"), t.backend("b3")
    cfg = t.config(backends=[b1, b2], extra={})
    cfg["admin"]["token"] = "s3cret"
    lb = t.lb(cfg)
    pools = lb.admin_get("/api/pools").json()["pools"]
    eq([p["name"] for p in pools], ["api"], "/api/pools names")
    eq([b["name"] for b in pools[0]["backends"]], ["b1", "b2"], "backends in /api/pools")
    p = lb.admin_get("/api/pools/api").json()
    eq((p["name"], len(p["backends"])), ("api", 2), "/api/pools/api")
    b = lb.admin_get("/api/pools/api/backends/b2").json()
    eq((b["name"], b["address"], b["admin_state"]), ("b2", "127.0.0.1:%d" % b2.port, "active"), "one backend")
    for path in ("/api/pools/nope", "/api/pools/api/backends/nope", "/api/pools/api/backends/b1/x",
                 "/api/pools/api/other"):
        eq(lb.admin_get(path).status, 404, "GET %s" % path)
    c = HttpConn(t, lb.admin_port)
    r = c.request("POST", "/api/pools/api/backends/b1/state", body=b"drain", host="127.0.0.1",
                  headers=[("Authorization", "Bearer s3cret"), ("Connection", "close")])
    c.close()
    eq(r.status, 200, "drain b1")
    ev = lb.admin_get("/api/events").json()
    e = ev["events"][0]
    eq((e["kind"], e["pool"], e["backend"]), ("admin", "api", "b1"), "newest event")
    check(e["text"].startswith("state active -> drain by 127.0.0.1:"), "who drained: %r" % e["text"])
    last = ev["last"]
    eq(lb.admin_get("/api/events?after=%d" % last).json()["events"], [], "nothing after the last")
    cfg["pools"][0]["backends"] = [{"name": "b1", "address": "127.0.0.1:%d" % b1.port, "weight": 50},
                                   {"name": "b3", "address": "127.0.0.1:%d" % b3.port}]
    _reload(t, lb, cfg, 1)
    ev = lb.admin_get("/api/events?after=%d" % last).json()["events"]
    eq([e["kind"] for e in ev], ["reload"], "events after the reload")
    eq(ev[0]["text"], "generation 1: pool api: b1 weight 100->50 +b3 -b2", "what the reload changed")


def test_history_counts_every_request(t):
    """The per-second history behind the charts adds up to the requests sent, per backend
    and for the pool; after=TICK returns only newer points."""
    b1, b2 = t.backend("b1"), t.backend("b2")
    lb = t.lb(t.config(backends=[b1, b2]))
    _traffic(lb, 40)
    tick0 = lb.stats()["tick"]
    wait_until(lambda: lb.stats()["tick"] >= tick0 + 2, 4 * t.slow, interval=0.1, what="two more samples")
    h = lb.admin_get("/api/history?after=0").json()
    check(0 < h["points"] <= 300 and h["step_s"] == 1, "points: %r" % h["points"])
    per = {k: sum(v["requests"]) for k, v in h["backends"].items()}
    eq(per, {"api/b1": 20, "api/b2": 20}, "requests in the history")
    eq(sum(h["pools"]["api"]["requests"]), 40, "the pool's requests")
    eq(sum(h["listeners"]["web"]["requests"]), 40, "the listener's requests")
    for k, v in h["backends"].items():
        eq(len(v["requests"]), len(v["p99_ms"]), "series lengths of %s" % k)
        check(len(v["requests"]) <= h["points"], "no more points than asked: %s" % k)
    later = lb.admin_get("/api/history?after=%d" % h["tick"]).json()
    check(later["points"] <= later["tick"] - h["tick"], "after=TICK: %r points" % later["points"])
    eq(sum(later["backends"]["api/b1"]["requests"]), 0, "no request since")


@timeout(30)
def test_access_log_new_fields_and_rejected_requests(t):
    """Host, User-Agent, HTTP version, retries and the termination reason in both formats;
    requests the proxy rejects (400, 408, 431) carry today's time and a short total."""
    for fmt in ("json", "text"):
        b1 = t.backend("b1-" + fmt)
        dead = t.port()  # nothing listens: connection refused
        path = os.path.join(t.tmp, "access-%s.log" % fmt)
        backends = [{"name": "dead", "address": "127.0.0.1:%d" % dead}, {"name": "b1", "address": b1.addr}]
        lb = t.lb(t.config(backends=backends, log={"access": path, "format": fmt},
                           pool={"retry": {"attempts": 1, "budget": 1.0}},
                           timeouts={"client_header": "300ms"}))
        c = lb.conn()
        r = c.request("GET", "/a", headers=[("User-Agent", 'ua/1.0 (test; "q")')], host="h.test")
        check(r.status == 200, "first request: %r" % r)
        r = c.request("GET", "/b", headers=[("User-Agent", "x")], host="h.test")
        eq(r.status, 200, "second request")
        c.close()
        c = lb.conn()
        c.send(b"GET /old HTTP/1.0\r\nHost: old.test\r\n\r\n")
        eq(c.read_response().status, 200, "HTTP/1.0 request")
        c.close()
        c = lb.conn()
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
        eq(c.read_response().status, 400, "bad request")
        c.close()
        c = lb.conn()
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n")  # never finished: 408 after 300 ms
        eq(c.read_response(timeout=5 * t.slow).status, 408, "header timeout")
        c.close()
        c = lb.conn()
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        eq(c.read_response().status, 431, "head too large")
        c.close()
        started = time.time()

        def lines():
            if not os.path.exists(path):
                return None
            ls = [ln for ln in open(path).read().splitlines() if ln.strip()]
            return ls if len(ls) >= 6 else None
        got = wait_until(lines, 3 * t.slow, what="6 access log lines")
        eq(len(got), 6, "access log lines")
        if fmt == "json":
            recs = [json.loads(ln) for ln in got]
            first = [r for r in recs if r["path"] == "/a"][0]
            second = [r for r in recs if r["path"] == "/b"][0]
            eq((first["host"], first["user_agent"], first["http_version"], first["termination"]),
               ("h.test", 'ua/1.0 (test; "q")', "1.1", "ok"), "fields of /a")
            eq(sorted([first["retries"], second["retries"]]), [0, 1], "one of the two was retried off the dead backend")
            old = [r for r in recs if r["path"] == "/old"][0]
            eq((old["http_version"], old["host"]), ("1.0", "old.test"), "HTTP/1.0 line")
            rej = {r["status"]: r for r in recs if r["status"] in (400, 408, 431)}
            eq(sorted(rej), [400, 408, 431], "rejected requests logged")
            eq([rej[s]["termination"] for s in (400, 408, 431)], ["bad_request", "header_timeout", "header_too_large"],
               "their terminations")
            for s, rec in rej.items():
                check(rec["time"].startswith(time.strftime("%Y-", time.gmtime(started))),
                      "%d logged with today's time: %r" % (s, rec["time"]))
                check(0 <= rec["total_ms"] < 5000 * t.slow, "%d total_ms: %r" % (s, rec["total_ms"]))
        else:
            a = [ln for ln in got if '"GET /a HTTP/1.1"' in ln]
            eq(len(a), 1, "text line of /a with the HTTP version: %r" % got)
            check(a[0].endswith(' ok "h.test" "ua/1.0 (test; ?q?)"'), "text line ends with term, host, UA: %r" % a[0])
            old = [ln for ln in got if '"GET /old HTTP/1.0"' in ln]
            eq(len(old), 1, "HTTP/1.0 line: %r" % got)
            for st, term in ((" 400 ", " bad_request "), (" 408 ", " header_timeout "), (" 431 ", " header_too_large ")):
                ln = [x for x in got if st in x]
                eq(len(ln), 1, "one line with%s: %r" % (st, got))
                check(term in ln[0], "termination%sin %r" % (term, ln[0]))
                check(ln[0].startswith(time.strftime("%Y-", time.gmtime(started))), "today's time: %r" % ln[0])
        lb.stop()


@timeout(30)
def test_access_log_client_closed_mid_response(t):
    """A client that leaves in the middle of a slow body is logged as client_closed."""
    b1 = t.backend("b1")
    path = os.path.join(t.tmp, "access.log")
    lb = t.lb(t.config(backends=[b1], log={"access": path, "format": "json"}, timeouts={"backend": "10s"}))
    _control(t, b1, "slow_body=20000")
    c = lb.conn()
    c.send(b"GET /bytes/200000 HTTP/1.1\r\nHost: h\r\n\r\n")
    c.sock.recv(1000)  # part of the response
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()  # a reset

    def rec():
        if not os.path.exists(path):
            return None
        ls = [json.loads(ln) for ln in open(path).read().splitlines() if ln.strip()]
        return ls[0] if ls else None
    r = wait_until(rec, 5 * t.slow, what="the access log line")
    eq((r["status"], r["termination"]), (200, "client_closed"), "the cut request")
    check(0 < r["bytes"] < 200000, "bytes sent before the client left: %r" % r["bytes"])
