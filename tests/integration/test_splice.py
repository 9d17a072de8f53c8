"""Bodies moved with splice(2) (lb.splice = "auto", plain TCP on both sides): exact bytes,
checksums, byte counters and access log figures, backpressure, and failures mid-body.

A Content-Length body with at least 16 KiB still to come, or a close-delimited response,
is spliced once the head (and the body bytes read with it) went through the buffers;
chunked bodies and TLS stay in the buffers. /stats.json's "splice" object says how many
bytes went through pipes, which is how these tests know the splice path was taken.
Requests have no close-delimited form (a request without Content-Length or
Transfer-Encoding has no body), so uploads are Content-Length (spliced) and chunked (not).
"""

import hashlib
import os
import random
import socket
import threading
import time

from harness import ConnClosed, HttpConn, RssSampler, build_request, check, eq, timeout, wait_until
from test_bodies import _sha_cache, _sha_cache_put

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
PERIOD = bytes(range(97, 97 + 26))


def pattern_sha256(n):
    """SHA-256 of the first n bytes of lb-backend's /bytes pattern (cached for big n)."""
    key = "pattern|%d" % n
    if n >= 64 * MIB:
        got = _sha_cache().get(key)
        if got:
            return got
    block = PERIOD * (4 * MIB // 26)  # a whole number of periods
    h = hashlib.sha256()
    left = n
    mv = memoryview(block)
    while left:  # bounded: n / len(block) turns
        k = min(left, len(block))
        h.update(mv[:k])
        left -= k
    d = h.hexdigest()
    if n >= 64 * MIB:
        _sha_cache_put(key, d)
    return d


class Sha:
    """A body sink that hashes and counts."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def __call__(self, data):
        self.h.update(data)
        self.n += len(data)

    def hexdigest(self):
        return self.h.hexdigest()


def _lb(t, splice="auto", backends=None, **kw):
    b1 = backends[0] if backends else t.backend("b1")
    cfg = t.config(backends=backends or [b1], lb={"splice": splice}, **kw)
    return t.lb(cfg), b1


def _splice(lb):
    return lb.stats()["splice"]


def _read_body_fast(c, n, deadline, sink):
    """Read exactly n body bytes with recv_into (a 1 GiB body in Python needs it)."""
    if c.buf:
        take = min(n, len(c.buf))
        sink(bytes(c.buf[:take]))
        del c.buf[:take]
        n -= take
    buf = bytearray(4 * MIB)
    mv = memoryview(buf)
    for _ in range(10000000):
        if n == 0:
            return
        left = deadline - time.monotonic()
        check(left > 0, "timed out with %d body bytes still to read" % n)
        c.sock.settimeout(left)
        k = c.sock.recv_into(mv, min(n, len(buf)))
        if k == 0:
            raise ConnClosed("closed with %d body bytes missing" % n)
        sink(mv[:k])
        n -= k


def _downloads(t, lb):
    """GET /bytes of 64 KiB and 1 MiB, by Content-Length and close-delimited: every
    body checked against its SHA-256. Returns (body bytes, response bytes) delivered."""
    body_total = resp_total = 0
    for n in (64 * KIB, MIB):
        for query in ("", "?close=1"):
            c = lb.conn()
            sink = Sha()
            r = c.request("GET", "/bytes/%d%s" % (n, query), headers=[("X-Request-Id", "dl-%d%s" % (n, query[1:6]))],
                          sink=sink)
            eq(r.status, 200, "status of /bytes/%d%s" % (n, query))
            eq(r.framing, "close" if query else "length", "framing of /bytes/%d%s" % (n, query))
            eq(sink.n, n, "body bytes of /bytes/%d%s" % (n, query))
            eq(sink.hexdigest(), pattern_sha256(n), "body SHA-256 of /bytes/%d%s" % (n, query))
            body_total += n
            resp_total += len(r.raw_head) + n
            c.close()
    return body_total, resp_total


def _access_bytes(path, want_lines):
    def lines():
        if not os.path.exists(path):
            return None
        ls = [ln for ln in open(path).read().splitlines() if ln.strip()]
        return ls if len(ls) >= want_lines else None

    got = wait_until(lines, 5, what="%d access log lines" % want_lines)
    return sum(int(ln.split('" ', 1)[1].split()[1]) for ln in got)


def test_splice_downloads_exact_with_counters(t):
    b1 = t.backend("b1")
    totals = {}
    for mode in ("auto", "off"):
        log = os.path.join(t.tmp, "access-%s.log" % mode)
        lb, _ = _lb(t, splice=mode, backends=[b1], log={"access": log})
        s0 = _splice(lb)
        eq(s0["mode"], mode, "splice mode in /stats.json")
        be0 = lb.backend_stats("api", "b1")
        body, resp = _downloads(t, lb)
        be = lb.backend_stats("api", "b1")
        s = _splice(lb)
        eq(be["bytes_in"] - be0["bytes_in"], body, "%s: b1 bytes_in after the downloads" % mode)
        eq(s["pipes_in_use"], 0, "%s: pipes in use once every response is done" % mode)
        eq(_access_bytes(log, 4), resp, "%s: response bytes in the access log" % mode)
        spliced = s["bytes"] - s0["bytes"]
        if mode == "auto":
            # at most the first buffer's worth of each body goes through the buffers
            check(spliced >= body - 4 * 16 * KIB and spliced <= body,
                  "auto: %d of %d body bytes spliced" % (spliced, body))
        else:
            eq(spliced, 0, "off: bytes spliced")
        totals[mode] = (body, be["responses"]["2xx"] - be0["responses"]["2xx"])
        lb.stop()
    eq(totals["auto"], totals["off"], "bodies and 2xx counts with splice auto and off")


def test_splice_uploads_exact_with_pipelining(t):
    b1 = t.backend("b1")
    out = {}
    rnd = random.Random(14)
    bodies = [rnd.randbytes(64 * KIB), rnd.randbytes(MIB), rnd.randbytes(16 * KIB + 1)]
    for mode in ("auto", "off"):
        lb, _ = _lb(t, splice=mode, backends=[b1])
        be0 = lb.backend_stats("api", "b1")
        s0 = _splice(lb)
        c = lb.conn()
        for i, body in enumerate(bodies):
            # the body and, right behind it, the next request in one send: the bytes
            # after the announced length must stay for the next request
            hs = [("Content-Type", "application/octet-stream"), ("X-Request-Id", "up-%d" % i)]
            c.send(build_request("POST", "/echo", headers=hs, body=body) +
                   build_request("GET", "/", headers=[("X-Request-Id", "after-%d" % i)]))
            r = c.read_response(timeout=20 * t.slow)
            eq(r.status, 200, "%s: upload status" % mode)
            e = r.json()
            eq(e["body_length"], len(body), "%s: body_length at the backend" % mode)
            eq(e["body_sha256"], hashlib.sha256(body).hexdigest(), "%s: body_sha256 at the backend" % mode)
            r = c.read_response()
            eq((r.status, r.body), (200, b"b1\n"), "%s: the request pipelined behind the body" % mode)
        be = lb.backend_stats("api", "b1")
        spliced = _splice(lb)["bytes"] - s0["bytes"]
        out[mode] = be["bytes_out"] - be0["bytes_out"]
        if mode == "auto":
            check(spliced >= sum(len(b) for b in bodies) - 3 * 16 * KIB,
                  "auto: only %d upload bytes spliced" % spliced)
        else:
            eq(spliced, 0, "off: bytes spliced")
        # a chunked upload stays in the buffers (its framing is checked on the way)
        body = bodies[1]
        enc = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100000]), body[i:i + 100000]) for i in range(0, len(body), 100000))
        s1 = _splice(lb)["bytes"]
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) + enc + b"0\r\n\r\n")
        e = c.read_response(timeout=20 * t.slow).json()
        eq(e["body_sha256"], hashlib.sha256(body).hexdigest(), "%s: chunked upload at the backend" % mode)
        eq(_splice(lb)["bytes"], s1, "%s: bytes spliced for a chunked upload" % mode)
        c.close()
        lb.stop()
    # the same heads and bodies: the backend got exactly the same number of bytes
    eq(out["auto"], out["off"], "b1 bytes_out with splice auto and off")


def test_splice_chunked_download_uses_buffers(t):
    lb, _ = _lb(t)
    s0 = _splice(lb)["bytes"]
    sink = Sha()
    r = lb.conn().request("GET", "/bytes/%d?chunked=1" % MIB, sink=sink)
    eq((r.status, r.framing, sink.n), (200, "chunked", MIB), "chunked download")
    eq(sink.hexdigest(), pattern_sha256(MIB), "chunked download SHA-256")
    eq(_splice(lb)["bytes"], s0, "bytes spliced for a chunked response")


@timeout(90)
def test_splice_1gib_download_and_upload(t):
    # 1 GiB each way in both builds: with splice the proxy's own work per byte is
    # the kernel's, so the sanitizer build is as fast here; the Python client is
    # what takes the time (a few seconds per GiB with hashing)
    lb, b1 = _lb(t, timeouts={"backend": "20s", "client_idle": "60s"})
    s0 = _splice(lb)["bytes"]
    be0 = lb.backend_stats("api", "b1")
    want = {}
    ht = threading.Thread(target=lambda: want.update(sha=pattern_sha256(GIB)), daemon=True)
    ht.start()

    c = lb.conn()
    sampler = RssSampler(lb.pid)
    t0 = time.monotonic()
    c.send(build_request("GET", "/bytes/%d" % GIB))
    head = c.read_head(10 * t.slow)
    check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:40])
    check(b"Content-Length: %d" % GIB in head, "Content-Length of 1 GiB in %r" % head)
    sink = Sha()
    _read_body_fast(c, GIB, time.monotonic() + 60 * t.slow, sink)
    t_down = time.monotonic() - t0
    ht.join(30 * t.slow)
    eq(sink.n, GIB, "bytes downloaded")
    eq(sink.hexdigest(), want.get("sha"), "SHA-256 of the 1 GiB download")

    # upload on the same connection: a 1 MiB random block repeated 1024 times
    block = random.Random(1414).randbytes(MIB)
    key = "%s|%d" % (hashlib.sha256(block).hexdigest(), GIB)
    up_sha = _sha_cache().get(key)
    if not up_sha:
        h = hashlib.sha256()
        for _ in range(1024):
            h.update(block)
        up_sha = h.hexdigest()
        _sha_cache_put(key, up_sha)
    err = []

    def sender():
        try:
            c.send(build_request("POST", "/echo", headers=[("Content-Length", str(GIB))]))
            mv = memoryview(block)
            for _ in range(1024):
                c.sock.sendall(mv)
        except Exception as e:
            err.append(repr(e))

    t1 = time.monotonic()
    st = threading.Thread(target=sender, daemon=True)
    st.start()
    r = c.read_response(timeout=60 * t.slow)
    st.join(10)
    t_up = time.monotonic() - t1
    mx = sampler.stop()
    eq(err, [], "errors while uploading")
    eq(r.status, 200, "upload status")
    e = r.json()
    eq((e["body_length"], e["body_sha256"]), (GIB, up_sha), "1 GiB upload at the backend")

    be = lb.backend_stats("api", "b1")
    # the 1 GiB download and the echo answer's body, byte for byte
    eq(be["bytes_in"] - be0["bytes_in"], GIB + len(r.body), "b1 bytes_in")
    sent = be["bytes_out"] - be0["bytes_out"]
    check(GIB + 100 < sent < GIB + 4 * KIB, "b1 bytes_out %d: two request heads and 1 GiB" % sent)
    spliced = _splice(lb)["bytes"] - s0
    check(spliced > 2 * GIB - 64 * KIB, "only %d of 2 GiB spliced" % spliced)
    grow = mx - (sampler.first_kb or 0)
    check(grow < 16 * 1024, "lb RSS grew by %d KiB while moving 2 GiB (limit 16 MiB)" % grow)
    print("1 GiB down in %.1fs, up in %.1fs, lb RSS max %d KiB (+%d)" % (t_down, t_up, mx, grow))


@timeout(60)
def test_splice_client_stops_reading_bounded_memory(t):
    size = 256 * MIB
    lb, b1 = _lb(t, timeouts={"client_idle": "30s", "backend": "30s"})
    c = lb.conn()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
    c.send(build_request("GET", "/bytes/%d" % size))
    head = c.read_head(5 * t.slow)
    check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:40])
    sink = Sha()
    _read_body_fast(c, MIB, time.monotonic() + 10 * t.slow, sink)
    # the client stops reading: everything between it and the backend fills up and stops
    sampler = RssSampler(lb.pid)
    time.sleep(1.5)
    st1 = _splice(lb)
    time.sleep(0.5)
    st2 = _splice(lb)
    mx = sampler.stop()
    eq(st2["bytes"], st1["bytes"], "bytes spliced while the client does not read")
    eq(st2["pipes_in_use"], 1, "pipes in use by the stalled response")
    check(st2["bytes"] < 32 * MIB, "%d bytes went through while the client read 1 MiB" % st2["bytes"])
    check(mx - (sampler.first_kb or mx) < 2048, "lb RSS grew by %d KiB while stalled" % (mx - (sampler.first_kb or mx)))
    _read_body_fast(c, size - MIB, time.monotonic() + 40 * t.slow, sink)
    eq(sink.n, size, "bytes received after resuming")
    eq(sink.hexdigest(), pattern_sha256(size), "SHA-256 after resuming")
    r = c.request("GET", "/")
    eq(r.status, 200, "the connection serves the next request")
    eq(_splice(lb)["pipes_in_use"], 0, "pipes in use after the response")


def _mid_body_server(total, sent, close_delimited, reset):
    """A backend that announces TOTAL bytes (or none: close-delimited), sends SENT in
    two steps (so the rest of the body is spliced), then closes (or resets)."""

    def h(c, server):
        c.read_request()
        if close_delimited:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total
        body = (PERIOD * (sent // 26 + 1))[:sent]
        c.send(head + body[:20000])
        time.sleep(0.2)
        c.send(body[20000:])
        time.sleep(0.2)
        if reset:
            c.reset()
        else:
            c.sock.shutdown(socket.SHUT_WR)
            time.sleep(0.3)

    return h


def _mid_body(t, close_delimited, reset):
    total, sent = 4 * MIB, 300 * KIB
    s = t.server(_mid_body_server(total, sent, close_delimited, reset), name="b1")
    lb, _ = _lb(t, backends=[{"name": "b1", "address": s.addr}], timeouts={"backend": "5s"})
    s0 = _splice(lb)["bytes"]
    c = lb.conn()
    c.send(build_request("GET", "/big"))
    head = c.read_head(5 * t.slow)
    check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:40])
    got = bytearray()
    deadline = time.monotonic() + 10 * t.slow
    if c.buf:
        got += c.buf
        c.buf.clear()
    for _ in range(100000):  # until the proxy closes
        check(time.monotonic() < deadline, "the proxy did not close after the backend stopped")
        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = c.sock.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        got += d
    check(len(got) <= sent, "client got %d bytes, the backend sent %d" % (len(got), sent))
    eq(bytes(got), (PERIOD * (sent // 26 + 1))[:len(got)], "bytes the client got")
    check(_splice(lb)["bytes"] > s0, "nothing was spliced")
    be = wait_until(lambda: (lambda b: b if b["inflight"] == 0 else None)(lb.backend_stats("api", "b1")),
                    3, what="b1 inflight 0")
    eq(be["bytes_in"], len(got), "b1 bytes_in: the body bytes the client got")
    eq(_splice(lb)["pipes_in_use"], 0, "pipes in use after the failure")
    return be, len(got)


def test_splice_backend_stops_mid_body_length(t):
    be, n = _mid_body(t, close_delimited=False, reset=False)
    check(n < 4 * MIB, "a truncated body (%d bytes) reached the client as if whole" % n)
    eq(be["failures_by_kind"]["reset"], 1, "b1 resets counted")
    eq(be["failures"], 1, "b1 failures")


def test_splice_backend_resets_mid_close_delimited_body(t):
    be, n = _mid_body(t, close_delimited=True, reset=True)
    eq(be["failures_by_kind"]["reset"], 1, "b1 resets counted for a reset inside a close-delimited body")


def test_splice_backend_closes_close_delimited_body_is_complete(t):
    be, n = _mid_body(t, close_delimited=True, reset=False)
    eq(n, 300 * KIB, "a close-delimited body ends at the backend's close, whole")
    eq(be["failures"], 0, "b1 failures for a clean close-delimited end")
    eq(be["responses"]["2xx"], 1, "b1 2xx")
