"""Active health checks, black box.

NEEDS THE LEAD'S WIRING: these tests fail until lb/ runs the checker of
health/ (hc_new, hc_set_targets, hc_start at start; hc_set_targets on every
reload) and /stats.json shows each backend's "health" from its struct
hc_status. test_health_reload_new_backend_waits_for_first_check also needs hot
reload (a valid SIGHUP applied to the running workers).

Every backend is a bin/lb-backend: /healthz answers 200, and
/__control?health=503 (sent straight to the backend, not through the proxy)
makes it answer 503 until /__control?health=200. The pool checks every 200 ms
(jitter 10%) with a 100 ms timeout, rise 2, fall 3, so:

  down  within fall x interval x 1.1 + timeout (+ slack) of the change,
        and not before 2 x interval x 0.9 (three failures in a row are needed)
  up    within rise x interval x 1.1 + timeout (+ slack) of the restore,
        and not before 1 x interval x 0.9

slow_start is 0 and panic_threshold 0 so that the traffic counts are exact.
"""

import copy
import signal
import time
from collections import Counter

from harness import HttpConn, check, config_text, eq, fail, wait_until

INTERVAL = 0.2
TIMEOUT = 0.1
RISE = 2
FALL = 3
JITTER = 0.1
SLACK = 0.4

HEALTH = {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "100ms",
          "rise": RISE, "fall": FALL, "jitter": JITTER}


def _needs_lb_backend(t):
    if t.use_py_backend():
        fail("these tests need bin/lb-backend (/__control?health=...); build it with make")


def _pool(health=None):
    return {"health": dict(health or HEALTH), "slow_start": "0s", "panic_threshold": 0.0}


def _two(t, health=None, token=None):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cfg = t.config(backends=[b1, b2], pool=_pool(health))
    if token:
        cfg["admin"]["token"] = token
    lb = t.lb(cfg)
    return lb, b1, b2


def _health(lb, name):
    return lb.backend_stats("api", name).get("health")


def _wait_health(t, lb, name, want, limit_s):
    """Poll /stats.json until NAME's health is WANT; returns the seconds it took."""
    t0 = time.monotonic()
    seen = []

    def ok():
        h = _health(lb, name)
        if not seen or seen[-1] != h:
            seen.append(h)
        return h == want

    try:
        wait_until(ok, limit_s * t.slow, interval=0.01, what="%s health %s" % (name, want))
    except AssertionError:
        fail("%s: health not %r within %.2fs (seen, in order: %r)" % (name, want, limit_s * t.slow, seen))
    return time.monotonic() - t0


def _control(t, b, query):
    c = HttpConn(t, b.port)
    try:
        r = c.request("GET", "/__control?" + query, headers=[("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()
    eq(r.status, 200, "lb-backend %s /__control?%s" % (b.name, query))


def _spread(lb, n):
    """N requests, each on a new connection; Counter of X-Backend. Every one must be a 200."""
    seen = Counter()
    for i in range(n):
        r = lb.get("/")
        eq(r.status, 200, "status of request %d" % i)
        seen[r.header("X-Backend")] += 1
    return seen


def _health_checks(t, b):
    """How many /healthz requests lb-backend B has answered."""
    c = HttpConn(t, b.port)
    try:
        r = c.request("GET", "/__stats", headers=[("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()
    eq(r.status, 200, "lb-backend %s /__stats" % b.name)
    return r.json()["health_checks"]


def test_health_up_soon_after_start(t):
    lb, _, _ = _two(t)
    # checks run at once at start: well under one interval, not after it
    _wait_health(t, lb, "b1", "up", 1.0)
    _wait_health(t, lb, "b2", "up", 1.0)
    eq(dict(_spread(lb, 20)), {"b1": 10, "b2": 10}, "requests per backend once both are up")


def test_health_503_down_then_up(t):
    lb, b1, b2 = _two(t)
    _wait_health(t, lb, "b1", "up", 1.0)
    _wait_health(t, lb, "b2", "up", 1.0)

    _control(t, b1, "health=503")
    took = _wait_health(t, lb, "b1", "down", FALL * INTERVAL * (1 + JITTER) + TIMEOUT + SLACK)
    check(took >= (FALL - 1) * INTERVAL * (1 - JITTER) - 0.05,
          "b1 went down %.3fs after /healthz turned 503: before %d failed checks could run" % (took, FALL))
    eq(_health(lb, "b2"), "up", "b2 health while b1 is down")
    eq(dict(_spread(lb, 20)), {"b2": 20}, "requests per backend while b1 is down")
    text = lb.stderr_text()
    check("health down for api/b1: %d consecutive failed checks (last: bad status 503)" % FALL in text,
          "lb logged no 'health down for api/b1: %d consecutive failed checks (last: bad status 503)'" % FALL)

    _control(t, b1, "health=200")
    took = _wait_health(t, lb, "b1", "up", RISE * INTERVAL * (1 + JITTER) + TIMEOUT + SLACK)
    check(took >= (RISE - 1) * INTERVAL * (1 - JITTER) - 0.05,
          "b1 came back up %.3fs after /healthz turned 200: before %d passing checks could run" % (took, RISE))
    seen = _spread(lb, 20)
    eq(sum(seen.values()), 20, "responses counted")
    check(9 <= seen["b1"] <= 11 and 9 <= seen["b2"] <= 11, "requests per backend once b1 is back up: %r" % dict(seen))
    check("health up for api/b1: %d consecutive passing checks" % RISE in lb.stderr_text(),
          "lb logged no 'health up for api/b1: %d consecutive passing checks'" % RISE)


def test_health_checks_at_the_configured_interval(t):
    lb, b1, _ = _two(t)
    _wait_health(t, lb, "b1", "up", 1.0)
    n0 = _health_checks(t, b1)
    time.sleep(2.0)
    n = _health_checks(t, b1) - n0
    # 2 s / 200 ms = 10 checks; jitter (10%) and the poll's edges move it by one or two
    check(8 <= n <= 12, "lb-backend b1 answered %d health checks in 2 s at a 200 ms interval" % n)


def test_health_tcp_check_refused_backend_gets_no_traffic(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    dead = t.port()  # free: nothing listens there
    health = dict(HEALTH, type="tcp")
    del health["path"]
    lb = t.lb(t.config(backends=[{"name": "b1", "address": b1.addr},
                                 {"name": "b2", "address": "127.0.0.1:%d" % dead}], pool=_pool(health)))
    _wait_health(t, lb, "b1", "up", 1.0)
    _wait_health(t, lb, "b2", "down", 1.0)  # the first check decides at once
    eq(dict(_spread(lb, 20)), {"b1": 20}, "requests per backend with b2 refusing connections")
    check("health down for api/b2: first check failed (connect refused)" in lb.stderr_text(),
          "lb logged no 'health down for api/b2: first check failed (connect refused)'")


def test_health_off_is_up_without_checks(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], pool={"health": {"type": "off"}}))
    eq(_health(lb, "b1"), "up", "health of b1 with health.type off")
    n0 = _health_checks(t, b1)
    time.sleep(0.5)
    eq(_health_checks(t, b1) - n0, 0, "health checks sent with health.type off")


def test_health_maint_is_not_checked(t):
    lb, b1, _ = _two(t, token="tok")
    _wait_health(t, lb, "b1", "up", 1.0)

    def set_state(state):
        c = HttpConn(t, lb.admin_port)
        try:
            r = c.request("POST", "/api/pools/api/backends/b1/state", host="127.0.0.1",
                          headers=[("Authorization", "Bearer tok"), ("Connection", "close")], body=state.encode())
        finally:
            c.close()
        eq(r.status, 200, "POST state %s for b1" % state)

    set_state("maint")
    # chosen behaviour: a backend in maint is not checked and its health is unknown
    _wait_health(t, lb, "b1", "unknown", INTERVAL * (1 + JITTER) + SLACK)
    n0 = _health_checks(t, b1)
    time.sleep(0.6)
    eq(_health_checks(t, b1) - n0, 0, "health checks sent to b1 in maint")
    set_state("active")
    _wait_health(t, lb, "b1", "up", 0.1 + TIMEOUT + SLACK)  # looked at every 100 ms, checked at once
    set_state("drain")  # drain: still checked
    n0 = _health_checks(t, b1)
    time.sleep(0.6)
    check(_health_checks(t, b1) - n0 >= 2, "b1 in drain is still checked")


def test_health_reload_new_backend_waits_for_first_check(t):
    _needs_lb_backend(t)
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    _control(t, b2, "health=503")
    cfg = t.config(backends=[b1], pool=_pool())
    lb = t.lb(cfg)
    _wait_health(t, lb, "b1", "up", 1.0)
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"].append({"name": "b2", "address": b2.addr})
    with open(lb.conf_path, "w") as f:
        f.write(config_text(new))
    lb.signal(signal.SIGHUP)

    def b2_listed():
        return any(b["name"] == "b2" for b in lb.stats()["pools"][0]["backends"])

    wait_until(b2_listed, 3 * t.slow, interval=0.02, what="b2 in /stats.json after the reload")
    check(_health(lb, "b2") in ("unknown", "down"), "health of b2 right after the reload: %r" % _health(lb, "b2"))
    _wait_health(t, lb, "b2", "down", TIMEOUT + SLACK)  # its first check, at once
    eq(dict(_spread(lb, 20)), {"b1": 20}, "requests per backend with the new b2 failing its checks")
    eq(_health(lb, "b1"), "up", "b1 keeps its health over the reload")

    _control(t, b2, "health=200")
    _wait_health(t, lb, "b2", "up", RISE * INTERVAL * (1 + JITTER) + TIMEOUT + SLACK)
    seen = _spread(lb, 20)
    check(9 <= seen["b2"] <= 11, "requests per backend once the new b2 is up: %r" % dict(seen))
