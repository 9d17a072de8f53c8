"""Operations, black box: state carried over reloads, many reloads without
growth, graceful stop with requests in flight, backend drain (file and admin
API), reloads under load, invalid reloads.

Backends are bin/lb-backend processes (counts from their /__stats, faults
through /__control, both sent straight to them). workers = 1, health checks
off, slow_start 0 and panic_threshold 0 unless said otherwise, so that
round-robin over equal backends alternates strictly and counts are exact.
"""

import copy
import signal
import socket
import threading
import time
from collections import Counter

from harness import HttpConn, build_request, check, config_text, eq, fail, rss_kb, timeout, wait_until


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
    return _backend_get(t, b, "/__stats").json()["requests"]


def _be(b, **kw):
    d = {"name": b.name, "address": b.addr}
    d.update(kw)
    return d


def _pool(**kw):
    p = {"slow_start": "0s", "panic_threshold": 0.0}
    p.update(kw)
    return p


def _bs(lb, name, pool="api"):
    return lb.backend_stats(pool, name)


def _rewrite(lb, cfg):
    with open(lb.conf_path, "w") as f:
        f.write(config_text(cfg))


def _wait_reloads(t, lb, ok, failed, limit_s=3.0):
    last = [None]

    def done():
        last[0] = lb.stats()["reloads"]
        return (last[0]["ok"], last[0]["failed"]) == (ok, failed)

    try:
        wait_until(done, limit_s * t.slow, interval=0.01, what="reload counters")
    except AssertionError:
        fail("reloads: expected ok=%d failed=%d, got %r" % (ok, failed, last[0]))
    return last[0]


def _wait_all_workers(t, lb, gen):
    """lb logs 'reload complete: every worker runs generation N' once every worker adopted it."""
    needle = "reload complete: every worker runs generation %d " % gen
    wait_until(lambda: needle in lb.stderr_text(), 3 * t.slow, interval=0.01, what="'%s' in lb's log" % needle.strip())


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


TOKEN = "ops-token"


def _api(lb, pool, name, action, body, auth="token"):
    hs = [("Connection", "close")]
    if auth == "token":
        hs.append(("Authorization", "Bearer " + TOKEN))
    elif auth is not None:
        hs.append(("Authorization", auth))
    c = HttpConn(lb.ctx, lb.admin_port)
    try:
        return c.request("POST", "/api/pools/%s/backends/%s/%s" % (pool, name, action), headers=hs,
                         body=body.encode(), host="127.0.0.1")
    finally:
        c.close()


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _healthz(lb):
    try:
        return lb.admin_get("/healthz").status
    except Exception:
        return None


class _Slow:
    """A request sent now and read in a thread: .result is (response or exception, seconds)."""

    def __init__(self, t, lb, path, close=True):
        self.c = lb.conn(timeout=10 * t.slow)
        self.t0 = time.monotonic()
        self.result = None
        hs = [("Connection", "close")] if close else []
        self.c.send(build_request("GET", path, headers=hs))
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        try:
            r = self.c.read_response()
            self.result = (r, time.monotonic() - self.t0)
        except Exception as e:
            self.result = (e, time.monotonic() - self.t0)

    def wait(self, seconds):
        self.th.join(seconds)
        check(not self.th.is_alive(), "a slow request is still waiting after %.1fs" % seconds)
        r, el = self.result
        if isinstance(r, Exception):
            fail("slow request failed after %.2fs: %r" % (el, r))
        return r, el


# --------------------------------------------------------------------------
# 1. breaker state and counters survive a reload


def test_reload_keeps_breaker_and_counters(t):
    _needs_lb_backend(t)
    b1, b2, b3 = t.backend("b1"), t.backend("b2"), t.backend("b3")
    _control(t, b2, "error_rate=1&error_status=500")
    cfg = t.config(backends=[b1, b2], pool=_pool(
        breaker={"consecutive_failures": 5, "open_for": "30s", "max_open_for": "60s"}, retry={"attempts": 0}))
    lb = t.lb(cfg)
    c = lb.conn()
    got = [c.request("GET", "/").status for _ in range(10)]
    eq(got, [200, 500] * 5, "statuses: b2 fails 5 times and its breaker opens")
    before = {n: _bs(lb, n) for n in ("b1", "b2")}
    eq((before["b2"]["breaker"], before["b2"]["requests"], before["b2"]["failures"]), ("open", 5, 5),
       "b2 before the reload")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"].append(_be(b3))
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    rl = _wait_reloads(t, lb, 1, 0)
    eq((rl.get("last"), rl.get("generation")), ("ok", 1), "reloads.last and generation")
    keys = ("breaker", "breaker_transitions", "breaker_reason", "requests", "failures", "failures_by_kind", "responses")
    for n in ("b1", "b2"):
        after = _bs(lb, n)
        eq({k: after[k] for k in keys}, {k: before[n][k] for k in keys}, "%s state across the reload" % n)
    eq(_bs(lb, "b3")["requests"], 0, "b3 requests right after the reload")
    _wait_all_workers(t, lb, 1)
    seen = Counter(c.request("GET", "/").header("X-Backend") for _ in range(10))
    eq(dict(seen), {"b1": 5, "b3": 5}, "10 requests after the reload, b2's breaker still open")
    eq(_answered(t, b2), 5, "requests b2 answered in all")


def test_reload_moved_backend_starts_fresh(t):
    """Same name, another address: a new backend, its old state is not carried over."""
    _needs_lb_backend(t)
    b1, b2, b2new = t.backend("b1"), t.backend("b2"), t.backend("b2new")
    _control(t, b2, "error_rate=1&error_status=500")
    cfg = t.config(backends=[b1, b2], pool=_pool(
        breaker={"consecutive_failures": 5, "open_for": "30s", "max_open_for": "60s"}, retry={"attempts": 0}))
    lb = t.lb(cfg)
    c = lb.conn()
    eq([c.request("GET", "/").status for _ in range(10)], [200, 500] * 5, "statuses before the reload")
    eq(_bs(lb, "b2")["breaker"], "open", "b2 breaker before the reload")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][1]["address"] = b2new.addr
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    s = _bs(lb, "b2")
    eq((s["address"], s["breaker"], s["requests"], s["failures"]), (b2new.addr, "closed", 0, 0),
       "b2 at its new address")
    _wait_all_workers(t, lb, 1)
    seen = Counter(c.request("GET", "/").header("X-Backend") for _ in range(10))
    eq(dict(seen), {"b1": 5, "b2new": 5}, "10 requests after moving b2")


# --------------------------------------------------------------------------
# 2. a thousand reloads: memory stays put


def _two_pools_cfg(t, bs, variant):
    """2 pools x 3 backends; variant 1 changes weights and drops one backend of pool 'b'."""
    pa = {"name": "api", "health": {"type": "off"}, "slow_start": "0s",
          "backends": [_be(b, weight=100 + 10 * variant) for b in bs]}
    pb = {"name": "b", "health": {"type": "tcp", "interval": "1s", "timeout": "500ms"}, "slow_start": "0s",
          "backends": [_be(b) for b in (bs if variant == 0 else bs[:2])]}
    cfg = t.config(pools=[pa, pb])
    return cfg


@timeout(60)
def test_reload_1000_times_rss_flat(t):
    _needs_lb_backend(t)
    bs = [t.backend("b%d" % i) for i in (1, 2, 3)]
    cfgs = [_two_pools_cfg(t, bs, 0), None]
    lb = t.lb(cfgs[0])
    # the listener and admin ports of the first config, for both variants
    cfgs[1] = _two_pools_cfg(t, bs, 1)
    cfgs[1]["listeners"] = cfgs[0]["listeners"]
    cfgs[1]["admin"] = cfgs[0]["admin"]
    texts = [config_text(c) for c in cfgs]
    state = {"ok": 0}
    # progress is read from lb's log as it grows ("..., generation N"): cheaper
    # than asking /stats.json after every signal, and exact
    tail = open(lb.stderr_path, "rb")
    t.on_cleanup(tail.close)
    seen = bytearray()

    def reload_n(n):
        for i in range(n):  # one SIGHUP, then wait until it is applied: none coalesce
            with open(lb.conf_path, "w") as f:
                f.write(texts[(state["ok"] + 1) % 2])
            lb.signal(signal.SIGHUP)
            want = state["ok"] + 1
            needle = b"), generation %d\n" % want
            deadline = time.monotonic() + 3 * t.slow
            while True:  # bounded by deadline
                seen.extend(tail.read())
                if needle in seen:
                    break
                check(b"reload failed" not in seen, "a reload failed: %r" % bytes(seen[-600:]))
                check(time.monotonic() < deadline, "reload %d not applied within %.1fs" % (want, 3 * t.slow))
                time.sleep(0.0005)
            del seen[:-200]
            state["ok"] = want
            if want % 50 == 0:  # now and then some traffic, and the counters
                eq(lb.get("/").status, 200, "a request after %d reloads" % want)
                eq(lb.stats()["reloads"]["ok"], want, "reloads.ok")

    reload_n(50)
    rss0 = rss_kb(lb.pid)
    t0 = time.monotonic()
    reload_n(1000)
    el = time.monotonic() - t0
    rss1 = rss_kb(lb.pid)
    rl = lb.stats()["reloads"]
    eq((rl["ok"], rl["failed"], rl["generation"]), (1050, 0, 1050), "reloads ok, failed, generation")
    eq(lb.get("/").status, 200, "a request after 1050 reloads")
    names = [[b["name"] for b in p["backends"]] for p in lb.stats()["pools"]]
    eq(names, [["b1", "b2", "b3"], ["b1", "b2", "b3"]], "backends after an even number of reloads")
    print("VmRSS %d KiB after 50 reloads, %d KiB after 1000 more (%.1fs)" % (rss0, rss1, el))
    if t.asan:
        # RSS under ASan measures the sanitizer's quarantine, not lb; leaks are
        # caught by LeakSanitizer when lb exits at cleanup
        print("note: ASan build, RSS not compared")
        return
    # 5%, plus 256 KiB for page granularity and allocator arenas
    check(rss1 <= rss0 * 1.05 + 256, "VmRSS grew from %d KiB to %d KiB over 1000 reloads" % (rss0, rss1))


# --------------------------------------------------------------------------
# 3. SIGTERM with slow requests in flight


def test_sigterm_finishes_5_slow_requests(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s", "drain": "10s", "client_idle": "30s"}))
    idle = lb.conn()
    eq(idle.request("GET", "/").status, 200, "a request on the idle keep-alive connection")
    slow = [_Slow(t, lb, "/sleep/800", close=False) for _ in range(5)]
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 5, 2.0, "5 requests in flight")
    t0 = time.monotonic()
    lb.signal(signal.SIGTERM)
    wait_until(lambda: not _accepts(lb.port), 1.0 * t.slow, interval=0.01, what="new connections refused after SIGTERM")
    check(idle.closed_within(1.0 * t.slow), "idle keep-alive connection not closed after SIGTERM")
    eq(_healthz(lb), 503, "admin /healthz while draining")
    check(lb.proc.poll() is None, "lb exited with 5 requests in flight")
    for i, s in enumerate(slow):
        r, el = s.wait(5 * t.slow)
        eq((r.status, r.header("X-Backend")), (200, "b1"), "slow request %d" % i)
        check("close" in (r.header("Connection") or "").lower(),
              "slow request %d: no Connection: close during shutdown (%r)" % (i, r.header("Connection")))
        check(s.c.closed_within(2 * t.slow), "slow request %d: connection not closed after its response" % i)
    try:
        lb.proc.wait(3 * t.slow)
    except Exception:
        fail("lb still running %.1fs after SIGTERM with every request done" % (time.monotonic() - t0))
    eq(lb.proc.returncode, 0, "exit status")
    el = time.monotonic() - t0
    check(el < 0.8 + 1.5 * t.slow, "exit %.2fs after SIGTERM, requests needed about 0.8s" % el)


def test_second_sigterm_exits_at_once(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "30s", "drain": "30s"}))
    s = _Slow(t, lb, "/sleep/20000")
    _wait_backend(t, lb, "b1", lambda st: st["inflight"] == 1, 2.0, "the long request in flight")
    lb.signal(signal.SIGTERM)
    wait_until(lambda: _healthz(lb) == 503, 1.0 * t.slow, interval=0.01, what="/healthz 503 after the first SIGTERM")
    check(lb.proc.poll() is None, "lb exited after one SIGTERM with a request in flight")
    t0 = time.monotonic()
    lb.signal(signal.SIGTERM)
    try:
        lb.proc.wait(1.0 * t.slow)
    except Exception:
        fail("lb still running %.1fs after the second SIGTERM" % (time.monotonic() - t0))
    eq(lb.proc.returncode, 0, "exit status after the second SIGTERM")
    check("second stop signal" in lb.stderr_text(), "lb did not log the second stop signal")


# --------------------------------------------------------------------------
# 4. drain by the file (reload) while a request is in flight


def test_reload_drain_backend_inflight_finishes(t):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    cfg = t.config(backends=[b1, b2], timeouts={"backend": "5s"}, pool=_pool())
    lb = t.lb(cfg)
    sleep_ms = int(800 * t.slow)
    slow = _Slow(t, lb, "/sleep/%d" % sleep_ms)  # the first pick: b1
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 1, 1.0, "the slow request in flight at b1")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][0]["state"] = "drain"
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    _wait_all_workers(t, lb, 1)
    s = _bs(lb, "b1")
    eq((s["admin_state"], s["inflight"], s["drained"]), ("drain", 1, False), "b1 draining with a request in flight")
    c = lb.conn()
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(seen, ["b2"] * 10, "10 requests while b1 drains")
    check(slow.result is None, "the slow request finished before the drain was checked (%r)" % (slow.result,))
    r, el = slow.wait(5 * t.slow)
    eq((r.status, r.header("X-Backend")), (200, "b1"), "the request in flight at b1")
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 0 and s["drained"] is True and s["connections"] == 0, 1.0,
                  "b1 drained, its upstream connections closed")
    eq(_answered(t, b1), 1, "requests b1 answered")
    eq(_answered(t, b2), 10, "requests b2 answered")


# --------------------------------------------------------------------------
# 5. drain, active and maint through the admin API


def test_admin_api_drain_active_maint(t):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    health = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 3}
    cfg = t.config(backends=[b1, b2], timeouts={"backend": "5s"}, pool=_pool(health=health))
    cfg["admin"]["token"] = TOKEN
    lb = t.lb(cfg)
    _wait_backend(t, lb, "b1", lambda s: s["health"] == "up", 1.0, "b1 health up")
    _wait_backend(t, lb, "b2", lambda s: s["health"] == "up", 1.0, "b2 health up")

    def state():
        return _bs(lb, "b1")["admin_state"]

    eq(_api(lb, "api", "b1", "state", "drain", auth=None).status, 401, "no Authorization")
    eq(_api(lb, "api", "b1", "state", "drain", auth="Bearer wrong-token").status, 403, "wrong token")
    eq(_api(lb, "api", "b9", "state", "drain").status, 404, "unknown backend")
    eq(_api(lb, "nopool", "b1", "state", "drain").status, 404, "unknown pool")
    r = _api(lb, "api", "b1", "state", "drained")
    eq(r.status, 400, "bad state body")
    check(r.body.strip() != b"", "400 without a message")
    eq(_api(lb, "api", "b1", "weight", "1001").status, 400, "weight 1001")
    eq(state(), "active", "b1 after the refused changes")

    slow = _Slow(t, lb, "/sleep/%d" % int(800 * t.slow))  # the first pick: b1
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 1, 1.0, "the slow request in flight at b1")
    r = _api(lb, "api", "b1", "state", "drain")
    eq(r.status, 200, "drain with the right token")
    j = r.json()
    eq((j.get("name"), j.get("admin_state")), ("b1", "drain"), "backend JSON in the answer")
    c = lb.conn()
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(seen, ["b2"] * 10, "10 requests while b1 drains")
    r2, _ = slow.wait(5 * t.slow)
    eq((r2.status, r2.header("X-Backend")), (200, "b1"), "the request in flight at b1 when it was drained")
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 0 and s["drained"] is True and s["connections"] == 0, 1.0,
                  "b1 drained, its upstream connections closed")
    eq(_answered(t, b1), 1, "requests b1 answered")

    eq(_api(lb, "api", "b1", "state", "active").status, 200, "active again")
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(Counter(seq), Counter({"b1": 5, "b2": 5}), "10 requests after b1 is active again: %r" % seq)
    r = _api(lb, "api", "b1", "weight", "0")
    eq((r.status, r.json().get("weight")), (200, 0), "weight 0")
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(6)]
    eq(seq, ["b2"] * 6, "requests while b1 has weight 0")
    eq(_api(lb, "api", "b1", "weight", "100").status, 200, "weight 100 again")

    eq(_api(lb, "api", "b1", "state", "maint").status, 200, "maint")
    eq(state(), "maint", "b1 admin_state")
    # a check already under way may still be counted: settle one interval + timeout
    settle = time.monotonic() + 0.35
    wait_until(lambda: time.monotonic() >= settle, 1.0, interval=0.05, what="settle")
    n0 = _bs(lb, "b1")["health_checks"]["ok"]
    end = time.monotonic() + 0.8
    for _ in range(100):  # about 0.8 s, 4 intervals: no check may run
        eq(_bs(lb, "b1")["health_checks"]["ok"], n0, "b1 health_checks.ok in maint")
        if time.monotonic() >= end:
            break
        time.sleep(0.05)
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(6)]
    eq(seq, ["b2"] * 6, "requests while b1 is in maint")
    eq(_api(lb, "api", "b1", "state", "active").status, 200, "active after maint")
    _wait_backend(t, lb, "b1", lambda s: s["health_checks"]["ok"] > n0 and s["health"] == "up", 1.5,
                  "b1 checked again and up after maint")


# --------------------------------------------------------------------------
# 6. reloads that change the backend set under keep-alive load


def test_reload_moves_traffic_under_load(t):
    _needs_lb_backend(t)
    b1, b2, b3 = t.backend("b1"), t.backend("b2"), t.backend("b3")
    cfg = t.config(backends=[b1, b2], workers=2, pool=_pool())
    lb = t.lb(cfg)
    stop = threading.Event()
    log = [[] for _ in range(4)]  # (time sent, status, backend)
    errors = []

    def client(k):
        try:
            c = lb.conn()
            for i in range(100000):  # bounded; stopped by the event
                if stop.is_set():
                    break
                ts = time.monotonic()
                r = c.request("GET", "/")
                log[k].append((ts, r.status, r.header("X-Backend")))
                if r.status != 200:
                    errors.append("client %d request %d: status %d" % (k, i, r.status))
        except Exception as e:
            errors.append("client %d: %r" % (k, e))

    ths = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for th in ths:
        th.start()
    try:
        wait_until(lambda: all(len(x) >= 20 for x in log), 2 * t.slow, what="load on 4 connections")
        # reload 1: b1, b2, b3
        new1 = copy.deepcopy(cfg)
        new1["pools"][0]["backends"].append(_be(b3))
        _rewrite(lb, new1)
        lb.signal(signal.SIGHUP)
        _wait_reloads(t, lb, 1, 0)
        _wait_all_workers(t, lb, 1)
        n1 = sum(len(x) for x in log)
        wait_until(lambda: sum(len(x) for x in log) >= n1 + 100, 2 * t.slow, what="traffic after the first reload")
        # reload 2: b2, b3
        new2 = copy.deepcopy(new1)
        del new2["pools"][0]["backends"][0]
        _rewrite(lb, new2)
        lb.signal(signal.SIGHUP)
        _wait_reloads(t, lb, 2, 0)
        _wait_all_workers(t, lb, 2)
        t_cut = time.monotonic()
        b1_at_cut = _answered(t, b1)
        n2 = sum(len(x) for x in log)
        wait_until(lambda: sum(len(x) for x in log) >= n2 + 200, 3 * t.slow, what="traffic after the second reload")
    finally:
        stop.set()
        for th in ths:
            th.join(5 * t.slow)
    check(not any(th.is_alive() for th in ths), "a client is still running")
    eq(errors, [], "failed requests during the reloads")
    after = Counter(b for x in log for (ts, st, b) in x if ts > t_cut)
    check(sum(after.values()) >= 200, "only %d requests after the second reload" % sum(after.values()))
    eq(after.get("b1", 0), 0, "requests answered by b1 after it was removed (%r)" % dict(after))
    check(after.get("b3", 0) > 0, "b3 got no traffic after the reloads: %r" % dict(after))
    # each worker alternates strictly between b2 and b3: at most one apart per worker
    check(abs(after["b2"] - after["b3"]) <= 2, "b2/b3 split after the second reload: %r" % dict(after))
    eq(_answered(t, b1), b1_at_cut, "requests b1 answered after the second reload")
    eq([b["name"] for b in lb.stats()["pools"][0]["backends"]], ["b2", "b3"], "backends in /stats.json")


# --------------------------------------------------------------------------
# 7. an invalid reload keeps the running configuration


def test_reload_invalid_keeps_serving_exact_round_robin(t):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    cfg = t.config(backends=[b1, b2], pool=_pool(breaker={"open_for": "5s"}))
    lb = t.lb(cfg)
    c = lb.conn()
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(4)]
    eq(seq, ["b1", "b2", "b1", "b2"], "round-robin before the reload")
    lines = config_text(cfg).split("\n")
    idx = [i for i, ln in enumerate(lines) if ln.strip().startswith("open_for = ")]
    eq(len(idx), 1, "lines with open_for in the config")
    lines[idx[0]] = lines[idx[0]].replace('"5s"', '"5"')  # a duration without its unit
    with open(lb.conf_path, "w") as f:
        f.write("\n".join(lines))
    lb.signal(signal.SIGHUP)
    rl = _wait_reloads(t, lb, 0, 1)
    prefix = "%s:%d:" % (lb.conf_path, idx[0] + 1)
    err = str(rl.get("last_error"))
    check(err.startswith(prefix), "reloads.last_error should start with %r: %r" % (prefix, err))
    check("open_for" in err, "reloads.last_error should name open_for: %r" % err)
    eq((rl.get("last"), rl.get("generation")), ("failed", 0), "reloads.last and generation")
    check(("reload: " + prefix) in lb.stderr_text(), "lb did not log the error line %r" % prefix)
    seq = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(seq, ["b1", "b2"] * 5, "round-robin on the same connection after the failed reload")
    r = lb.get("/")
    eq((r.status, r.header("X-Backend")), (200, "b1"), "a new connection after the failed reload")
    # a good file again: applied
    _rewrite(lb, cfg)
    lb.signal(signal.SIGHUP)
    rl = _wait_reloads(t, lb, 1, 1)
    eq((rl.get("last"), rl.get("generation")), ("ok", 1), "reloads.last and generation after a good reload")


# --------------------------------------------------------------------------
# more reload and drain rules


def test_reload_removed_backend_inflight_finishes(t):
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    cfg = t.config(backends=[b1, b2], timeouts={"backend": "5s"}, pool=_pool())
    lb = t.lb(cfg)
    slow = _Slow(t, lb, "/sleep/%d" % int(800 * t.slow))  # the first pick: b1
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 1, 1.0, "the slow request in flight at b1")
    new = copy.deepcopy(cfg)
    del new["pools"][0]["backends"][0]
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    _wait_all_workers(t, lb, 1)
    eq([b["name"] for b in lb.stats()["pools"][0]["backends"]], ["b2"], "backends after the reload")
    c = lb.conn()
    eq([c.request("GET", "/").header("X-Backend") for _ in range(6)], ["b2"] * 6, "requests after b1 was removed")
    r, _ = slow.wait(5 * t.slow)
    eq((r.status, r.header("X-Backend")), (200, "b1"), "the request in flight at the removed b1")
    eq(_answered(t, b1), 1, "requests b1 answered")


def test_reload_keeps_health_state(t):
    _needs_lb_backend(t)
    b1, b2, b3 = t.backend("b1"), t.backend("b2"), t.backend("b3")
    health = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 3}
    cfg = t.config(backends=[b1, b2], pool=_pool(health=health))
    lb = t.lb(cfg)
    _wait_backend(t, lb, "b2", lambda s: s["health"] == "up", 1.0, "b2 up")
    _control(t, b2, "health=503")
    before = _wait_backend(t, lb, "b2", lambda s: s["health"] == "down", 2.0, "b2 down")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"].append(_be(b3))
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    s = _bs(lb, "b2")
    eq(s["health"], "down", "b2 health right after the reload")
    check(s["health_checks"]["failed"] >= before["health_checks"]["failed"] and
          s["health_checks"]["ok"] >= before["health_checks"]["ok"],
          "b2 health_checks went back across the reload: %r -> %r" % (before["health_checks"], s["health_checks"]))
    eq(_bs(lb, "b1")["health"], "up", "b1 health right after the reload")
    _wait_backend(t, lb, "b3", lambda s: s["health"] == "up", 1.0, "the new b3 up after its first check")
    _wait_all_workers(t, lb, 1)
    seen = Counter(lb.get("/").header("X-Backend") for _ in range(10))
    eq(dict(seen), {"b1": 5, "b3": 5}, "requests after the reload with b2 down")


def test_backend_drain_bounded_by_timeouts_drain(t):
    """timeouts.drain is also the longest a backend drain may take: a request
    still in flight at a drained backend after that long is cut, and the
    backend is drained (DESIGN.md, CONFIG.md timeouts.drain)."""
    _needs_lb_backend(t)
    b1, b2 = t.backend("b1"), t.backend("b2")
    cfg = t.config(backends=[b1, b2], timeouts={"backend": "30s", "drain": "500ms"}, pool=_pool())
    cfg["admin"]["token"] = TOKEN
    lb = t.lb(cfg)
    slow = _Slow(t, lb, "/sleep/10000")  # the first pick: b1
    _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 1, 1.0, "the slow request in flight at b1")
    eq(_api(lb, "api", "b1", "state", "drain").status, 200, "drain b1")
    t0 = time.monotonic()
    s = _wait_backend(t, lb, "b1", lambda s: s["inflight"] == 0 and s["drained"] is True, 0.5 + 1.5,
                      "b1 drained within timeouts.drain (500 ms) + slack")
    el = time.monotonic() - t0
    check(el >= 0.4, "b1 drained after %.2fs, before timeouts.drain (500 ms)" % el)
    slow.th.join(2 * t.slow)
    check(not slow.th.is_alive(), "the cut request's client is still waiting")
