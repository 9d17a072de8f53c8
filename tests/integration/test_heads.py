"""Head size limits, exact to the byte: a request head of at most 15 KiB (15360 bytes,
final CRLFCRLF included) is served, one byte more gets 431; a backend's response head over
the same limit is a 502 counted as an invalid response, whether it arrives whole or split
across reads, and the process and every other connection live on."""

import time

from harness import assert_proxy_error, check, eq
from pyservers import http_handler, response_bytes

HEAD_LIMIT = 15360


def _head_of_size(first, n, filler=b"X-Pad: "):
    """`first` (a start line with CRLF) plus one padding header, n bytes in all with the
    final CRLFCRLF."""
    pad = n - len(first) - len(filler) - 4
    assert pad >= 0
    return first + filler + b"p" * pad + b"\r\n\r\n"


def _big_head_backend(t, size, split_at):
    """A backend whose answer to /big has a head of `size` bytes, sent in two writes
    `split_at` bytes apart (0: one write); every other path gets a small 200."""

    def respond(req, c):
        if req.target != "/big":
            return response_bytes(200, [("X-Backend", "py")], b"small")
        head = _head_of_size(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", size)
        data = head + b"ok"
        if split_at:
            c.send(data[:split_at])
            time.sleep(0.1)
            c.send(data[split_at:])
        else:
            c.send(data)
        return b""

    return t.server(http_handler(respond))


def _response_head_case(size, split_at):
    def test(t):
        srv = _big_head_backend(t, size, split_at)
        lb = t.lb(t.config(backends=[srv], workers=2))
        bystander = lb.conn()
        eq(bystander.request("GET", "/").status, 200, "a keep-alive bystander's first request")
        c = lb.conn()
        r = c.request("GET", "/big")
        if size <= HEAD_LIMIT:
            eq((r.status, r.body), (200, b"ok"), "response with a %d-byte head" % size)
            eq(lb.backend_stats("api", "py")["failures_by_kind"]["invalid"], 0, "invalid responses")
        else:
            assert_proxy_error(r, 502, "response head of %d bytes" % size)
            eq(lb.backend_stats("api", "py")["failures_by_kind"]["invalid"], 1, "invalid responses counted")
        check(lb.proc.poll() is None, "lb exited after a %d-byte response head" % size)
        eq(bystander.request("GET", "/").status, 200, "the bystander's next request")
        eq(lb.get("/").status, 200, "a new connection afterwards")

    return test


# Split heads: the first write ends 10 bytes short of a head within the limit, or, for a
# head over it, 140 bytes past the limit, so the proxy holds an incomplete head that can
# no longer fit (the case that once freed the upstream and went on using it).
for _size in (15000, HEAD_LIMIT, 15600, 16384, 40000):
    for _split in (0, 1):
        _at = 0 if not _split else (_size - 10 if _size <= HEAD_LIMIT else HEAD_LIMIT + 140)
        _name = "test_response_head_%d_%s" % (_size, "split" if _split else "whole")
        globals()[_name] = _response_head_case(_size, _at)
        globals()[_name].__name__ = _name


def _request_head_case(size, split):
    def test(t):
        seen = []

        def respond(req, c):
            seen.append(len(req.raw_head))
            return response_bytes(200, [], b"fine")

        srv = t.server(http_handler(respond))
        lb = t.lb(t.config(backends=[srv]))
        head = _head_of_size(b"GET /x HTTP/1.1\r\nHost: localhost\r\n", size)
        eq(len(head), size, "the test's own head length")
        c = lb.conn()
        if split:
            c.send(head[:size // 2])
            time.sleep(0.1)
            c.send(head[size // 2:])
        else:
            c.send(head)
        r = c.read_response()
        if size <= HEAD_LIMIT:
            eq((r.status, r.body), (200, b"fine"), "request with a %d-byte head" % size)
            eq(len(seen), 1, "requests at the backend")
        else:
            assert_proxy_error(r, 431, "request head of %d bytes" % size)
            check(c.closed_within(2 * t.slow), "connection not closed after the 431")
            eq(seen, [], "requests at the backend")

    return test


for _size in (HEAD_LIMIT - 1, HEAD_LIMIT, HEAD_LIMIT + 1):
    for _split in (False, True):
        _name = "test_request_head_%d_%s" % (_size, "split" if _split else "whole")
        globals()[_name] = _request_head_case(_size, _split)
        globals()[_name].__name__ = _name
