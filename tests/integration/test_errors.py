"""What the client sees when the proxy answers itself: 400, 408, 431, 502, 503, 504;
connection limits; time-outs that must not fire."""

import hashlib
import os
import socket
import threading
import time

from harness import ConnClosed, assert_proxy_error, build_request, check, eq, fail, wait_until
from pyservers import h_accept_close, h_drip, h_garbage, h_hang, h_ok, h_reset, http_handler, response_bytes


def _counted(t, **kw):
    """lb in front of one Python backend that counts connections and complete requests."""
    srv = t.server(h_ok())
    lb = t.lb(t.config(backends=[srv], **kw))
    return lb, srv


def _expect_400_and_close(t, lb, wire, what):
    c = lb.conn()
    c.try_send(wire)
    try:
        r = c.read_response()
    except ConnClosed as e:
        fail("%s: no 400 response (%s)" % (what, e))
    assert_proxy_error(r, 400, what)
    check(c.closed_within(2 * t.slow), "%s: connection not closed after the 400" % what)


def test_malformed_request_line_400_and_close(t):
    lb, srv = _counted(t)
    for wire in (b"HELLO\r\n\r\n",
                 b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
                 b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
                 b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n"):
        _expect_400_and_close(t, lb, wire, "request line %r" % wire.split(b"\r\n")[0])
    eq(srv.requests, 0, "requests that reached the backend")


SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "two_different_cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list_differs": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "cl_not_a_number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello",
    "cl_negative": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "te_chunked_then_gzip": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_unknown": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n0\r\n\r\n",
    "bad_chunk_size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "bare_lf_in_head": b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "nul_in_header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "space_before_colon": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n",
    "http11_without_host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "te_on_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_gzip_chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_repeated_fields": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


def _make_smuggling_test(name, wire):
    def test(t):
        lb, srv = _counted(t)
        _expect_400_and_close(t, lb, wire, name)
        eq(srv.requests, 0, "complete requests that reached the backend")
        # the proxy still serves well-formed requests
        r = lb.get("/")
        eq(r.status, 200, "a good request afterwards")
        eq(srv.requests, 1, "complete requests that reached the backend after one good request")

    test.__name__ = "test_400_" + name
    return test


for _n, _w in SMUGGLING.items():
    globals()["test_400_" + _n] = _make_smuggling_test(_n, _w)


def test_head_too_large_431(t):
    lb, srv = _counted(t)
    c = lb.conn()
    c.try_send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
    r = c.read_response()
    assert_proxy_error(r, 431, "64 KiB head")
    eq(srv.requests, 0, "requests that reached the backend")


def test_head_not_complete_408(t):
    lb, srv = _counted(t)
    t0 = time.monotonic()
    c = lb.conn()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    r = c.read_response(timeout=6 * t.slow)
    el = time.monotonic() - t0
    assert_proxy_error(r, 408, "incomplete head")
    check(0.9 <= el <= 3 * t.slow, "408 came after %.2fs, expected about 1s (timeouts.client_header)" % el)
    check(c.closed_within(2 * t.slow), "connection not closed after the 408")
    eq(srv.requests, 0, "requests that reached the backend")


def test_head_dripping_slowly_408(t):
    """A client that keeps sending a byte of head now and then still gets 408 at
    client_header: the timer is for the whole head, not between bytes."""
    lb, srv = _counted(t)
    t0 = time.monotonic()
    c = lb.conn()
    c.send(b"GET / HTTP/1.1\r\n")
    for i in range(40):  # at most 40 x 0.1s
        if not c.try_send(b"X-A%d: b\r\n" % i):
            break
        if not c.quiet_for(0.1):
            break
    el = time.monotonic() - t0
    check(el <= 3 * t.slow, "no 408 after %.2fs of a head dripping in, expected one at about 1s" % el)
    r = c.read_response(timeout=2 * t.slow)
    assert_proxy_error(r, 408, "dripping head")
    eq(srv.requests, 0, "requests that reached the backend")


def test_idle_new_connection_closed(t):
    lb, _ = _counted(t, timeouts={"client_idle": "1s"})
    t0 = time.monotonic()
    c = lb.conn()
    try:
        r = c.read_response(timeout=5 * t.slow)
        assert_proxy_error(r, 408, "idle connection")
        check(c.closed_within(2 * t.slow), "connection not closed after the 408")
    except ConnClosed:
        pass
    el = time.monotonic() - t0
    check(el <= 4 * t.slow, "idle connection closed only after %.2fs" % el)


def test_idle_keepalive_connection_closed_after_client_idle(t):
    lb, _ = _counted(t, timeouts={"client_idle": "1s", "client_header": "5s"})
    c = lb.conn()
    r = c.request("GET", "/")
    eq(r.status, 200, "status")
    t0 = time.monotonic()
    check(c.closed_within(5 * t.slow), "idle keep-alive connection not closed within 5s")
    el = time.monotonic() - t0
    check(0.8 <= el <= 3 * t.slow, "idle keep-alive connection closed after %.2fs, expected about 1s" % el)


def _one_backend_error(t, handler, status, what, **kw):
    srv = t.server(handler)
    lb = t.lb(t.config(backends=[srv], **kw))
    c = lb.conn()
    t0 = time.monotonic()
    r = c.request("GET", "/", timeout=8 * t.slow)
    el = time.monotonic() - t0
    assert_proxy_error(r, status, what)
    return lb, srv, el, c


def test_backend_refused_502(t):
    dead = t.port()  # nothing listens here
    lb = t.lb(t.config(backends=[{"name": "dead", "address": "127.0.0.1:%d" % dead}]))
    c = lb.conn()
    r = c.request("GET", "/")
    assert_proxy_error(r, 502, "backend refused")
    r = lb.get("/")
    assert_proxy_error(r, 502, "backend refused (second connection)")


def test_backend_garbage_502(t):
    _one_backend_error(t, h_garbage, 502, "backend answered garbage")


def test_backend_reset_502(t):
    _one_backend_error(t, h_reset, 502, "backend reset")


def test_backend_accept_then_close_502(t):
    _one_backend_error(t, h_accept_close, 502, "backend closed without answering")


def test_backend_hangs_504(t):
    lb, srv, el, c = _one_backend_error(t, h_hang, 504, "backend hangs")
    check(0.9 <= el <= 3 * t.slow, "504 came after %.2fs, expected about 1s (timeouts.backend)" % el)


def test_backend_truncated_body_not_passed_as_complete(t):
    """The backend promises 1000 bytes, sends 10 and closes: the client must not
    get a complete-looking response of a wrong length."""

    def h(c, server):
        c.read_head()
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        c.sock.close()

    srv = t.server(h)
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    c.send(build_request("GET", "/"))
    try:
        r = c.read_response(timeout=5 * t.slow)
    except ConnClosed:
        return  # head and part of the body, then the connection closed: right
    # a proxy may answer 502 if it noticed before sending the head
    assert_proxy_error(r, 502, "truncated backend response")


def test_slow_backend_within_timeout_ok(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1]))
    r = lb.get("/sleep/500")
    eq(r.status, 200, "status of a 500 ms response with timeouts.backend = 1s")


def test_slow_response_body_not_cut_by_backend_timeout(t):
    body = os.urandom(60000)
    srv = t.server(h_drip(body, 6, 0.3))
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    t0 = time.monotonic()
    r = c.request("GET", "/", timeout=8 * t.slow)
    el = time.monotonic() - t0
    eq(r.status, 200, "status")
    check(r.body == body, "body of %d bytes dripped over %.1fs differs (got %d bytes)" % (len(body), el, len(r.body)))


def test_slow_upload_not_cut_by_backend_timeout(t):
    """A request body that takes 2s to arrive (a piece every 0.2s) is not a
    backend time-out: the backend cannot answer before it has the body."""
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"client_idle": "5s"}))
    body = os.urandom(10000)
    c = lb.conn()
    c.send(build_request("POST", "/echo", headers=[("Content-Length", str(len(body)))]))
    for i in range(10):
        time.sleep(0.2)
        c.send(body[i * 1000:(i + 1) * 1000])
    r = c.read_response()
    eq(r.status, 200, "status of a 2s upload with timeouts.backend = 1s")
    e = r.json()
    eq((e["body_length"], e["body_sha256"]), (len(body), hashlib.sha256(body).hexdigest()), "body at the backend")


def _no_eligible(t, state):
    srv = t.server(h_ok())
    other = t.server(h_ok())
    lb = t.lb(t.config(backends=[{"name": "b1", "address": srv.addr, "state": state},
                                 {"name": "b2", "address": other.addr, "state": state}]))
    for i in range(3):
        r = lb.get("/")
        assert_proxy_error(r, 503, "all backends %s" % state)
        ra = r.header("Retry-After")
        check(ra is not None and (ra.strip().isdigit() or ra.strip().endswith("GMT")), "503 without a valid Retry-After: %r" % ra)
    eq((srv.accepted, other.accepted), (0, 0), "connections to %s backends" % state)


def test_no_backend_all_maint_503(t):
    _no_eligible(t, "maint")


def test_no_backend_all_drain_503(t):
    _no_eligible(t, "drain")


def _max_connections(t, workers):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], workers=workers, lb={"max_connections": 5},
                       timeouts={"client_idle": "20s", "client_header": "20s"}))
    conns = []
    for i in range(5):
        c = lb.conn()
        r = c.request("GET", "/")
        eq(r.status, 200, "connection %d served" % i)
        conns.append(c)
    sixth = lb.conn()  # the kernel completes the handshake; the proxy must not serve it yet
    sixth.send(build_request("GET", "/echo", headers=[("X-Request-Id", "sixth")]))
    check(sixth.quiet_for(0.7), "6th connection answered or closed while 5 were open (max_connections = 5)")
    t0 = time.monotonic()
    conns[0].close()
    r = sixth.read_response(timeout=3 * t.slow)
    eq((r.status, r.header("X-Request-Id")), (200, "sixth"), "6th connection after one closed")
    el = time.monotonic() - t0
    check(el < 2 * t.slow, "6th served %.2fs after a slot freed" % el)
    for i, c in enumerate(conns[1:], 1):
        r = c.request("GET", "/")
        eq(r.status, 200, "connection %d still served" % i)


def test_max_connections_5(t):
    _max_connections(t, 1)


def test_max_connections_5_two_workers(t):
    _max_connections(t, 2)


def test_retry_on_connect_failure_goes_to_other_backend(t):
    b1 = t.backend("b1")
    dead = t.port()  # nothing listens here
    lb = t.lb(t.config(backends=[{"name": "dead", "address": "127.0.0.1:%d" % dead}, {"name": "b1", "address": b1.addr}],
                       pool={"retry": {"attempts": 1, "budget": 1.0, "on": ["connect-failure"]}}))
    c = lb.conn()
    for i in range(10):
        r = c.request("GET", "/")
        eq((r.status, r.header("X-Backend")), (200, "b1"), "request %d with one backend refusing" % i)


def test_client_abort_mid_download_leaves_proxy_healthy(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1]))
    for i in range(3):
        c = lb.conn()
        c.send(build_request("GET", "/bytes/%d" % (64 << 20)))
        c.read_head()
        c._fill(time.monotonic() + 2)
        c.sock.close()
    for i in range(3):
        c = lb.conn()
        c.send(build_request("POST", "/echo", headers=[("Content-Length", "1000000")]) + b"x" * 1000)
        c.sock.close()
    # inflight drops back to 0 and the proxy still serves
    try:
        wait_until(lambda: lb.backend_stats("api", "b1")["inflight"] == 0, 3 * t.slow, what="inflight 0")
    except AssertionError:
        fail("b1 inflight after aborted requests: %r" % lb.backend_stats("api", "b1")["inflight"])
    r = lb.get("/bytes/1000")
    eq((r.status, len(r.body)), (200, 1000), "a request after the aborted ones")


def test_upstream_idle_closed_by_backend_is_not_used(t):
    """The backend closes a keep-alive connection soon after each response (its
    own idle time-out): the next request through the proxy must still succeed."""
    closed = [0]

    def h(c, server):
        req = c.read_request()
        c.send(response_bytes(200, [("X-N", str(server.accepted))], b"fine"))
        time.sleep(0.1)
        c.sock.shutdown(socket.SHUT_RDWR)
        closed[0] += 1

    srv = t.server(h)
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    for i in range(5):
        r = c.request("GET", "/")
        eq((r.status, r.body), (200, b"fine"), "request %d" % i)
        wait_until(lambda: closed[0] == i + 1, 2 * t.slow, what="the backend to close its connection")
    eq(srv.requests, 5, "requests at the backend")


def test_backend_response_with_cl_and_te(t):
    """RFC 9112 6.3: either an error (502), or Transfer-Encoding wins and the
    Content-Length is removed before the response goes on."""

    def respond(req, c):
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    srv = t.server(http_handler(respond))
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    for i in range(2):
        r = c.request("GET", "/")
        if r.status == 502:
            assert_proxy_error(r, 502, "backend response with Content-Length and Transfer-Encoding")
            c = lb.conn()
            continue
        eq((r.status, r.header("Content-Length"), r.framing, r.body), (200, None, "chunked", b"hello"),
           "response %d (status, Content-Length, framing, body)" % i)


def _extra_bytes(t, delay):
    def h(c, server):
        for _ in range(100):
            c.read_request()
            c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + (b"" if delay else b"EXTRA"))
            if delay:
                time.sleep(delay)
                c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")

    srv = t.server(h)
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    for i in range(3):
        r = c.request("GET", "/")
        eq((r.status, r.body), (200, b"hello"), "response %d (the backend sends bytes past its Content-Length)" % i)
        if delay:
            time.sleep(delay * 2)  # the unasked-for bytes reach the proxy's idle connection first
    check(c.quiet_for(0.1), "bytes after the last response")


def test_backend_bytes_past_content_length_not_forwarded(t):
    _extra_bytes(t, 0)


def test_backend_unsolicited_response_on_idle_connection_not_forwarded(t):
    _extra_bytes(t, 0.1)


def test_backend_early_response_before_body_is_relayed(t):
    """The backend answers 413 after the head, without reading a 4 MiB body, and
    closes: the client gets the 413, not a 502."""

    def h(c, server):
        c.read_head()
        c.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
        time.sleep(0.3)
        c.sock.close()

    srv = t.server(h)
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    body = b"q" * (4 << 20)
    errs = []

    def sender():
        c.try_send(build_request("POST", "/", headers=[("Content-Length", str(len(body)))]) + body) or errs.append("closed")

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    r = c.read_response()
    eq((r.status, r.body), (413, b"too large"), "the backend's early answer")
    th.join(5)


def _second_request_dropped(t, method):
    """A backend that answers the first request of each connection and closes the
    connection without answering the second (as when its keep-alive time-out strikes just
    as our request arrives). Returns (the client's second status, methods the backend saw)."""
    seen = []

    def h(c, server):
        req = c.read_request()
        seen.append(req.method)
        c.send(response_bytes(200, [], b"first"))
        req = c.read_request()
        seen.append(req.method)
        c.sock.shutdown(socket.SHUT_RDWR)

    srv = t.server(h)
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    eq(c.request("GET", "/").status, 200, "first request")
    r = c.request(method, "/again")
    return r, seen


def test_stale_keepalive_replays_idempotent_request(t):
    r, seen = _second_request_dropped(t, "GET")
    eq((r.status, r.body), (200, b"first"), "the GET replayed on a fresh connection")
    eq(seen, ["GET", "GET", "GET"], "requests at the backend")


def test_stale_keepalive_does_not_replay_post(t):
    """The backend may have acted on a POST before closing: it is never sent twice."""
    r, seen = _second_request_dropped(t, "POST")
    assert_proxy_error(r, 502, "POST on a connection the backend closed")
    eq(seen, ["GET", "POST"], "requests at the backend")


def test_failure_log_line_names_what_was_under_way(t):
    """Log lines about a backend's failure say what the connection was doing, from the
    state table: connecting, sending, or reading the response head from pool/backend."""
    srv = t.server(h_hang)
    lb = t.lb(t.config(backends=[srv], timeouts={"backend": "300ms"}))
    r = lb.get("/")
    assert_proxy_error(r, 504, "hanging backend")
    wait_until(lambda: "while reading the response head from api/py" in lb.stderr_text(), 2 * t.slow,
               what="a log line naming the action (stderr: %r)" % lb.stderr_tail(3))
