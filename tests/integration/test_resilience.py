"""Resilience, black box: circuit breakers (consecutive failures, slow-call
rate, half-open probes), retries and their budget, timeouts, panic mode,
in-flight limits with the pending queue.

Every backend here is a bin/lb-backend (faults through /__control, counts
through /__stats, both sent straight to the backend) or a port where nothing
listens. workers = 1 unless said otherwise, health checks off, slow_start 0
and, where the counts must be exact, panic_threshold 0: round-robin over two
equal backends then alternates strictly, so every count below is exact.
"""

import statistics
import threading
import time
from collections import Counter

from harness import HttpConn, assert_proxy_error, build_request, check, eq, fail, timeout, wait_until


# --------------------------------------------------------------------------
# helpers


def _needs_lb_backend(t):
    if t.use_py_backend():
        fail("these tests need bin/lb-backend (/__control, /__stats); build it with make")


def _backend_get(t, b, path):
    c = HttpConn(t, b.port)
    try:
        r = c.request("GET", path, headers=[("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()
    eq(r.status, 200, "lb-backend %s %s" % (b.name, path))
    return r


def _control(t, b, query):
    _backend_get(t, b, "/__control?" + query)


def _answered(t, b):
    """Requests lb-backend B has answered (not counting /__stats, /__control, /healthz)."""
    return _backend_get(t, b, "/__stats").json()["requests"]


def _pool(**kw):
    p = {"slow_start": "0s", "panic_threshold": 0.0}
    p.update(kw)
    return p


def _dead(t, name):
    """A backend entry whose port has nothing listening (connection refused)."""
    return {"name": name, "address": "127.0.0.1:%d" % t.port()}


def _bs(lb, name, pool="api"):
    return lb.backend_stats(pool, name)


def _pool_stats(lb, pool="api"):
    for p in lb.stats()["pools"]:
        if p["name"] == pool:
            return p
    fail("no pool %s in /stats.json" % pool)


def _wait_backend(t, lb, name, pred, limit_s, what):
    last = [None]

    def ok():
        last[0] = _bs(lb, name)
        return pred(last[0])

    try:
        wait_until(ok, limit_s * t.slow, interval=0.02, what=what)
    except AssertionError:
        fail("%s: not within %.1fs; %s in /stats.json: %r" % (what, limit_s * t.slow, name, last[0]))
    return last[0]


def _fresh(lb, method="GET", path="/", body=None, timeout=None):
    """One request on a new connection (Connection: close); returns (response, seconds)."""
    c = lb.conn()
    t0 = time.monotonic()
    try:
        r = c.request(method, path, headers=[("Connection", "close")], body=body, timeout=timeout)
    finally:
        c.close()
    return r, time.monotonic() - t0


def _retry_after_ok(r, what):
    ra = r.header("Retry-After")
    check(ra is not None and ra.strip().isdigit(), "%s: 503 without a valid Retry-After: %r" % (what, ra))


def _two_lb(t, b1, b2, workers=1, **pool):
    return t.lb(t.config(backends=[b1, b2], workers=workers, timeouts={"backend": "5s"}, pool=_pool(**pool)))


# --------------------------------------------------------------------------
# 1. consecutive failures: open, exactly N requests, half-open probes, closed


def test_breaker_500s_open_probe_close(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b2, "error_rate=1&error_status=500")
    lb = _two_lb(t, b1, b2,
                 breaker={"consecutive_failures": 5, "open_for": "500ms", "max_open_for": "10s",
                          "half_open_probes": 2},
                 retry={"attempts": 0})
    c = lb.conn()
    # round-robin: b1, b2, b1, b2, ...: b2's 5th 500 (request 10) trips its breaker
    got = []
    for i in range(10):
        r = c.request("GET", "/")
        got.append((r.status, r.header("X-Backend")))
    t_open = time.monotonic()  # the breaker opened before this response left the proxy
    eq(got, [(200, "b1"), (500, "b2")] * 5, "(status, backend) of the first 10 requests")
    # while open (open_for 500 ms - 10% jitter = 450 ms at the least): nothing reaches b2
    sent = 0
    for i in range(10):
        if time.monotonic() - t_open > 0.35:
            break
        r = c.request("GET", "/")
        eq((r.status, r.header("X-Backend")), (200, "b1"), "request %d while b2's breaker is open" % i)
        sent += 1
    check(sent >= 3, "only %d requests fit in the open period (the machine is too slow)" % sent)
    eq(_answered(t, b2), 5, "requests b2 answered (5 failures, then open)")
    s = _bs(lb, "b2")
    eq((s["breaker"], s["breaker_transitions"]), ("open", {"opened": 1, "half_opened": 0, "closed": 0}),
       "b2 breaker state and transitions")
    check("5 consecutive failures" in s["breaker_reason"], "b2 breaker_reason: %r" % s["breaker_reason"])
    eq((s["requests"], s["failures"], s["failures_by_kind"]["status"], s["responses"]["5xx"]), (5, 5, 5, 5),
       "b2 requests, failures, failures_by_kind.status, responses.5xx")
    check("breaker open for api/b2: 5 consecutive failures" in lb.stderr_text(),
          "lb did not log 'breaker open for api/b2: 5 consecutive failures'")

    # b2 is fixed, but slow (300 ms, more on a slow build), so that its probes are in flight together
    _control(t, b2, "error_rate=0&latency=%dms" % int(300 * t.slow))
    # the open period (at most 550 ms with its jitter) is over at this deadline
    left = t_open + 0.56 - time.monotonic()
    if left > 0:
        time.sleep(left)
    eq(_bs(lb, "b2")["breaker"], "open", "b2 breaker after its period, before any request moved it")
    # 6 requests at once: round-robin would give b2 3; half-open admits exactly 2
    conns = [lb.conn() for _ in range(6)]
    for k in conns:
        k.send(build_request("GET", "/", headers=[("Connection", "close")]))
    seen = Counter()
    for k in conns:
        r = k.read_response(timeout=5 * t.slow)
        eq(r.status, 200, "status of a request while b2 is half-open")
        seen[r.header("X-Backend")] += 1
    eq(dict(seen), {"b1": 4, "b2": 2}, "6 concurrent requests with 2 half-open probes")
    eq(_answered(t, b2), 7, "requests b2 answered (5 failures + 2 probes)")
    s = _wait_backend(t, lb, "b2", lambda s: s["breaker"] == "closed", 1.0, "b2 breaker closed after 2 good probes")
    eq(s["breaker_transitions"], {"opened": 1, "half_opened": 1, "closed": 1}, "b2 transitions")
    text = lb.stderr_text()
    check("breaker half-open for api/b2" in text, "lb did not log 'breaker half-open for api/b2'")
    check("breaker closed for api/b2: 2 of 2 probes succeeded" in text,
          "lb did not log 'breaker closed for api/b2: 2 of 2 probes succeeded'")

    # closed again: b2 has its share back, strictly alternating
    _control(t, b2, "latency=0")
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(Counter(seq), Counter({"b1": 5, "b2": 5}), "10 requests after the breaker closed: %r" % seq)
    check(all(seq[i] != seq[i + 1] for i in range(9)), "not alternating after the breaker closed: %r" % seq)
    eq(_answered(t, b2), 12, "requests b2 answered in all")


# --------------------------------------------------------------------------
# 2. a dead backend under a stream of requests: no client sees it


def test_breaker_dead_backend_no_client_errors(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    dead = _dead(t, "dead")
    # default panic_threshold (0.5): with dead open, exactly half the weight is
    # eligible, which is not below 0.5: no panic
    lb = t.lb(t.config(backends=[dead, {"name": "b1", "address": b1.addr}],
                       pool={"slow_start": "0s",
                             "breaker": {"consecutive_failures": 5, "open_for": "100ms", "max_open_for": "200ms",
                                         "half_open_probes": 1},
                             "retry": {"attempts": 2, "budget": 0.2, "on": ["connect-failure"]}}))
    c = lb.conn()
    bad = []
    n = 0
    deadline = time.monotonic() + 4 * t.slow
    # at least 200 requests, and on until the dead one has had 3 half-open periods
    for i in range(20000):
        r = c.request("GET", "/")
        n += 1
        if (r.status, r.header("X-Backend")) != (200, "b1"):
            bad.append((i, r.status, r.header("X-Backend")))
        if n >= 200 and n % 20 == 0 and _bs(lb, "dead")["breaker_transitions"]["half_opened"] >= 3:
            break
        check(time.monotonic() < deadline, "no 3 half-open periods of the dead backend within %.1fs" % (4 * t.slow))
    eq(bad, [], "requests not answered 200 by b1")
    eq(_answered(t, b1), n, "requests b1 answered")
    s = _bs(lb, "dead")
    eq(s["breaker"], "open", "dead backend's breaker")
    tr = s["breaker_transitions"]
    # each half-open period lets 1 probe through, which fails and re-opens it
    eq((tr["opened"], tr["closed"]), (1 + tr["half_opened"], 0), "dead backend's transitions %r" % tr)
    want = 5 + tr["half_opened"] * 1
    eq((s["failures_by_kind"]["connect"], s["requests"], s["failures"]), (want, want, want),
       "dead backend: connect failures, requests, failures (5 to trip + %d probes)" % tr["half_opened"])
    eq(_pool_stats(lb)["panic"], False, "pool panic with half the weight eligible")


# --------------------------------------------------------------------------
# 3. a hanging backend: 504 at timeouts.backend, then its breaker opens


def test_breaker_hanging_backend_504_then_open(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b1, "hang=1")
    lb = t.lb(t.config(backends=[b1, b2], timeouts={"backend": "300ms"},
                       pool=_pool(breaker={"consecutive_failures": 3}, retry={"attempts": 0})))
    got = []
    for i in range(6):  # b1, b2, b1, b2, b1 (3rd timeout: open), b2
        r, el = _fresh(lb, timeout=5 * t.slow)
        got.append((r.status, r.header("X-Backend") if r.status == 200 else None))
        if r.status == 504:
            assert_proxy_error(r, 504, "request %d to the hanging backend" % i)
            check(0.25 <= el <= 1.5 * t.slow, "504 after %.3fs, expected about 0.3s (timeouts.backend)" % el)
    eq(got, [(504, None), (200, "b2")] * 3, "(status, backend) of the first 6 requests")
    s = _bs(lb, "b1")
    eq((s["breaker"], s["failures_by_kind"]["timeout"], s["requests"]), ("open", 3, 3),
       "b1 breaker, timeouts, requests")
    check("3 consecutive failures" in s["breaker_reason"], "b1 breaker_reason: %r" % s["breaker_reason"])
    c = lb.conn()
    for i in range(10):
        t0 = time.monotonic()
        r = c.request("GET", "/")
        el = time.monotonic() - t0
        eq((r.status, r.header("X-Backend")), (200, "b2"), "request %d with b1's breaker open" % i)
        check(el < 0.25 * t.slow, "request %d took %.3fs with b1's breaker open" % (i, el))
    eq(_bs(lb, "b1")["requests"], 3, "requests sent to b1 in all")


# --------------------------------------------------------------------------
# 4. slow-call rate


def test_breaker_slow_call_rate(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b1, "latency=200ms")
    lb = _two_lb(t, b1, b2,
                 breaker={"consecutive_failures": 0, "failure_rate": 0.5, "slow_call": "100ms",
                          "slow_call_rate": 0.5, "min_requests": 4, "window": "10s", "open_for": "10s"},
                 retry={"attempts": 0})
    c = lb.conn()
    # b1's window fills with its own 4 slow calls (requests 1, 3, 5, 7): 4/4 >= 0.5
    seq = []
    for i in range(8):
        r = c.request("GET", "/")
        eq(r.status, 200, "request %d" % i)
        seq.append(r.header("X-Backend"))
    eq(seq, ["b1", "b2"] * 4, "backends of the first 8 requests")
    s = _bs(lb, "b1")
    eq((s["breaker"], s["failures"], s["requests"]), ("open", 0, 4), "b1 breaker, failures, requests")
    check("slow" in s["breaker_reason"], "b1 breaker_reason should mention slow calls: %r" % s["breaker_reason"])
    check("(4/4 slower than 100ms)" in s["breaker_reason"], "b1 breaker_reason: %r" % s["breaker_reason"])
    for i in range(10):
        r = c.request("GET", "/")
        eq((r.status, r.header("X-Backend")), (200, "b2"), "request %d after b1 tripped for slowness" % i)
    eq(_answered(t, b1), 4, "requests b1 answered")
    eq(_bs(lb, "b2")["breaker"], "closed", "b2 breaker")


# --------------------------------------------------------------------------
# 5. everything failing: fail fast (panic off) or spread (panic on)


def test_all_backends_open_fail_fast_503(t):
    d1 = _dead(t, "d1")
    d2 = _dead(t, "d2")
    lb = t.lb(t.config(backends=[d1, d2], pool=_pool(retry={"attempts": 0})))
    c = lb.conn()
    got = []
    for i in range(10):  # d1, d2, ... each 5 connect failures: both open
        r = c.request("GET", "/")
        got.append(r.status)
    eq(got, [502] * 10, "statuses of the first 10 requests (connection refused, no retries)")
    for n in ("d1", "d2"):
        s = _bs(lb, n)
        eq((s["breaker"], s["failures_by_kind"]["connect"]), ("open", 5), "%s breaker and connect failures" % n)
    times = []
    for i in range(20):
        t0 = time.monotonic()
        r = c.request("GET", "/")
        times.append(time.monotonic() - t0)
        assert_proxy_error(r, 503, "request %d with every breaker open" % i)
        _retry_after_ok(r, "request %d" % i)
    med = statistics.median(times) * 1000
    limit = 15.0 if t.asan else 5.0
    check(med < limit, "median time of a 503 with every breaker open: %.2fms (limit %.0fms)" % (med, limit))
    eq(_pool_stats(lb)["panic"], False, "pool panic with panic_threshold 0")
    for n in ("d1", "d2"):
        eq(_bs(lb, n)["requests"], 5, "requests sent to %s" % n)


def test_all_backends_open_panic_spreads(t):
    d1 = _dead(t, "d1")
    d2 = _dead(t, "d2")
    # panic_threshold: the default (0.5)
    lb = t.lb(t.config(backends=[d1, d2], pool={"slow_start": "0s", "retry": {"attempts": 0}}))
    c = lb.conn()
    for i in range(10):  # both breakers open after 5 failures each
        r = c.request("GET", "/")
        assert_proxy_error(r, 502, "request %d" % i)
    eq([_bs(lb, n)["breaker"] for n in ("d1", "d2")], ["open", "open"], "breakers after 10 failures")
    got = Counter()
    for i in range(20):
        r = c.request("GET", "/")
        got[r.status] += 1
    eq(dict(got), {502: 20}, "statuses in panic (no 503: health and breakers are ignored)")
    eq(_pool_stats(lb)["panic"], True, "pool panic")
    eq([_bs(lb, n)["requests"] for n in ("d1", "d2")], [15, 15], "requests to d1, d2 (5 + 10 each in panic)")
    check("pool api in panic" in lb.stderr_text(), "lb did not log 'pool api in panic'")


# --------------------------------------------------------------------------
# 6. in-flight limit and the pending queue


def test_limits_inflight_queue_and_503(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"},
                       pool=_pool(limits={"max_inflight": 1, "max_pending": 2, "pending_timeout": "300ms"})))
    res = {}

    def run(name, c, t0):
        try:
            r = c.read_response(timeout=5 * t.slow)
            res[name] = (r, time.monotonic() - t0)
        except Exception as e:
            res[name] = (e, time.monotonic() - t0)

    ths = []

    def start(name):
        c = lb.conn()
        t0 = time.monotonic()
        c.send(build_request("GET", "/sleep/1000", headers=[("Connection", "close")]))
        th = threading.Thread(target=run, args=(name, c, t0), daemon=True)
        th.start()
        ths.append(th)

    start("A")
    wait_until(lambda: _bs(lb, "b1")["inflight"] == 1, 2 * t.slow, what="request A in flight")
    start("B")
    wait_until(lambda: _pool_stats(lb)["pending"] == 1, 2 * t.slow, interval=0.005, what="request B queued")
    start("C")
    wait_until(lambda: _pool_stats(lb)["pending"] == 2, 2 * t.slow, interval=0.005, what="request C queued")
    start("D")
    for th in ths:
        th.join(6 * t.slow)
    for k in "ABCD":
        check(k in res and not isinstance(res[k][0], Exception), "request %s: %r" % (k, res.get(k)))
    eq({k: res[k][0].status for k in "ABCD"}, {"A": 200, "B": 503, "C": 503, "D": 503}, "statuses")
    for k in "BCD":
        assert_proxy_error(res[k][0], 503, "request %s" % k)
        _retry_after_ok(res[k][0], "request %s" % k)
    for k in "BC":
        check(0.27 <= res[k][1] <= 0.3 + 0.4 * t.slow,
              "queued request %s answered after %.3fs, expected about 0.3s (pending_timeout)" % (k, res[k][1]))
    check(res["D"][1] < 0.25 * t.slow, "request D (queue full) answered after %.3fs, expected at once" % res["D"][1])
    check(0.95 <= res["A"][1] <= 1.0 + 0.5 * t.slow, "request A took %.3fs, expected about 1s" % res["A"][1])
    eq(res["A"][0].header("X-Backend"), "b1", "request A's backend")
    eq(_pool_stats(lb)["pending"], 0, "pool pending at the end")
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 0, 1.0, "b1 inflight back to 0")
    eq(_answered(t, b1), 1, "requests b1 answered")


# --------------------------------------------------------------------------
# 7. the retry budget caps the extra load when every backend fails


def _budget_retries(n, attempts, budget, floor=10):
    """The proxy's rule, step by step (one worker, all within 10 s): before a
    retry, retries so far + 1 <= max(budget * requests so far, floor)."""
    rty = 0
    for k in range(1, n + 1):
        for _ in range(attempts):
            allowed = budget * float(k)
            if allowed < floor:
                allowed = float(floor)
            if rty + 1 > allowed:
                break
            rty += 1
    return rty


def test_retry_budget_caps_load(t):
    _needs_lb_backend(t)
    bs = [t.backend("b%d" % i) for i in (1, 2, 3)]
    lb = t.lb(t.config(backends=bs, pool=_pool(
        breaker={"consecutive_failures": 0, "failure_rate": 0, "slow_call_rate": 0},
        retry={"attempts": 2, "budget": 0.2, "on": ["503"]})))
    c = lb.conn()
    t0 = time.monotonic()
    got = Counter()
    for i in range(100):
        got[c.request("GET", "/status/503").status] += 1
    el = time.monotonic() - t0
    check(el < 8, "100 requests took %.1fs: the budget window (10 s) would move" % el)
    eq(dict(got), {503: 100}, "statuses")
    total = sum(_answered(t, b) for b in bs)
    want = 100 + _budget_retries(100, 2, 0.2)
    eq(want, 120, "the rule's own count (sanity)")
    check(total <= 100 + max(0.2 * 100, 10), "backends answered %d requests for 100" % total)
    eq(total, want, "requests the 3 backends answered for 100 client requests (10 + 0.2 x 100 retries at most)")
    eq(sum(_bs(lb, b.name)["requests"] for b in bs), want, "requests in /stats.json")


# --------------------------------------------------------------------------
# 8. a request with a body is not retried after it was sent


def test_retry_post_body_not_retried_after_reset(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b1, "reset_rate=1")
    lb = _two_lb(t, b1, b2, retry={"attempts": 2, "budget": 0.2, "on": ["connect-failure", "reset", "503"]})
    body = b"p" * 1000
    # first picks alternate b1, b2, b1, ...; b1 resets everything
    plan = [("POST", 502), ("GET", 200), ("GET", 200), ("POST", 200), ("POST", 502), ("GET", 200)]
    got = []
    for m, _ in plan:
        r, _ = _fresh(lb, m, "/echo", body=body if m == "POST" else None)
        got.append((m, r.status, r.header("X-Backend") if r.status == 200 else None))
        if r.status == 200 and m == "POST":
            eq(r.json()["body_length"], 1000, "body length at b2")
    want = [("POST", 502, None), ("GET", 200, "b2"), ("GET", 200, "b2"), ("POST", 200, "b2"),
            ("POST", 502, None), ("GET", 200, "b2")]
    eq(got, want, "(method, status, backend): POSTs reset by b1 are not retried, the GET is")
    s1 = _bs(lb, "b1")
    eq((s1["requests"], s1["failures_by_kind"]["reset"]), (3, 3), "b1 requests and resets")
    eq(_answered(t, b2), 4, "requests b2 answered (GET, retried GET, POST, GET)")


def test_retry_post_retried_on_connect_failure(t):
    """Nothing of a request was sent when the connection was refused: even a
    POST with a body goes to another backend."""
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[_dead(t, "dead"), {"name": "b1", "address": b1.addr}],
                       pool=_pool(retry={"attempts": 1, "budget": 0.2, "on": ["connect-failure"]})))
    body = b"q" * 1000
    for i in range(4):  # the first pick is dead for requests 0 and 2
        r, _ = _fresh(lb, "POST", "/echo", body=body)
        eq((r.status, r.header("X-Backend")), (200, "b1"), "POST %d" % i)
        eq(r.json()["body_length"], 1000, "body length at b1 (POST %d)" % i)
    eq(_bs(lb, "dead")["failures_by_kind"]["connect"], 2, "connect failures of dead")
    eq(_answered(t, b1), 4, "requests b1 answered")


# --------------------------------------------------------------------------
# more breaker rules: the failure-rate trigger at its boundary, re-trips double


def test_breaker_failure_rate_at_min_requests(t):
    """failure_rate 0.5 over the window once it holds min_requests 10, with
    consecutive failures off: b2 fails every second request of its own (the
    client picks /status/500 on b2's turns), so it trips at its 10th request
    (5/10 >= 0.5) and not before (4/9 is below min_requests)."""
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    lb = _two_lb(t, b1, b2,
                 breaker={"consecutive_failures": 0, "failure_rate": 0.5, "min_requests": 10, "window": "10s",
                          "slow_call_rate": 0, "open_for": "10s"},
                 retry={"attempts": 0})
    c = lb.conn()
    got = []
    for i in range(20):  # b1 on even i, b2 on odd i; b2's k-th request (k = (i+1)/2) fails when k is even
        k = (i + 1) // 2
        path = "/status/500" if i % 2 == 1 and k % 2 == 0 else "/"
        r = c.request("GET", path)
        got.append((r.status, r.header("X-Backend")))
        if i == 16:  # b2 has had 9 requests, 4 failed: below min_requests, still closed
            eq(_bs(lb, "b2")["breaker"], "closed", "b2 breaker after 9 requests (4 failed)")
    want = []
    for i in range(20):
        k = (i + 1) // 2
        want.append((200, "b1") if i % 2 == 0 else ((500 if k % 2 == 0 else 200), "b2"))
    eq(got, want, "(status, backend) of 20 requests")
    s = _bs(lb, "b2")
    eq((s["breaker"], s["requests"], s["failures"]), ("open", 10, 5), "b2 breaker, requests, failures")
    check("failure rate" in s["breaker_reason"] and "(5/10)" in s["breaker_reason"],
          "b2 breaker_reason: %r" % s["breaker_reason"])
    for i in range(6):
        r = c.request("GET", "/")
        eq((r.status, r.header("X-Backend")), (200, "b1"), "request %d after b2 tripped" % i)
    eq(_answered(t, b2), 10, "requests b2 answered")


def test_breaker_failed_probe_doubles_open_period(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b2, "error_rate=1&error_status=503")
    lb = _two_lb(t, b1, b2,
                 breaker={"consecutive_failures": 2, "open_for": "300ms", "max_open_for": "10s",
                          "half_open_probes": 1},
                 retry={"attempts": 0})
    c = lb.conn()
    got = [c.request("GET", "/").status for _ in range(4)]  # b1, b2, b1, b2: open
    t_open = time.monotonic()
    eq(got, [200, 503, 200, 503], "statuses of the first 4 requests")
    eq(_bs(lb, "b2")["breaker"], "open", "b2 breaker after 2 failures")
    left = t_open + 0.34 - time.monotonic()  # 300 ms + 10% jitter is over
    if left > 0:
        time.sleep(left)
    # the next requests: b2 gets its one probe, which fails: open again, for 600 ms (+-10%)
    seen = []
    for i in range(2):
        r = c.request("GET", "/")
        seen.append((r.status, r.header("X-Backend")))
    t_reopen = time.monotonic()
    check((503, "b2") in seen, "b2 got no probe after its open period: %r" % (seen,))
    s = _bs(lb, "b2")
    eq((s["breaker"], s["breaker_transitions"]), ("open", {"opened": 2, "half_opened": 1, "closed": 0}),
       "b2 after its probe failed")
    check("probe failed in half-open; open for 600ms" in s["breaker_reason"], "b2 breaker_reason: %r" % s["breaker_reason"])
    # for the doubled period's first 540 ms (600 - 10%), nothing reaches b2
    n = 0
    for i in range(200):
        if time.monotonic() - t_reopen > 0.45:
            break
        r = c.request("GET", "/")
        eq((r.status, r.header("X-Backend")), (200, "b1"), "request %d in the doubled open period" % i)
        n += 1
        time.sleep(0.005)
    check(n >= 2, "only %d requests in the doubled open period (the machine is too slow)" % n)
    eq(_answered(t, b2), 3, "requests b2 answered (2 failures + 1 probe)")


# --------------------------------------------------------------------------
# retries: never the same backend twice; budget spent only on real retries


def test_retry_each_backend_once_two_backends(t):
    """attempts 2 with 2 backends that both answer 503: each request is tried
    on both, never a third time (no untried backend is left). budget 1.0
    allows a retry for every request: 20 requests, exactly 40 tries."""
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    lb = _two_lb(t, b1, b2, breaker={"consecutive_failures": 0, "failure_rate": 0, "slow_call_rate": 0},
                 retry={"attempts": 2, "budget": 1.0, "on": ["503"]})
    c = lb.conn()
    got = Counter(c.request("GET", "/status/503").status for _ in range(20))
    eq(dict(got), {503: 20}, "statuses")
    eq((_answered(t, b1), _answered(t, b2)), (20, 20),
       "requests b1, b2 answered (every request once on each; budget 1.0 covers a retry per request)")


def test_retry_budget_not_spent_without_retry(t):
    """A failure with no other backend to go to is not a retry and must not
    use up the budget: budget 0 still allows 10 retries per 10 s."""
    _needs_lb_backend(t)
    b2 = t.backend("b2")
    cfg = t.config(backends=[_dead(t, "dead"), {"name": "b2", "address": b2.addr, "state": "maint"}],
                   pool=_pool(breaker={"consecutive_failures": 0, "failure_rate": 0, "slow_call_rate": 0},
                              retry={"attempts": 1, "budget": 0.0, "on": ["connect-failure"]}))
    cfg["admin"]["token"] = "tok"
    lb = t.lb(cfg)
    c = lb.conn()
    for i in range(12):  # only the dead backend is active: 502, and nothing was retried
        assert_proxy_error(c.request("GET", "/"), 502, "request %d with only the dead backend active" % i)
    ac = HttpConn(t, lb.admin_port)
    r = ac.request("POST", "/api/pools/api/backends/b2/state", headers=[("Authorization", "Bearer tok")],
                   body=b"active", host="127.0.0.1")
    eq(r.status, 200, "set b2 active")
    got = []
    for i in range(6):  # dead, b2, dead, b2, ...: the dead one's requests go on to b2
        r = c.request("GET", "/")
        got.append((r.status, r.header("X-Backend")))
    eq(got, [(200, "b2")] * 6, "(status, backend) once b2 is active (3 retries, well within 10 per 10 s)")
    eq(_bs(lb, "dead")["failures_by_kind"]["connect"], 15, "connect failures of the dead backend")


# --------------------------------------------------------------------------
# a probe whose client leaves gives its slot back


def test_breaker_probe_abandoned_by_client(t):
    """half_open_probes 1: the probe's client leaves in the middle of its
    request body (no verdict on the backend). The slot must come back, or the
    breaker stays half-open with no probe left: closed to traffic for good."""
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    _control(t, b2, "error_rate=1&error_status=500")
    lb = _two_lb(t, b1, b2,
                 breaker={"consecutive_failures": 2, "open_for": "300ms", "max_open_for": "10s",
                          "half_open_probes": 1},
                 retry={"attempts": 0})
    c = lb.conn()
    eq([c.request("GET", "/").status for _ in range(4)], [200, 500, 200, 500], "statuses: b2 trips")
    t_open = time.monotonic()
    _control(t, b2, "error_rate=0")
    left = t_open + 0.34 - time.monotonic()
    if left > 0:
        time.sleep(left)
    # two POSTs at once, each with 10 of its 1000 body bytes: one of them is b2's probe
    ps = [lb.conn(), lb.conn()]
    for k in ps:
        k.send(build_request("POST", "/echo", headers=[("Content-Length", "1000")]) + b"x" * 10)
    s = _wait_backend(t, lb, "b2", lambda s: s["breaker"] == "half-open" and s["inflight"] == 1, 1.0,
                      "b2 half-open with its probe in flight")
    eq(s["breaker_transitions"]["half_opened"], 1, "b2 half-open periods")
    for k in ps:  # both clients leave in the middle of their bodies
        k.close()
    _wait_backend(t, lb, "b2", lambda s: s["inflight"] == 0, 1.0, "the abandoned probe no longer in flight")
    seen = []
    for i in range(6):
        r = c.request("GET", "/")
        seen.append((r.status, r.header("X-Backend")))
    check((200, "b2") in seen, "b2 got no request after its probe was abandoned: %r; b2 %r" % (seen, _bs(lb, "b2")))
    s = _wait_backend(t, lb, "b2", lambda s: s["breaker"] == "closed", 1.0, "b2 breaker closed")
    eq(s["breaker_transitions"], {"opened": 1, "half_opened": 1, "closed": 1}, "b2 transitions")


# --------------------------------------------------------------------------
# limits: a queued request is served when a slot frees; max_connections


def test_limits_queued_request_served_when_slot_frees(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"},
                       pool=_pool(limits={"max_inflight": 1, "max_pending": 5, "pending_timeout": "3s"})))
    res = {}

    def run(name, c, t0):
        try:
            res[name] = (c.read_response(timeout=6 * t.slow), time.monotonic() - t0)
        except Exception as e:
            res[name] = (e, time.monotonic() - t0)

    ths = []
    t0 = time.monotonic()
    for name in "ABC":
        c = lb.conn()
        c.send(build_request("GET", "/sleep/300", headers=[("Connection", "close")]))
        th = threading.Thread(target=run, args=(name, c, t0), daemon=True)
        th.start()
        ths.append(th)
        if name == "A":
            wait_until(lambda: _bs(lb, "b1")["inflight"] == 1, 2 * t.slow, what="A in flight")
    wait_until(lambda: _pool_stats(lb)["pending"] == 2, 2 * t.slow, interval=0.005, what="B and C queued")
    for th in ths:
        th.join(6 * t.slow)
    for k in "ABC":
        check(k in res and not isinstance(res[k][0], Exception), "request %s: %r" % (k, res.get(k)))
    eq([res[k][0].status for k in "ABC"], [200, 200, 200], "statuses of A, B, C")
    el = sorted(res[k][1] for k in "ABC")
    # one at a time: done at about 0.3, 0.6 and 0.9 s
    check(el[2] >= 0.88, "three 300 ms requests with max_inflight 1 all done after %.3fs: not one at a time" % el[2])
    eq(_pool_stats(lb)["pending"], 0, "pool pending at the end")
    eq(_answered(t, b1), 3, "requests b1 answered")


def test_limits_max_connections_per_backend(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"},
                       pool=_pool(limits={"max_connections": 1, "max_pending": 0, "pending_timeout": "300ms"})))
    a = lb.conn()
    a.send(build_request("GET", "/sleep/500", headers=[("Connection", "close")]))
    wait_until(lambda: _bs(lb, "b1")["connections"] == 1, 2 * t.slow, what="one upstream connection to b1")
    r, el = _fresh(lb)
    assert_proxy_error(r, 503, "a second request with max_connections 1 and no queue")
    _retry_after_ok(r, "max_connections 503")
    check(el < 0.15 * t.slow, "503 after %.3fs, expected at once (max_pending 0)" % el)
    eq(a.read_response(timeout=3 * t.slow).status, 200, "the first request")
    eq(_answered(t, b1), 1, "requests b1 answered")


# --------------------------------------------------------------------------
# panic never overrides an operator's drain


def test_panic_never_uses_drained_backend(t):
    _needs_lb_backend(t)
    b3 = t.backend("b3")
    lb = t.lb(t.config(backends=[_dead(t, "d1"), _dead(t, "d2"), {"name": "b3", "address": b3.addr, "state": "drain"}],
                       pool={"slow_start": "0s", "panic_threshold": 0.5, "retry": {"attempts": 0}}))
    c = lb.conn()
    got = Counter()
    for i in range(30):  # 10 to open both breakers, then 20 in panic
        got[c.request("GET", "/").status] += 1
    eq(dict(got), {502: 30}, "statuses (panic spreads over d1 and d2, never the drained b3)")
    eq(_pool_stats(lb)["panic"], True, "pool panic")
    eq(_answered(t, b3), 0, "requests the drained b3 answered")
    eq([_bs(lb, n)["requests"] for n in ("d1", "d2", "b3")], [15, 15, 0], "requests per backend")


# --------------------------------------------------------------------------
# retry conditions beyond the defaults: timeout, invalid-response


def _rr_sim(weights, n_requests, outcome, attempts):
    """Smooth weighted round-robin with retries on untried backends, as the
    proxy does it (per worker): returns the list of tries per request.
    outcome(i) is True when backend i answers well."""
    cur = [0] * len(weights)
    out = []
    for _ in range(n_requests):
        tried = []
        for a in range(attempts + 1):
            best, total = -1, 0
            for i, w in enumerate(weights):
                if i in tried:
                    continue
                cur[i] += w
                total += w
                if best < 0 or cur[i] > cur[best]:
                    best = i
            if best < 0:
                break
            cur[best] -= total
            tried.append(best)
            if outcome(best):
                break
        out.append(tried)
    return out


def test_retry_on_timeout_and_invalid_response(t):
    _needs_lb_backend(t)
    from pyservers import h_garbage
    hang = t.backend("hang")
    _control(t, hang, "hang=1")
    garbage = t.server(h_garbage)
    good = t.backend("good")
    lb = t.lb(t.config(backends=[{"name": "hang", "address": hang.addr}, {"name": "garbage", "address": garbage.addr},
                                 {"name": "good", "address": good.addr}],
                       timeouts={"backend": "300ms"},
                       pool=_pool(breaker={"consecutive_failures": 0, "failure_rate": 0, "slow_call_rate": 0},
                                  retry={"attempts": 2, "budget": 0.2, "on": ["timeout", "invalid-response"]})))
    plan = _rr_sim([100, 100, 100], 4, lambda i: i == 2, 2)
    for i in range(4):
        r, el = _fresh(lb, timeout=5 * t.slow)
        eq((r.status, r.header("X-Backend")), (200, "good"), "GET %d (tries %r)" % (i, plan[i]))
        if 0 in plan[i]:
            check(el >= 0.29, "GET %d through the hanging backend took only %.3fs" % (i, el))
    tries = Counter(b for p in plan for b in p)
    eq((_bs(lb, "hang")["failures_by_kind"]["timeout"], _bs(lb, "garbage")["failures_by_kind"]["invalid"],
        _answered(t, good)), (tries[0], tries[1], 4),
       "timeouts of hang, invalid responses of garbage, answers of good (tries %r)" % plan)
    # a POST with a body is retried only after a connect failure: the next first pick is the one it gets
    nxt = _rr_sim([100, 100, 100], 5, lambda i: i == 2, 2)[4][0]
    r, _ = _fresh(lb, "POST", "/echo", body=b"z" * 100, timeout=5 * t.slow)
    want = {0: 504, 1: 502, 2: 200}[nxt]
    eq(r.status, want, "POST whose first pick is %s" % ["hang", "garbage", "good"][nxt])


# --------------------------------------------------------------------------
# panic ignores health too


def _panic_health(t, threshold):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    for b in (b1, b2):
        _control(t, b, "health=503")  # only /healthz fails: real requests still get 200
    health = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 3}
    pool = {"slow_start": "0s", "health": health}
    if threshold is not None:
        pool["panic_threshold"] = threshold
    lb = t.lb(t.config(backends=[b1, b2], pool=pool))
    for n in ("b1", "b2"):
        _wait_backend(t, lb, n, lambda s: s["health"] == "down", 1.0, "%s down (its first check decides)" % n)
    return lb, b1, b2


def test_panic_ignores_health_down(t):
    lb, b1, b2 = _panic_health(t, None)  # the default threshold, 0.5
    c = lb.conn()
    seq = [c.request("GET", "/") for _ in range(10)]
    eq([r.status for r in seq], [200] * 10, "statuses with every backend's health down, in panic")
    eq(Counter(r.header("X-Backend") for r in seq), Counter({"b1": 5, "b2": 5}), "spread in panic")
    eq(_pool_stats(lb)["panic"], True, "pool panic")


def test_no_panic_health_down_503(t):
    lb, b1, b2 = _panic_health(t, 0.0)
    c = lb.conn()
    for i in range(5):
        r = c.request("GET", "/")
        assert_proxy_error(r, 503, "request %d with every backend down and panic off" % i)
        _retry_after_ok(r, "request %d" % i)
    eq((_answered(t, b1), _answered(t, b2)), (0, 0), "requests the down backends answered")
    eq(_pool_stats(lb)["panic"], False, "pool panic with panic_threshold 0")


# --------------------------------------------------------------------------
# half-open probes are counted across workers


def test_breaker_half_open_probes_exact_two_workers(t):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    _control(t, b2, "error_rate=1&error_status=500")
    lb = _two_lb(t, b1, b2, workers=2,
                 breaker={"consecutive_failures": 5, "open_for": "500ms", "max_open_for": "10s",
                          "half_open_probes": 2},
                 retry={"attempts": 0})
    # one request at a time on new connections (either worker): b2 trips at its 5th failure
    t_open = None
    for i in range(60):
        r, _ = _fresh(lb)
        if r.status == 500 and _bs(lb, "b2")["breaker"] == "open":
            t_open = time.monotonic()
            break
    check(t_open is not None, "b2's breaker did not open within 60 requests")
    eq(_answered(t, b2), 5, "requests b2 answered before its breaker opened")
    _control(t, b2, "error_rate=0&latency=%dms" % int(300 * t.slow))
    left = t_open + 0.56 - time.monotonic()
    if left > 0:
        time.sleep(left)
    conns = [lb.conn() for _ in range(10)]
    for k in conns:
        k.send(build_request("GET", "/", headers=[("Connection", "close")]))
    seen = Counter()
    for k in conns:
        r = k.read_response(timeout=5 * t.slow)
        eq(r.status, 200, "status of a request while b2 is half-open")
        seen[r.header("X-Backend")] += 1
    eq(dict(seen), {"b1": 8, "b2": 2}, "10 concurrent requests over 2 workers with 2 half-open probes")
    s = _wait_backend(t, lb, "b2", lambda s: s["breaker"] == "closed", 1.0, "b2 breaker closed")
    eq(s["breaker_transitions"], {"opened": 1, "half_opened": 1, "closed": 1}, "b2 transitions")


def _many_backends(t, n):
    """N lb-backend listeners on kernel-chosen ports, 16 per process (its limit); returns
    their addresses in order."""
    import subprocess
    addrs = []
    for start in range(0, n, 16):  # bounded: n / 16 processes
        k = min(16, n - start)
        err_path = "%s/many-%d.stderr" % (t.tmp, start)
        err = open(err_path, "wb")
        args = [t.backend_bin, "--name", "m%d" % start] + ["--listen", "127.0.0.1:0"] * k
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

        def stop(p=p, err=err):
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3)
            err.close()

        t.on_cleanup(stop)

        def listening(path=err_path, k=k):
            with open(path) as f:
                got = [ln.rsplit(" ", 1)[1] for ln in f.read().splitlines() if " listening on " in ln]
            return got if len(got) == k else None

        addrs += wait_until(listening, 5 * t.slow, what="lb-backend listening on %d ports" % k)
    return addrs


@timeout(60)
def test_retry_never_repeats_a_backend_in_a_pool_of_200(t):
    """Retries exclude the backends a request tried, whatever their index in the pool: the
    tried set used to be 64 bits, so backend 100 could be tried again and again. Here it
    weighs 1000 (round-robin would pick it every time), every backend answers 503, and the
    pool retries 503 five times: each request must reach six different backends. (Two
    requests: their ten retries are what the retry budget allows in 10 s at the least.)"""
    _needs_lb_backend(t)
    addrs = _many_backends(t, 200)
    backends = [{"name": "m%d" % i, "address": a, "weight": 1000 if i == 100 else 1} for i, a in enumerate(addrs)]
    lb = t.lb(t.config(backends=backends, pool={"retry": {"attempts": 5, "budget": 1.0, "on": ["503"]},
                                                "breaker": {"consecutive_failures": 0, "failure_rate": 0.0,
                                                            "slow_call_rate": 0.0}}))
    n = 2
    for i in range(n):
        r = lb.get("/status/503")
        eq(r.status, 503, "request %d: the last backend's answer" % i)
    reqs = {b["name"]: b["requests"] for b in _pool_stats(lb)["backends"]}
    eq(sum(reqs.values()), 6 * n, "requests sent to backends (one try and five retries each)")
    eq(max(reqs.values()), n, "requests at the busiest backend (once per client request at most)")
    eq(reqs["m100"], n, "requests at the heavy backend m100")
