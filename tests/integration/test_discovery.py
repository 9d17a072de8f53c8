"""Backends from DNS: a pool's discover name (A, AAAA, SRV) and backend addresses
written as DNS names, answered by tests/integration/dnsserver.py on 127.0.0.1.

lb-backend processes listen on other loopback addresses (127.0.0.2, 127.0.0.3,
..., ::1) with one port, as A records give one port for many addresses. Every
wait is a bounded poll."""

import copy
import json
import os
import signal
import subprocess
import threading
import time

from dnsserver import DnsServer
from harness import HttpConn, check, config_text, eq, fail, timeout, wait_until
from test_load import _load_bin


def _dns(t):
    d = DnsServer(t.port())
    t.on_cleanup(d.stop)
    return d


def _pool(lb, name="api"):
    for p in lb.stats()["pools"]:
        if p["name"] == name:
            return p
    fail("no pool %s in /stats.json" % name)


def _names(lb, pool="api"):
    return sorted(b["name"] for b in _pool(lb, pool)["backends"])


def _wait_names(t, lb, want, pool="api", secs=5):
    last = [None]

    def ok():
        last[0] = _names(lb, pool)
        return last[0] == sorted(want)

    try:
        wait_until(ok, secs * t.slow, interval=0.05, what="backends %r" % (want,))
    except AssertionError:
        fail("pool %s: expected backends %r, got %r" % (pool, sorted(want), last[0]))


def _seen(lb, n, path="/"):
    """X-Backend of N requests over one connection, counted."""
    c = lb.conn()
    out = {}
    for _ in range(n):
        r = c.request("GET", path)
        key = r.header("X-Backend") if r.status == 200 else r.status
        out[key] = out.get(key, 0) + 1
    c.close()
    return out


def _discover_cfg(t, dns, discover, pool=None, extra=None, **kw):
    p = {"name": "api", "health": {"type": "off"}, "slow_start": "0s", "discover": discover}
    p.update(pool or {})
    ex = {"resolvers": [dns.addr]}
    ex.update(extra or {})
    return t.config(pools=[p], extra=ex, **kw)


def _log_count(lb, needle):
    return lb.stderr_text().count(needle)


def test_discovery_a_records(t):
    """A records give the pool its backends, named after their addresses, at start."""
    dns = _dns(t)
    port = t.port()
    bs = [t.backend("b%d" % i, host="127.0.0.%d" % i, port=port) for i in (2, 3, 4)]
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port}))
    want = ["127.0.0.%d:%d" % (i, port) for i in (2, 3, 4)]
    eq(_names(lb), want, "backends right after start (lb waits for the first answer)")
    seen = _seen(lb, 30)
    eq(seen, {"b2": 10, "b3": 10, "b4": 10}, "round-robin over the discovered backends")
    p = _pool(lb)
    d = p["discovery"]
    eq((d["name"], d["type"], d["resolvers"]), ("api.test", "A", [dns.addr]), "discovery object")
    eq(d["last_answer"], want, "last_answer")
    eq((d["updates"], d["stale"], d["last_error"]), (1, False, ""), "updates, stale, last_error")
    eq(d["errors"], {"timeout": 0, "servfail": 0, "nxdomain": 0, "empty": 0, "other": 0}, "errors")
    check(d["ttl_s"] == 1 and 0 <= d["next_in_s"] <= 1.0, "TTL 1 s decides the interval: %r" % d)
    check(abs(d["last_update"] - time.time()) < 5, "last_update is unix time: %r" % d["last_update"])
    for b in p["backends"]:
        eq((b["discovered"], b["address"], b["weight"]), (True, b["name"], 100), "backend %s" % b["name"])
    eq(p["host_names"], [], "host_names")
    # the resolver is asked again every TTL (1 s)
    n = dns.count("api.test", "A")
    wait_until(lambda: dns.count("api.test", "A") >= n + 2, 4 * t.slow, what="two more questions")
    check("discovery: pool api: api.test A: 127.0.0.2:%d 127.0.0.3:%d 127.0.0.4:%d" % (port, port, port)
          in lb.stderr_text(), "the log names what was found")
    m = lb.admin_get("/metrics").body.decode()
    for line in ('lb_pool_discovery_updates_total{pool="api"} 1',
                 'lb_pool_discovery_errors_total{pool="api",kind="servfail"} 0',
                 'lb_pool_discovery_backends{pool="api"} 3',
                 'lb_pool_discovery_stale{pool="api"} 0'):
        check(line in m, "metrics have %r" % line)
    eq(lb.stats()["reloads"]["ok"], 0, "discovery is not a reload")


def test_discovery_srv_weights_ports_priority(t):
    """SRV: port and weight from the records, the lowest priority only; target addresses
    from the additional section, or asked (A) when the server leaves them out."""
    dns = _dns(t)
    p1, p2, p3 = t.port(), t.port(), t.port()
    b2 = t.backend("b2", host="127.0.0.2", port=p1)
    b3 = t.backend("b3", host="127.0.0.3", port=p2)
    t.backend("b4", host="127.0.0.4", port=p3)  # priority 20: a standby that gets nothing
    dns.set("_http._tcp.api.test", "SRV", [(10, 30, p1, "one.api.test"), (10, 10, p2, "two.api.test"),
                                           (20, 50, p3, "three.api.test")], ttl=1)
    dns.set("_http._tcp.noextra.test", "SRV", [(0, 1, p1, "four.api.test")], ttl=1)
    dns.set("four.api.test", "A", ["127.0.0.2"], ttl=1)
    dns.set("one.api.test", "A", ["127.0.0.2"], ttl=1)
    dns.set("two.api.test", "A", ["127.0.0.3"], ttl=1)
    dns.set("three.api.test", "A", ["127.0.0.4"], ttl=1)
    dns.no_additional.add("_http._tcp.noextra.test")
    cfg = _discover_cfg(t, dns, {"name": "_http._tcp.api.test", "type": "SRV"})
    cfg["pools"].append({"name": "other", "health": {"type": "off"},
                         "discover": {"name": "_http._tcp.noextra.test", "type": "SRV"}})
    lb = t.lb(cfg)
    eq(_names(lb), ["127.0.0.2:%d" % p1, "127.0.0.3:%d" % p2], "backends of the lowest priority")
    p = _pool(lb)
    eq(sorted((b["name"], b["weight"]) for b in p["backends"]),
       [("127.0.0.2:%d" % p1, 30), ("127.0.0.3:%d" % p2, 10)], "weights from the records")
    eq(dns.count("one.api.test", "A"), 0, "targets in the additional section are not asked")
    eq(_seen(lb, 40), {"b2": 30, "b3": 10}, "requests in proportion to the SRV weights")
    eq(p["discovery"]["type"], "SRV", "discovery type")
    eq(_names(lb, "other"), ["127.0.0.2:%d" % p1], "a target without an additional record is asked")
    check(dns.count("four.api.test", "A") >= 1, "the target was asked")
    check(b2.proc.poll() is None and b3.proc.poll() is None, "backends alive")


@timeout(45)
def test_discovery_added_backend_after_health_check(t):
    """A backend the answer adds waits for its first health check, then gets traffic."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3, 4):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    # a check takes 300 ms, so the new backend's health is visibly unknown for a while
    health = {"type": "http", "path": "/sleep/300", "interval": "1s", "timeout": "800ms",
              "jitter": 0}
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port}, pool={"health": health}))
    eq(_seen(lb, 10), {"b2": 5, "b3": 5}, "two backends before the change")
    new = "127.0.0.4:%d" % port
    # the new backend's health is unknown until its first check: no traffic until then
    stop = threading.Event()
    statuses, before_up = [], []

    def client():
        c = lb.conn()
        for _ in range(2000):  # bounded; stopped once the new backend took requests
            if stop.is_set():
                break
            r = c.request("GET", "/")
            statuses.append(r.status)
            time.sleep(0.002)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
    try:
        def state():
            for b in _pool(lb)["backends"]:
                if b["name"] == new:
                    if b["health"] != "up":
                        before_up.append(b["requests"])
                    return b
            return None

        wait_until(lambda: (state() or {}).get("health") == "up", 6 * t.slow, interval=0.01,
                   what="the new backend up")
        wait_until(lambda: (state() or {}).get("requests", 0) >= 5, 5 * t.slow, what="traffic to it")
    finally:
        stop.set()
        th.join(10)
    b = state()
    check(b["health_checks"]["ok"] >= 1, "it passed a check: %r" % b["health_checks"])
    check(before_up and all(r == 0 for r in before_up),
          "no request before its first passing check (requests seen while not up: %r)" % before_up)
    eq(set(statuses), {200}, "every request answered 200")
    eq(_pool(lb)["discovery"]["updates"], 2, "updates")


@timeout(60)
def test_discovery_removed_backend_drains_under_load(t):
    """A backend the answer drops drains: requests in flight finish, lb-load counts 0 failures."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port}, workers=2))
    binary = _load_bin(t)
    check(os.access(binary, os.X_OK), "%s is built" % binary)
    args = [binary, "http://127.0.0.1:%d/sleep/40" % lb.port, "-c", "16", "-d", "4s", "--rate", "300",
            "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=t.tmp)
    try:
        time.sleep(1.5)
        dns.set("api.test", "A", ["127.0.0.2"], ttl=1)
        _wait_names(t, lb, ["127.0.0.2:%d" % port])
        out, err = proc.communicate(timeout=30 * t.slow)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    eq(proc.returncode, 0, "lb-load exit status (stderr %r)" % err[-300:])
    res = json.loads(out.decode())
    eq(res["errors"], {"connect": 0, "reset": 0, "timeout": 0, "parse": 0, "other": 0}, "lb-load errors")
    eq(res["status"]["2xx"], res["requests"], "every request 2xx: %r" % res["status"])
    check(res["backends"].get("b3", 0) > 50 and res["backends"].get("b2", 0) > res["backends"]["b3"],
          "b3 served until it was removed, b2 throughout: %r" % res["backends"])
    check("discovery: pool api: -127.0.0.3:%d" % port in lb.stderr_text(), "the change is logged")
    ev = json.loads(lb.admin_get("/api/events").body.decode())
    check(any(e["kind"] == "discovery" and "-127.0.0.3:%d" % port in e["text"] for e in ev["events"]),
          "a discovery event says what changed: %r" % ev["events"][:3])


@timeout(60)
def test_discovery_failures_keep_the_pool(t):
    """SERVFAIL, an empty answer, a silent and then a stopped resolver: the pool keeps its
    backends, each failure is counted by kind, logged once a minute."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port}))
    want = ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port]

    def errors():
        return _pool(lb)["discovery"]["errors"]

    dns.fail("api.test", "servfail")
    wait_until(lambda: errors()["servfail"] >= 3, 8 * t.slow, interval=0.1, what="three SERVFAILs")
    eq(_names(lb), want, "backends kept through SERVFAIL")
    eq(_seen(lb, 10), {"b2": 5, "b3": 5}, "traffic through SERVFAIL")
    d = _pool(lb)["discovery"]
    check(d["stale"] and d["stale_since"] > 0, "stale while failing: %r" % d)
    check(d["last_error"].startswith("servfail"), "last_error: %r" % d["last_error"])
    eq(_log_count(lb, "discovery: pool api: api.test A: servfail"), 1, "SERVFAIL logged once a minute")

    dns.fail("api.test", "empty")
    wait_until(lambda: errors()["empty"] >= 2, 8 * t.slow, interval=0.1, what="empty answers")
    eq(_names(lb), want, "backends kept through empty answers")

    dns.fail("api.test", None)
    dns.silent = True
    wait_until(lambda: errors()["timeout"] >= 1, 12 * t.slow, interval=0.1, what="a timeout")
    eq(_names(lb), want, "backends kept while the resolver is silent")
    eq(_seen(lb, 4), {"b2": 2, "b3": 2}, "traffic while the resolver is silent")

    dns.stop()  # the port now refuses: no answer either
    n = errors()["timeout"]
    wait_until(lambda: errors()["timeout"] > n, 12 * t.slow, interval=0.1, what="a failure with the resolver gone")
    eq(_names(lb), want, "backends kept with the resolver gone")
    eq(_pool(lb)["discovery"]["updates"], 1, "no change applied")
    m = lb.admin_get("/metrics").body.decode()
    check('lb_pool_discovery_stale{pool="api"} 1' in m, "stale in metrics")
    check('lb_pool_discovery_errors_total{pool="api",kind="servfail"} ' in m, "errors in metrics")


@timeout(45)
def test_discovery_nxdomain_empties_after_keep_stale(t):
    dns = _dns(t)
    port = t.port()
    t.backend("b2", host="127.0.0.2", port=port)
    dns.set("api.test", "A", ["127.0.0.2"], ttl=1)
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port, "keep_stale": "3s",
                                     "interval": "200ms"}))
    eq(_seen(lb, 2), {"b2": 2}, "before")
    dns.remove("api.test")
    t0 = time.monotonic()
    wait_until(lambda: _pool(lb)["discovery"]["errors"]["nxdomain"] >= 2, 4 * t.slow, what="NXDOMAIN")
    if time.monotonic() - t0 < 2.5:
        eq(_names(lb), ["127.0.0.2:%d" % port], "kept within keep_stale")
        eq(_seen(lb, 2), {"b2": 2}, "still served within keep_stale")
    _wait_names(t, lb, [], secs=6)
    check(time.monotonic() - t0 >= 2.9, "emptied no sooner than keep_stale (%.1fs)" % (time.monotonic() - t0))
    eq(_seen(lb, 2), {503: 2}, "an empty pool answers 503")
    check("NXDOMAIN for 3000ms (keep_stale): no addresses any more" in lb.stderr_text(), "logged")
    dns.set("api.test", "A", ["127.0.0.2"], ttl=1)
    _wait_names(t, lb, ["127.0.0.2:%d" % port])
    eq(_seen(lb, 2), {"b2": 2}, "back once the name is")


@timeout(45)
def test_discovery_damping_flapping_answer(t):
    """The answer flips every 200 ms; with max_changes_per_minute = 3, exactly 3 changes
    are applied (after the first answer), the rest held."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    a, b = ["127.0.0.2", "127.0.0.3"], ["127.0.0.2"]
    dns.set("api.test", "A", a, ttl=1)
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port, "interval": "100ms",
                                     "max_changes_per_minute": 3}))
    for i in range(20):  # 4 s of flapping
        dns.set("api.test", "A", b if i % 2 == 0 else a, ttl=1)
        time.sleep(0.2)
    d = _pool(lb)["discovery"]
    eq(d["updates"], 4, "the first answer and 3 changes")
    check(d["damped"] >= 1, "answers held back: %r" % d)
    eq(lb.stats()["reloads"]["ok"], 0, "changes are not reloads")
    eq(_log_count(lb, "more than 3 changes a minute; holding the new answer"), 1, "damping logged once")
    gen = lb.stats()["reloads"]["generation"]
    eq(gen, 3, "three applied changes, three generations")  # the first answer came before start


def test_discovery_zones_from_subnets(t):
    """zones by address block give discovered backends their zone: the local tier first."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3, 5):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3", "127.0.0.5"], ttl=1)
    zones = {"zone-a": ["127.0.0.0/30"], "zone-b": ["127.0.0.4/30"]}
    lb = t.lb(_discover_cfg(t, dns, {"name": "api.test", "port": port}, extra={"zones": zones},
                            lb={"zone": "zone-a"}))
    p = _pool(lb)
    eq(sorted((b["name"], b["zone"]) for b in p["backends"]),
       [("127.0.0.2:%d" % port, "zone-a"), ("127.0.0.3:%d" % port, "zone-a"),
        ("127.0.0.5:%d" % port, "zone-b")], "zones by address")
    eq([(x["name"], x["backends"]) for x in p["tiers"]], [("zone-a", 2), ("elsewhere", 1)], "tiers")
    eq(_seen(lb, 20), {"b2": 10, "b3": 10}, "all traffic stays in zone-a while it is healthy")


def test_discovery_hostname_backend(t):
    """A backend address written as a DNS name: no address (not in the pool) until the
    name answers; a new address is a new backend under the same name."""
    dns = _dns(t)
    port = t.port()
    t.backend("b2", host="127.0.0.2", port=port)
    t.backend("b3", host="127.0.0.3", port=port)
    # balance = "hash": its ring is built for an empty pool, then for one backend
    cfg = t.config(backends=[{"name": "db", "address": "db.test:%d" % port}],
                   pool={"balance": "hash"}, extra={"resolvers": [dns.addr]})
    lb = t.lb(cfg)
    eq(_names(lb), [], "no address yet: not in the pool")
    eq(_seen(lb, 1), {503: 1}, "nothing to send to")
    h = _pool(lb)["host_names"]
    eq([(x["backend"], x["name"]) for x in h], [("db", "db.test")], "host_names")
    check(h[0]["errors"]["nxdomain"] >= 1, "NXDOMAIN counted: %r" % h[0])
    dns.set("db.test", "A", ["127.0.0.2"], ttl=1)
    _wait_names(t, lb, ["db"])
    b = lb.backend_stats("api", "db")
    eq((b["address"], b["dns_name"], b["resolved"], b["discovered"]),
       ("db.test:%d" % port, "db.test", "127.0.0.2:%d" % port, False), "the backend")
    eq(_seen(lb, 4), {"b2": 4}, "traffic to the address")
    dns.set("db.test", "A", ["127.0.0.3"], ttl=1)
    wait_until(lambda: lb.backend_stats("api", "db")["resolved"] == "127.0.0.3:%d" % port,
               5 * t.slow, what="the new address")
    eq(lb.backend_stats("api", "db")["requests"], 0, "a new backend: counters start again")
    eq(_seen(lb, 4), {"b3": 4}, "traffic to the new address")
    # an AAAA-only name resolves too
    dns.remove("db.test")
    dns.set("db.test", "AAAA", ["::1"], ttl=1)
    t.backend("b6", host="::1", port=port)
    wait_until(lambda: lb.backend_stats("api", "db")["resolved"] == "[::1]:%d" % port,
               8 * t.slow, what="the AAAA address (the A question finds none)")
    eq(_seen(lb, 2), {"b6": 2}, "traffic over IPv6")


def test_discovery_lb_t_never_resolves(t):
    """lb -t checks discover settings and resolves nothing (no resolver is listening)."""
    path = os.path.join(t.tmp, "d.conf")
    cfg = _discover_cfg(t, type("D", (), {"addr": "127.0.0.1:9"})(),
                        {"name": "_http._tcp.api.test", "type": "SRV", "keep_stale": "1m"})
    cfg["pools"][0]["backends"] = [{"name": "db", "address": "db.internal:5432"}]
    with open(path, "w") as f:
        f.write(config_text(cfg))
    t0 = time.monotonic()
    rc, out = t.run_lb(["-t", "-c", path])
    eq((rc, out.strip()), (0, "configuration OK"), "lb -t")
    check(time.monotonic() - t0 < 2 * t.slow, "lb -t did not wait for DNS")
    bad = copy.deepcopy(cfg)
    bad["pools"][0]["discover"]["port"] = 80
    bad["zones"] = {"zone-a": ["10.0.0.1/8"]}
    text = config_text(bad)
    with open(path, "w") as f:
        f.write(text)
    rc, out = t.run_lb(["-t", "-c", path])
    eq(rc, 1, "lb -t of a bad file")
    lines = text.split("\n")
    port_line = next(i for i, ln in enumerate(lines) if "port = 80" in ln) + 1
    zone_line = next(i for i, ln in enumerate(lines) if "10.0.0.1/8" in ln) + 1
    eq(sorted(out.strip().split("\n")), sorted([
        '%s:%d: pools.api.discover.port: not with type "SRV": the SRV records give the port' % (path, port_line),
        '%s:%d: zones.zone-a[0]: "10.0.0.1/8": host bits set below the prefix length' % (path, zone_line),
    ]), "errors with file:line")


def test_discovery_reload_keeps_answers(t):
    """SIGHUP asks the names again but keeps their last answers: with the resolver silent
    the pool keeps its backends across the reload. Discovery changes are not reloads."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2"], ttl=1)
    cfg = _discover_cfg(t, dns, {"name": "api.test", "port": port, "interval": "200ms"})
    lb = t.lb(cfg)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    _wait_names(t, lb, ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port])
    rl = lb.stats()["reloads"]
    eq((rl["ok"], rl["generation"]), (0, 1), "a discovery change: a generation, not a reload")
    dns.silent = True
    new = copy.deepcopy(cfg)
    new["pools"][0]["discover"]["template"] = {"weight": 50}
    with open(lb.conf_path, "w") as f:
        f.write(config_text(new))
    lb.signal(signal.SIGHUP)
    wait_until(lambda: lb.stats()["reloads"]["ok"] == 1, 5 * t.slow, what="the reload")
    p = _pool(lb)
    eq(sorted((b["name"], b["weight"]) for b in p["backends"]),
       [("127.0.0.2:%d" % port, 50), ("127.0.0.3:%d" % port, 50)], "kept, with the new template")
    eq(p["discovery"]["updates"], 2, "the source's figures carried over")
    eq(_seen(lb, 4), {"b2": 2, "b3": 2}, "served after the reload")


def test_discovery_aaaa_backend_names_in_admin_api(t):
    """AAAA discovery names backends [::1]:PORT; the admin API takes them percent-encoded."""
    dns = _dns(t)
    port = t.port()
    t.backend("b6", host="::1", port=port)
    dns.set("api6.test", "AAAA", ["::1"], ttl=1)
    cfg = _discover_cfg(t, dns, {"name": "api6.test", "type": "AAAA", "port": port})
    cfg["admin"]["token"] = "tok"
    lb = t.lb(cfg)
    name = "[::1]:%d" % port
    eq(_names(lb), [name], "backend name")
    eq(_seen(lb, 2), {"b6": 2}, "traffic")
    enc = "%%5B%%3A%%3A1%%5D%%3A%d" % port
    r = lb.admin_get("/api/pools/api/backends/" + enc)
    eq((r.status, r.json()["name"]), (200, name), "GET by the encoded name")
    c = HttpConn(t, lb.admin_port)
    r = c.request("POST", "/api/pools/api/backends/%s/state" % enc, body="drain",
                  headers=[("Authorization", "Bearer tok"), ("Connection", "close")], host="127.0.0.1")
    eq((r.status, r.json()["admin_state"]), (200, "drain"), "POST by the encoded name")
    eq(lb.admin_get("/api/pools/api/backends/%ZZ").status, 400, "a bad escape")
    m = lb.admin_get("/metrics").body.decode()
    check('backend="%s"' % name in m, "the name as a metrics label")


def test_discovery_update_keeps_admin_changes(t):
    """An admin API drain lasts through discovery updates (only a reload restores the file)."""
    dns = _dns(t)
    port = t.port()
    for i in (2, 3, 4):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    cfg = _discover_cfg(t, dns, {"name": "api.test", "port": port})
    cfg["admin"]["token"] = "tok"
    lb = t.lb(cfg)
    c = HttpConn(t, lb.admin_port)
    r = c.request("POST", "/api/pools/api/backends/127.0.0.2:%d/state" % port, body="drain",
                  headers=[("Authorization", "Bearer tok"), ("Connection", "close")], host="127.0.0.1")
    eq(r.status, 200, "drain through the admin API")
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3", "127.0.0.4"], ttl=1)
    _wait_names(t, lb, ["127.0.0.%d:%d" % (i, port) for i in (2, 3, 4)])
    eq(lb.backend_stats("api", "127.0.0.2:%d" % port)["admin_state"], "drain", "still drained")
    eq(_seen(lb, 4), {"b3": 2, "b4": 2}, "no traffic to the drained backend")
    lb.signal(signal.SIGHUP)
    wait_until(lambda: lb.stats()["reloads"]["ok"] == 1, 5 * t.slow, what="the reload")
    eq(lb.backend_stats("api", "127.0.0.2:%d" % port)["admin_state"], "active", "a reload restores it")
