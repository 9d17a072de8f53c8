"""HTTP/1.1 semantics through the proxy: pipelining, HEAD, 1xx/204/304, HTTP/1.0,
hop-by-hop headers, X-Forwarded-*, X-Request-Id."""

import hashlib
import json
import os
import socket

from harness import PatternChecker, build_request, check, chunked, eq, header_of
from pyservers import http_handler, response_bytes


def _one(t, **kw):
    b1 = t.backend("b1")
    return t.lb(t.config(backends=[b1], **kw))


def test_pipelining_10_mixed_requests_in_one_write(t):
    lb = _one(t)
    reqs = []
    wire = b""
    for i in range(10):
        rid = "pipe-%d" % i
        if i % 3 == 1:
            body = os.urandom(1000 * i + 1)
            wire += build_request("POST", "/echo?i=%d" % i, headers=[("X-Request-Id", rid)], body=body)
        else:
            body = b""
            wire += build_request("GET", "/echo?i=%d" % i, headers=[("X-Request-Id", rid)])
        reqs.append((rid, "POST" if body else "GET", body))
    c = lb.conn()
    c.send(wire)
    for i, (rid, method, body) in enumerate(reqs):
        r = c.read_response()
        eq(r.status, 200, "status of pipelined response %d" % i)
        eq(r.header("X-Request-Id"), rid, "X-Request-Id of pipelined response %d (order)" % i)
        e = r.json()
        eq((e["method"], e["path"]), (method, "/echo?i=%d" % i), "request %d as seen by the backend" % i)
        eq(e["body_length"], len(body), "body_length of request %d" % i)
        eq(e["body_sha256"], hashlib.sha256(body).hexdigest(), "body_sha256 of request %d" % i)
    check(c.quiet_for(0.2), "extra bytes after the 10th response")


def test_pipelined_request_after_chunked_body(t):
    lb = _one(t)
    body = os.urandom(70000)
    wire = build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked"), ("X-Request-Id", "one")]) + \
        chunked(body) + build_request("GET", "/echo?second", headers=[("X-Request-Id", "two")]) + \
        build_request("POST", "/echo?third", headers=[("X-Request-Id", "three")], body=b"hello")
    c = lb.conn()
    c.send(wire)
    r1 = c.read_response()
    r2 = c.read_response()
    r3 = c.read_response()
    eq([r.status for r in (r1, r2, r3)], [200, 200, 200], "statuses")
    eq([r.header("X-Request-Id") for r in (r1, r2, r3)], ["one", "two", "three"], "response order")
    e1, e2, e3 = r1.json(), r2.json(), r3.json()
    eq((e1["body_length"], e1["body_sha256"]), (len(body), hashlib.sha256(body).hexdigest()), "chunked body")
    eq((e2["method"], e2["path"], e2["body_length"]), ("GET", "/echo?second", 0), "second request")
    eq((e3["method"], e3["path"], e3["body_length"]), ("POST", "/echo?third", 5), "third request")


def test_head_has_length_no_body_and_keeps_connection(t):
    lb = _one(t)
    c = lb.conn()
    r = c.request("HEAD", "/bytes/1000")
    eq(r.status, 200, "HEAD status")
    eq(r.header("Content-Length"), "1000", "Content-Length of the HEAD response")
    eq(r.body, b"", "HEAD body")
    chk = PatternChecker()
    r = c.request("GET", "/bytes/1000", sink=chk)
    eq((r.status, chk.n, chk.bad_at), (200, 1000, None), "GET after HEAD on the same connection")
    r = c.request("HEAD", "/bytes/5")
    eq((r.status, r.header("Content-Length")), (200, "5"), "second HEAD")
    r = c.request("GET", "/")
    eq((r.status, r.body), (200, b"b1\n"), "GET after the second HEAD")


def test_204_and_304_have_no_body_and_keep_alive(t):
    lb = _one(t)
    c = lb.conn()
    for st in (204, 304, 204):
        r = c.request("GET", "/status/%d" % st)
        eq(r.status, st, "status")
        check(r.header("Transfer-Encoding") is None, "%d with Transfer-Encoding" % st)
        r2 = c.request("GET", "/")
        eq((r2.status, r2.body), (200, b"b1\n"), "request after a %d on the same connection" % st)


def test_expect_100_continue(t):
    lb = _one(t)
    body = os.urandom(100000)
    c = lb.conn()
    c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
    r = c.read_response(timeout=3 * t.slow)
    eq((r.version, r.status), ("HTTP/1.1", 100), "interim response before the body")
    eq(r.body, b"", "100 Continue body")
    c.send(body)
    r = c.read_response()
    eq(r.status, 200, "final status")
    e = r.json()
    eq((e["body_length"], e["body_sha256"]), (len(body), hashlib.sha256(body).hexdigest()), "body seen by the backend")
    r = c.request("GET", "/")
    eq(r.status, 200, "next request on the connection")


def test_http10_closes_without_keepalive(t):
    lb = _one(t)
    c = lb.conn()
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    r = c.read_response()
    check(r.version in ("HTTP/1.0", "HTTP/1.1"), "version %r" % r.version)
    eq((r.status, r.body), (200, b"b1\n"), "HTTP/1.0 response")
    check(c.closed_within(2 * t.slow), "connection not closed after an HTTP/1.0 response")


def test_http10_keepalive_keeps_connection(t):
    lb = _one(t)
    c = lb.conn()
    for i in range(3):
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        eq((r.status, r.body), (200, b"b1\n"), "HTTP/1.0 keep-alive response %d" % i)
        check(r.header("Content-Length") is not None, "keep-alive HTTP/1.0 response without Content-Length")
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    r = c.read_response()
    eq(r.status, 200, "last HTTP/1.0 request")
    check(c.closed_within(2 * t.slow), "connection not closed after the request without keep-alive")


def test_http10_gets_chunked_response_dechunked(t):
    lb = _one(t)
    c = lb.conn()
    c.send(b"GET /bytes/1000?chunked=1 HTTP/1.0\r\n\r\n")
    chk = PatternChecker()
    r = c.read_response(sink=chk)
    eq(r.status, 200, "status")
    check(r.header("Transfer-Encoding") is None, "HTTP/1.0 client got Transfer-Encoding: %r" % r.header("Transfer-Encoding"))
    check(r.framing in ("length", "close"), "framing %s" % r.framing)
    eq((chk.n, chk.bad_at), (1000, None), "de-chunked body (length, first bad byte)")
    check(c.closed_within(2 * t.slow), "connection not closed after the HTTP/1.0 response")


# --- hop-by-hop ----------------------------------------------------------------


def test_hop_by_hop_request_headers_removed(t):
    lb = _one(t)
    c = lb.conn()
    r = c.request("GET", "/echo", headers=[
        ("Connection", "keep-alive, X-Foo, X-Other"),
        ("X-Foo", "1"), ("X-Other", "2"), ("X-Kept", "3"),
        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
    ])
    eq(r.status, 200, "status")
    hs = r.json()["headers"]
    for name in ("X-Foo", "X-Other", "Keep-Alive", "Proxy-Connection"):
        eq(header_of(hs, name), [], "%s as seen by the backend" % name)
    for v in header_of(hs, "Connection"):
        check("x-foo" not in v.lower() and "x-other" not in v.lower(), "Connection forwarded as %r" % v)
    eq(header_of(hs, "X-Kept"), ["3"], "an end-to-end header")


def test_upgrade_header_without_upgrade_not_forwarded(t):
    lb = _one(t)
    c = lb.conn()
    r = c.request("GET", "/echo", headers=[("Upgrade", "foo/1"), ("TE", "trailers"), ("Connection", "TE")])
    eq(r.status, 200, "status")
    hs = r.json()["headers"]
    eq(header_of(hs, "Upgrade"), [], "Upgrade (not named in Connection) as seen by the backend")
    r = c.request("GET", "/")
    eq(r.status, 200, "next request on the connection")


def test_hop_by_hop_response_headers_removed(t):
    def respond(req, c):
        return response_bytes(200, [("Connection", "X-Bar"), ("X-Bar", "1"), ("Keep-Alive", "timeout=5"),
                                    ("Proxy-Connection", "keep-alive"), ("X-Kept", "yes")], b"hello")

    srv = t.server(http_handler(respond))
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    for i in range(2):
        r = c.request("GET", "/")
        eq((r.status, r.body), (200, b"hello"), "response %d" % i)
        eq(r.header_all("X-Bar"), [], "X-Bar (named in the backend's Connection) at the client")
        eq(r.header_all("Keep-Alive"), [], "Keep-Alive at the client")
        eq(r.header_all("Proxy-Connection"), [], "Proxy-Connection at the client")
        for v in r.header_all("Connection"):
            check("x-bar" not in v.lower(), "Connection passed on as %r" % v)
        eq(r.header_all("X-Kept"), ["yes"], "an end-to-end header")


# --- X-Forwarded-*, X-Request-Id -------------------------------------------------------


def test_xff_added(t):
    lb = _one(t)
    r = lb.get("/echo")
    hs = r.json()["headers"]
    eq(header_of(hs, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For at the backend")


FORWARDING = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https"), ("X-Real-IP", "1.2.3.4"),
              ("X-Forwarded-Host", "spoofed.example"), ("X-Forwarded-Port", "443"), ("Forwarded", "for=1.2.3.4"),
              ("X-Forwarded-Prefix", "/evil")]


def test_forwarding_headers_of_untrusted_client_replaced(t):
    """A client that is not a trusted forwarder cannot claim to be someone else: its
    X-Forwarded-For is replaced by its address, X-Forwarded-Proto is ours, and X-Real-IP,
    other X-Forwarded-* and Forwarded do not reach the backend."""
    lb = _one(t)
    hs = lb.get("/echo", headers=FORWARDING).json()["headers"]
    eq(header_of(hs, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For at the backend")
    eq(header_of(hs, "X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto at the backend")
    for name in ("X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Port", "Forwarded", "X-Forwarded-Prefix"):
        eq(header_of(hs, name), [], "%s at the backend" % name)


def test_forwarding_headers_of_trusted_forwarder_kept(t):
    """From an address in trusted_forwarders, X-Forwarded-For is appended to and the
    other forwarding headers pass as they came."""
    lb = _one(t, listener={"trusted_forwarders": ["10.0.0.0/8", "127.0.0.0/8"]})
    hs = lb.get("/echo", headers=FORWARDING).json()["headers"]
    eq([v.replace(" ", "") for v in header_of(hs, "X-Forwarded-For")], ["1.2.3.4,127.0.0.1"],
       "X-Forwarded-For at the backend")
    eq(header_of(hs, "X-Forwarded-Proto"), ["https"], "X-Forwarded-Proto at the backend (the forwarder's)")
    for name, value in FORWARDING[2:]:
        eq(header_of(hs, name), [value], "%s at the backend" % name)


def test_forwarding_headers_of_other_address_not_trusted(t):
    """trusted_forwarders that do not cover the client change nothing."""
    lb = _one(t, listener={"trusted_forwarders": ["10.0.0.0/8", "::1"]})
    hs = lb.get("/echo", headers=FORWARDING).json()["headers"]
    eq(header_of(hs, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For at the backend")
    eq(header_of(hs, "X-Real-IP"), [], "X-Real-IP at the backend")


def test_xfp_http(t):
    lb = _one(t)
    r = lb.get("/echo")
    hs = r.json()["headers"]
    eq(header_of(hs, "X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto at the backend")


def test_xfp_client_value_not_trusted(t):
    lb = _one(t)
    r = lb.get("/echo", headers=[("X-Forwarded-Proto", "https")])
    hs = r.json()["headers"]
    eq(header_of(hs, "X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto at the backend (client sent https over plain http)")


def test_request_id_generated_unique_and_returned(t):
    lb = _one(t)
    c = lb.conn()
    ids = []
    for i in range(100):
        r = c.request("GET", "/echo")
        eq(r.status, 200, "status")
        mine = r.header_all("X-Request-Id")
        seen = header_of(r.json()["headers"], "X-Request-Id")
        eq(len(mine), 1, "X-Request-Id headers on response %d" % i)
        check(mine[0].strip() != "", "empty X-Request-Id on response %d" % i)
        eq(seen, mine, "X-Request-Id seen by the backend vs on the response %d" % i)
        ids.append(mine[0])
    eq(len(set(ids)), 100, "distinct X-Request-Id values over 100 requests")


def test_request_id_kept_when_sent(t):
    lb = _one(t)
    c = lb.conn()
    for rid in ("abc-123", "f" * 64):
        r = c.request("GET", "/echo", headers=[("X-Request-Id", rid)])
        eq(r.header_all("X-Request-Id"), [rid], "X-Request-Id on the response")
        eq(header_of(r.json()["headers"], "X-Request-Id"), [rid], "X-Request-Id seen by the backend")


# --- more framing and connection handling ---------------------------------------


def test_pipelined_large_responses_in_order(t):
    lb = _one(t)
    sizes = [1 << 20, 1, 300000, 0, 2 << 20, 16384, 70000, 5, 1 << 20, 12345]
    c = lb.conn()
    c.send(b"".join(build_request("GET", "/bytes/%d" % n, headers=[("X-Request-Id", "big-%d" % i)])
                    for i, n in enumerate(sizes)))
    for i, n in enumerate(sizes):
        chk = PatternChecker()
        r = c.read_response(sink=chk)
        eq((r.status, r.header("X-Request-Id")), (200, "big-%d" % i), "pipelined response %d" % i)
        eq((chk.n, chk.bad_at), (n, None), "body of pipelined response %d (length, first bad byte)" % i)


def test_client_connection_close_is_honoured(t):
    lb = _one(t)
    c = lb.conn()
    r = c.request("GET", "/", headers=[("Connection", "close")])
    eq((r.status, r.body), (200, b"b1\n"), "response")
    check("close" in (r.header("Connection") or "").lower(), "no Connection: close on the last response: %r" % r.header("Connection"))
    check(c.closed_within(2 * t.slow), "connection not closed after Connection: close")


def test_client_half_close_after_request_gets_response(t):
    lb = _one(t)
    c = lb.conn()
    c.send(build_request("POST", "/echo", body=b"z" * 5000))
    c.sock.shutdown(socket.SHUT_WR)
    r = c.read_response()
    eq(r.status, 200, "status after the client shut down its sending side")
    eq(r.json()["body_length"], 5000, "body_length")
    check(c.closed_within(2 * t.slow), "connection not closed after the answer to a half-closed client")


def _listener_that_never_accepts():
    """A loopback port whose accept queue is full: a further connect to it
    hangs (the kernel drops its SYNs) until the connecting side gives up."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(lsock.getsockname())
        except BlockingIOError:
            pass
        fillers.append(s)
    return lsock, fillers


def test_client_half_close_while_backend_connect_pending_is_not_an_abort(t):
    """The client sends its whole POST and shuts down its sending side while
    lb still connects to the backend, so the body and the EOF are read before
    any of it can go up: lb must still answer (the connect times out: 502),
    not drop the request as a client abort."""
    lsock, fillers = _listener_that_never_accepts()
    try:
        stuck = {"name": "stuck", "address": "127.0.0.1:%d" % lsock.getsockname()[1]}
        lb = t.lb(t.config(backends=[stuck], timeouts={"connect": "300ms"},
                           pool={"retry": {"attempts": 0}}))
        bodies = [
            ("Content-Length", build_request("POST", "/echo", body=b"z" * 5000)),
            ("chunked", build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                                      body=chunked(b"z" * 5000))),
        ]
        for kind, wire in bodies:
            c = lb.conn()
            c.send(wire)
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            eq(r.status, 502, "%s body: status when the backend cannot be reached, after the client's half-close" % kind)
            check(c.closed_within(2 * t.slow), "%s body: connection not closed after the answer" % kind)
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_many_request_headers_forwarded_intact(t):
    lb = _one(t)
    hs = [("X-H%02d" % i, "value-%d-%s" % (i, "v" * i)) for i in range(90)]
    r = lb.get("/echo", headers=hs)
    eq(r.status, 200, "status with 90 extra headers")
    seen = r.json()["headers"]
    got = [(n, v) for n, v in seen if n.lower().startswith("x-h")]
    eq(got, hs, "the 90 headers as the backend saw them (names, values, order)")


def test_chunked_response_with_trailers_to_http11_client(t):
    body = os.urandom(50000)

    def respond(req, c):
        out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        out += chunked(body, sizes=(1000, 7, 20000))[:-2]  # drop the final CRLF: trailers follow
        out += b"X-Sum: " + hashlib.sha256(body).hexdigest().encode() + b"\r\n\r\n"
        return out

    srv = t.server(http_handler(respond))
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    for i in range(2):
        r = c.request("GET", "/")
        eq(r.status, 200, "status %d" % i)
        check(r.body == body, "chunked body with trailers (got %d bytes, want %d)" % (len(r.body), len(body)))


# --- absolute-form targets (RFC 9112 3.2.2) ----------------------------------------------


def _routed(t):
    """Pools "api" (b1, default) and "admin" (b2); routes: host admin.example -> admin,
    path /admin/ -> admin."""
    def echo(name):
        def respond(req, c):
            body = json.dumps({"backend": name, "path": req.target,
                               "headers": [[n, v] for n, v in req.headers]}).encode()
            return response_bytes(200, [], body)
        return t.server(http_handler(respond))

    b1 = echo("b1")
    b2 = echo("b2")
    pools = [{"name": "api", "health": {"type": "off"}, "backends": [{"name": "b1", "address": b1.addr}]},
             {"name": "admin", "health": {"type": "off"}, "backends": [{"name": "b2", "address": b2.addr}]}]
    routes = [{"host": "admin.example", "pool": "admin"}, {"path_prefix": "/admin/", "pool": "admin"}]
    return t.lb(t.config(pools=pools, listener={"routes": routes}))


def _absolute(t, lb, target, host):
    c = lb.conn()
    c.send("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, host))
    r = c.read_response()
    eq(r.status, 200, "status for %s" % target)
    e = r.json()
    return e["backend"], e["path"], header_of(e["headers"], "Host")


def test_absolute_form_query_is_not_a_path(t):
    """The path of http://public.example?/admin/secret is "/" with a query: not the admin route."""
    lb = _routed(t)
    eq(_absolute(t, lb, "http://public.example?/admin/secret", "public.example"),
       ("b1", "/?/admin/secret", ["public.example"]), "backend, target and Host sent")


def test_absolute_form_host_ends_at_query(t):
    lb = _routed(t)
    eq(_absolute(t, lb, "http://admin.example?x", "admin.example"), ("b2", "/?x", ["admin.example"]),
       "backend, target and Host sent")


def test_absolute_form_authority_wins_over_host_header(t):
    """The received Host is ignored: routed by the target's host, sent with Host from the
    authority (port included) and the origin-form target."""
    lb = _routed(t)
    eq(_absolute(t, lb, "http://ADMIN.example:8080/p/q?z=1", "public.example"),
       ("b2", "/p/q?z=1", ["ADMIN.example:8080"]), "backend, target and Host sent")
    eq(_absolute(t, lb, "http://public.example/admin/x", "admin.example"),
       ("b2", "/admin/x", ["public.example"]), "routed by the target's path, not its Host header")
    eq(_absolute(t, lb, "https://public.example", "admin.example"), ("b1", "/", ["public.example"]),
       "empty path becomes /")
    eq(_absolute(t, lb, "http://[::1]:81/v", "x"), ("b1", "/v", ["[::1]:81"]), "IPv6 authority")


# --- framing sent to the backend -----------------------------------------------------------


def _seen_by_backend(t, wire):
    srv = t.server(http_handler(lambda req, c: response_bytes(200, [], b"ok")))
    lb = t.lb(t.config(backends=[srv]))
    c = lb.conn()
    c.send(wire)
    r = c.read_response()
    eq((r.status, r.body), (200, b"ok"), "status and body")
    eq(len(srv.seen), 1, "requests at the backend")
    return srv.seen[0]


def test_content_length_list_sent_as_one_value(t):
    req = _seen_by_backend(t, b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n"
                              b"Content-Length: 5\r\n\r\nhello")
    eq([v for n, v in req.headers if n.lower() == "content-length"], ["5"], "Content-Length at the backend")
    eq(req.body, b"hello", "body at the backend")


def test_chunked_request_sent_with_one_transfer_encoding(t):
    req = _seen_by_backend(t, b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
                              b"5\r\nhello\r\n0\r\n\r\n")
    eq([(n.lower(), v) for n, v in req.headers if n.lower() in ("transfer-encoding", "content-length")],
       [("transfer-encoding", "chunked")], "framing headers at the backend")
    eq(req.body, b"hello", "body at the backend")
