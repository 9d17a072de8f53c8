"""Request and response bodies: framing, exact bytes, streaming with bounded memory."""

import hashlib
import json
import os
import random
import tempfile
import threading
import time

from harness import PatternChecker, RssSampler, build_request, check, chunked, eq, timeout

MIB = 1 << 20
SIZES = [0, 1, 16383, 16384, 16385, 10 * MIB]


def _one(t, **kw):
    b1 = t.backend("b1")
    return t.lb(t.config(backends=[b1], **kw)), b1


def test_upload_content_length_5mib(t):
    lb, _ = _one(t)
    body = os.urandom(5 * MIB)
    c = lb.conn()
    r = c.request("POST", "/echo", headers=[("Content-Type", "application/octet-stream")], body=body)
    eq(r.status, 200, "status")
    e = r.json()
    eq(e["body_length"], len(body), "body_length seen by the backend")
    eq(e["body_sha256"], hashlib.sha256(body).hexdigest(), "body_sha256 seen by the backend")
    # the connection is still good for another request
    r = c.request("POST", "/echo", body=b"x" * 10)
    eq((r.status, r.json()["body_length"]), (200, 10), "second request on the connection")


def test_upload_chunked_5mib_with_extensions(t):
    lb, _ = _one(t)
    body = os.urandom(5 * MIB)
    enc = chunked(body, sizes=(1, 10, 4095, 4096, 65536, 300000, 17, 1000000), ext_every=2)
    c = lb.conn()
    c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) + enc)
    r = c.read_response()
    eq(r.status, 200, "status")
    e = r.json()
    eq(e["body_length"], len(body), "body_length seen by the backend")
    eq(e["body_sha256"], hashlib.sha256(body).hexdigest(), "body_sha256 seen by the backend")
    r = c.request("GET", "/")
    eq(r.status, 200, "next request on the same connection")


def test_upload_empty_body(t):
    lb, _ = _one(t)
    c = lb.conn()
    r = c.request("POST", "/echo", body=b"")
    eq(r.status, 200, "status")
    e = r.json()
    eq((e["body_length"], e["body_sha256"]), (0, hashlib.sha256(b"").hexdigest()), "empty body at the backend")
    c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n")
    e = c.read_response().json()
    eq(e["body_length"], 0, "empty chunked body at the backend")


@timeout(120)
def test_upload_streams_1gib_bounded_memory(t):
    size = (256 if t.asan else 1024) * MIB
    lb, _ = _one(t, timeouts={"backend": "20s", "client_idle": "60s"})
    block = random.Random(20251121).randbytes(MIB)
    want = {}
    key = "%s|%d" % (hashlib.sha256(block).hexdigest(), size)
    cached = _sha_cache().get(key)

    def hasher():
        if cached:  # computed from these same bytes by an earlier run
            want["sha"] = cached
            return
        h = hashlib.sha256()
        for _ in range(size // MIB):
            h.update(block)
        want["sha"] = h.hexdigest()
        _sha_cache_put(key, want["sha"])

    ht = threading.Thread(target=hasher, daemon=True)
    ht.start()
    c = lb.conn()
    sampler = RssSampler(lb.pid)
    err = []

    def sender():
        try:
            c.send(build_request("POST", "/echo", headers=[("Content-Length", str(size))]))
            mv = memoryview(block)
            for _ in range(size // MIB):
                c.sock.sendall(mv)
        except Exception as e:
            err.append(repr(e))

    st = threading.Thread(target=sender, daemon=True)
    t0 = time.monotonic()
    st.start()
    r = c.read_response(timeout=90 * t.slow)
    st.join(10)
    mx = sampler.stop()
    ht.join(60 * t.slow)
    eq(r.status, 200, "status")
    eq(err, [], "errors while sending")
    e = r.json()
    eq(e["body_length"], size, "body_length seen by the backend")
    eq(e["body_sha256"], want.get("sha"), "body_sha256 seen by the backend")
    grow = mx - (sampler.first_kb or 0)
    check(sampler.samples >= 5, "RSS sampled only %d times" % sampler.samples)
    check(grow < 64 * 1024, "lb RSS grew by %d KiB during a %d MiB upload (limit 64 MiB)" % (grow, size // MIB))
    if not t.asan:
        check(mx < 64 * 1024, "lb RSS reached %d KiB during a %d MiB upload (limit 64 MiB)" % (mx, size // MIB))
    print("uploaded %d MiB in %.1fs, lb max RSS %d KiB" % (size // MIB, time.monotonic() - t0, mx))


_CACHE = os.path.join(tempfile.gettempdir(), "lb-itest-sha256-cache.json")


def _sha_cache():
    """SHA-256 of big generated bodies, keyed by the block's own hash and the
    size: hashing 1 GiB in Python costs seconds of a CPU the proxy needs."""
    try:
        with open(_CACHE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _sha_cache_put(key, value):
    d = _sha_cache()
    d[key] = value
    tmp = "%s.%d" % (_CACHE, os.getpid())
    with open(tmp, "w") as f:
        json.dump(d, f)
    os.replace(tmp, _CACHE)


def _download(t, query, new_conn_each):
    lb, _ = _one(t)
    c = None
    for n in SIZES:
        if c is None or new_conn_each:
            c = lb.conn()
        chk = PatternChecker()
        r = c.request("GET", "/bytes/%d%s" % (n, query), sink=chk)
        eq(r.status, 200, "status for %d bytes" % n)
        eq(chk.n, n, "body length for /bytes/%d%s" % (n, query))
        check(chk.bad_at is None, "body of /bytes/%d%s differs from the pattern at byte %s" % (n, query, chk.bad_at))
        if r.framing == "length":
            eq(int(r.header("Content-Length")), n, "Content-Length")
        if new_conn_each:
            c.close()
    return r


def test_download_content_length_sizes(t):
    r = _download(t, "", new_conn_each=False)
    eq(r.framing, "length", "framing of a Content-Length response")


def test_download_chunked_sizes(t):
    _download(t, "?chunked=1", new_conn_each=False)


def test_download_close_delimited_sizes(t):
    _download(t, "?close=1", new_conn_each=True)


@timeout(90)
def test_download_streams_1gib_bounded_memory(t):
    size = (256 if t.asan else 1024) * MIB
    lb, _ = _one(t, timeouts={"client_idle": "60s"})
    c = lb.conn()
    sampler = RssSampler(lb.pid)
    chk = PatternChecker()
    t0 = time.monotonic()
    r = c.request("GET", "/bytes/%d" % size, sink=chk, timeout=60 * t.slow)
    mx = sampler.stop()
    eq(r.status, 200, "status")
    eq(chk.n, size, "bytes received")
    check(chk.bad_at is None, "body differs from the pattern at byte %s" % chk.bad_at)
    check(sampler.samples >= 5, "RSS sampled only %d times" % sampler.samples)
    grow = mx - (sampler.first_kb or 0)
    check(grow < 64 * 1024, "lb RSS grew by %d KiB during a %d MiB download (limit 64 MiB)" % (grow, size // MIB))
    if not t.asan:
        check(mx < 64 * 1024, "lb RSS reached %d KiB during a %d MiB download (limit 64 MiB)" % (mx, size // MIB))
    print("downloaded %d MiB in %.1fs, lb max RSS %d KiB" % (size // MIB, time.monotonic() - t0, mx))
