"""Upstream keep-alive: one idle pool per worker, reused across client connections."""

from harness import HttpConn, eq, wait_until


class StatsProbe:
    """Reads a backend's /__stats over one direct connection kept open, so the
    probe itself adds no connection between two readings."""

    def __init__(self, t, backend):
        self.c = HttpConn(t, backend.port)
        self.first = self.read()

    def read(self):
        r = self.c.request("GET", "/__stats", host="127.0.0.1")
        eq(r.status, 200, "backend /__stats status")
        return r.json()

    def new_connections(self):
        return self.read()["connections"] - self.first["connections"]


def _setup(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    lb = t.lb(t.config(backends=[b1, b2], workers=1))
    return lb, StatsProbe(t, b1), StatsProbe(t, b2)


def test_upstream_reuse_one_client_connection(t):
    lb, p1, p2 = _setup(t)
    c = lb.conn()
    per = {"b1": [], "b2": []}
    for i in range(50):
        r = c.request("GET", "/echo")
        eq(r.status, 200, "status of request %d" % i)
        e = r.json()
        per[e["backend"]].append(e["connection_requests"])
    # every backend served its 25 requests over a single upstream connection
    eq(per["b1"], list(range(1, 26)), "connection_requests seen by b1")
    eq(per["b2"], list(range(1, 26)), "connection_requests seen by b2")
    eq(p1.new_connections(), 1, "connections the proxy opened to b1")
    eq(p2.new_connections(), 1, "connections the proxy opened to b2")


def test_upstream_reuse_across_client_connections(t):
    lb, p1, p2 = _setup(t)
    per = {"b1": [], "b2": []}
    for k in range(5):
        c = lb.conn()
        for i in range(10):
            hs = [("Connection", "close")] if (k == 2 and i == 9) else []
            r = c.request("GET", "/echo", headers=hs)
            eq(r.status, 200, "status of conn %d request %d" % (k, i))
            e = r.json()
            per[e["backend"]].append(e["connection_requests"])
        c.close()
    eq(per["b1"], list(range(1, 26)), "connection_requests seen by b1 over 5 client connections")
    eq(per["b2"], list(range(1, 26)), "connection_requests seen by b2 over 5 client connections")
    eq(p1.new_connections(), 1, "connections the proxy opened to b1")
    eq(p2.new_connections(), 1, "connections the proxy opened to b2")


def _buffers_back(lb, what):
    """Every I/O buffer back in the pool within 2 s (a leak never gets there)."""
    wait_until(lambda: lb.stats()["memory"]["buffers_in_use"] == 0, 2.0, interval=0.05,
               what="0 %s" % what)


def test_idle_keepalive_connections_hold_no_buffers(t):
    """An idle keep-alive client connection holds no I/O buffer: with 50 of
    them open after a request each, the workers hold exactly 0 buffers."""
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], workers=2))
    conns = []
    for i in range(50):
        c = lb.conn()
        eq(c.request("GET", "/").status, 200, "request %d" % i)
        conns.append(c)
    eq(lb.stats()["connections"]["current"], 50, "client connections open")
    # the worker may still be finishing the last request when its response
    # reaches the client: poll (bounded) until every buffer is back
    _buffers_back(lb, "buffers held by 50 idle keep-alive connections")
    # buffers taken for more requests all go back to the pool when they are done
    for i, c in enumerate(conns[:5]):
        eq(c.request("GET", "/").status, 200, "second request %d" % i)
    _buffers_back(lb, "buffers after the second round")
