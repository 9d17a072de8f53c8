"""Round-robin, weights, routes, several workers."""

import threading
from collections import Counter

from harness import check, eq, fail, wait_until


def _two(t, workers=1, weights=None):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    bl = [{"name": "b1", "address": b1.addr}, {"name": "b2", "address": b2.addr}]
    if weights:
        for b, w in zip(bl, weights):
            b["weight"] = w
    lb = t.lb(t.config(backends=bl, workers=workers))
    return lb, b1, b2


def test_rr_alternates_on_one_connection(t):
    lb, _, _ = _two(t)
    c = lb.conn()
    seq = []
    for i in range(10):
        r = c.request("GET", "/")
        eq(r.status, 200, "status of request %d" % i)
        seq.append(r.header("X-Backend"))
        eq(r.body, (seq[-1] + "\n").encode(), "body of request %d" % i)
    first = seq[0]
    other = "b2" if first == "b1" else "b1"
    eq(seq, [first, other] * 5, "backend order over 10 keep-alive requests")


def test_rr_new_connections_split_50_50(t):
    lb, _, _ = _two(t)
    seen = Counter()
    for i in range(100):
        r = lb.get("/")
        eq(r.status, 200, "status of request %d" % i)
        seen[r.header("X-Backend")] += 1
    eq(dict(seen), {"b1": 50, "b2": 50}, "requests per backend over 100 connections")


def test_rr_weights_3_to_1(t):
    lb, _, _ = _two(t, weights=(3, 1))
    seen = Counter()
    c = lb.conn()
    for i in range(100):
        r = c.request("GET", "/")
        eq(r.status, 200, "status of request %d" % i)
        seen[r.header("X-Backend")] += 1
    eq(dict(seen), {"b1": 75, "b2": 25}, "requests per backend with weights 3:1")


def test_workers2_200_requests_20_connections(t):
    lb, _, _ = _two(t, workers=2)
    seen = Counter()
    errors = []
    lock = threading.Lock()

    def client(k):
        try:
            c = lb.conn()
            for i in range(10):
                r = c.request("GET", "/")
                with lock:
                    if r.status != 200:
                        errors.append("conn %d req %d: status %d" % (k, i, r.status))
                    seen[r.header("X-Backend")] += 1
            c.close()
        except Exception as e:
            with lock:
                errors.append("conn %d: %s" % (k, e))

    ts = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(30 * t.slow)
        check(not th.is_alive(), "a client thread is still running after 30s")
    eq(errors, [], "errors")
    eq(sum(seen.values()), 200, "responses counted")
    eq(set(seen), {"b1", "b2"}, "backends that answered")
    check(seen["b1"] > 0 and seen["b2"] > 0, "both backends used: %r" % dict(seen))


# --- routes ------------------------------------------------------------------


def _routes(t):
    names = ["dflt", "a2", "a", "v2"]
    bs = {n: t.backend(n) for n in names}
    pools = [{"name": n, "health": {"type": "off"}, "backends": [{"name": n, "address": bs[n].addr}]} for n in names]
    routes = [
        {"host": "a.example", "path_prefix": "/v2/", "pool": "a2"},
        {"host": "a.example", "pool": "a"},
        {"path_prefix": "/v2/", "pool": "v2"},
    ]
    port = t.port()
    listeners = [{"name": "web", "listen": "127.0.0.1:%d" % port, "pool": "dflt", "routes": routes}]
    return t.lb(t.config(pools=pools, listeners=listeners))


def _routed(lb, cases):
    got = []
    for host, path, want in cases:
        r = lb.get(path, host=host)  # any status: lb-backend answers 404 on unknown paths, with X-Backend
        check(r.status in (200, 404), "status for Host %s path %s: %d" % (host, path, r.status))
        got.append((host, path, r.header("X-Backend")))
    eq(got, [(h, p, w) for h, p, w in cases], "pool chosen per (Host, path)")


def test_route_host_exact_case_insensitive_port_ignored(t):
    lb = _routes(t)
    _routed(lb, [
        ("a.example", "/x", "a"),
        ("A.Example", "/x", "a"),
        ("a.example:8080", "/x", "a"),
        ("A.EXAMPLE:1", "/y/z", "a"),
        ("xa.example", "/x", "dflt"),
        ("a.example.com", "/x", "dflt"),
        ("b.example", "/x", "dflt"),
    ])


def test_route_path_prefix(t):
    lb = _routes(t)
    _routed(lb, [
        ("b.example", "/v2/", "v2"),
        ("b.example", "/v2/items?id=3", "v2"),
        ("b.example", "/v2", "dflt"),
        ("b.example", "/v3/", "dflt"),
        ("b.example", "/", "dflt"),
    ])


def test_route_first_match_wins(t):
    lb = _routes(t)
    # a.example + /v2/ matches all three routes: the first one listed wins
    _routed(lb, [
        ("a.example", "/v2/x", "a2"),
        ("A.EXAMPLE:9", "/v2/", "a2"),
        ("a.example", "/v1/x", "a"),
    ])


def test_route_unmatched_goes_to_default_pool(t):
    lb = _routes(t)
    _routed(lb, [
        ("other.example", "/", "dflt"),
        ("localhost", "/anything", "dflt"),
        ("127.0.0.1", "/v1/", "dflt"),
    ])


def test_200_concurrent_connections_and_accounting_back_to_zero(t):
    lb, b1, b2 = _two(t, workers=2)

    def quiet():
        # the harness's one readiness probe (connect, close) is counted and gone
        cn = lb.stats()["connections"]
        return cn if cn["total"] >= 1 and cn["current"] == 0 else None

    base = wait_until(quiet, 3 * t.slow, interval=0.02, what="the readiness probe to be counted")
    conns = [lb.conn() for _ in range(200)]
    for c in conns:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seen = Counter()
    for i, c in enumerate(conns):
        r = c.read_response()
        eq(r.status, 200, "connection %d" % i)
        seen[r.header("X-Backend")] += 1
    eq(sum(seen.values()), 200, "responses")
    check(seen["b1"] > 0 and seen["b2"] > 0, "both backends used: %r" % dict(seen))
    cur = lb.stats()["connections"]
    eq(cur["current"] - base["current"], 200, "connections.current with 200 clients open")
    eq(cur["total"] - base["total"], 200, "connections.total after 200 new clients")
    for c in conns:
        c.close()
    last = [None]

    def settled():
        s = lb.stats()
        last[0] = (s["connections"]["current"], [b["inflight"] for b in s["pools"][0]["backends"]])
        return last[0] == (base["current"], [0, 0])

    try:
        wait_until(settled, 3 * t.slow, interval=0.05, what="connections to close")
    except AssertionError:
        fail("after the clients closed: (connections.current, inflight) = %r, expected %r" % (last[0], (base["current"], [0, 0])))
