#!/usr/bin/env python3
"""Black-box checks of bin/lb-backend: every endpoint, every fault, the
control API, framing edge cases and bad input. Python 3 stdlib only.

    loadtest/backend/selftest.py [--bin bin/lb-backend] [-k SUBSTRING] [--big]

Each check starts its own backend on port 0 (it reads the port from the
"listening on" line), every socket has a timeout, and the whole run is
bounded. --big adds the 1 GiB upload and download checks. Exit status 0
when all checks pass.
"""
import argparse
import base64
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BIN = "bin/lb-backend"
TIMEOUT = 5.0


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def eq(got, want, msg):
    if got != want:
        raise Fail("%s: got %r, want %r" % (msg, got, want))


def pattern(off, n):
    return bytes(97 + (off + i) % 26 for i in range(n))


class Backend:
    def __init__(self, *args, name="b1", listen="127.0.0.1:0", control=False):
        self.err = tempfile.TemporaryFile()
        argv = [BIN, "--listen", listen, "--name", name] + list(args)
        if control:
            argv += ["--control", "127.0.0.1:0"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.addrs, self.control = [], None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.err.seek(0)
            text = self.err.read().decode()
            self.addrs = re.findall(r"listening on (\S+)", text)
            m = re.search(r"control on (\S+)", text)
            if self.addrs and (not control or m):
                self.control = m and m.group(1)
                break
            check(self.proc.poll() is None, "backend exited: %s" % text)
            time.sleep(0.01)
        check(self.addrs, "backend did not say 'listening on'")
        self.port = port_of(self.addrs[0])

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail("backend ignored SIGTERM")
        text = self.stderr()
        check("ERROR: AddressSanitizer" not in text and "runtime error" not in text,
              "sanitizer report:\n" + text)
        eq(self.proc.returncode, 0, "exit status after SIGTERM")

    def conn(self, addr=None):
        return Conn(addr or self.addrs[0])

    def get(self, path, **kw):
        with self.conn() as c:
            return c.request("GET", path, **kw)

    def ctl(self, query):
        with Conn(self.control or self.addrs[0]) as c:
            r = c.request("GET", "/__control?" + query)
        return r, json.loads(r.body) if r.status in (200, 400) else None

    def stats(self):
        with Conn(self.control or self.addrs[0]) as c:
            return json.loads(c.request("GET", "/__stats").body)


def port_of(addr):
    return int(addr.rsplit(":", 1)[1]) if not addr.startswith("unix:") else 0


def connect(addr, timeout=TIMEOUT):
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(addr[5:])
        return s
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    s.connect((host, int(port)))
    return s


class Response:
    def __init__(self, status, headers, body, raw_chunks=None):
        self.status, self.headers, self.body, self.chunks = status, headers, body, raw_chunks

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def build(method, path, headers=(), body=None, version="HTTP/1.1", host=True):
    h = [("Host", "test")] if host else []
    h += list(headers)
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in h):
        h.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, path, version) + "".join("%s: %s\r\n" % kv for kv in h) + "\r\n"
    return head.encode() + (body or b"")


def chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


class Conn:
    def __init__(self, addr, timeout=TIMEOUT):
        self.sock = connect(addr, timeout)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        return status, headers

    def response(self, method="GET"):
        status, headers = self.head()
        r = Response(status, headers, b"")
        if status == 100:
            return r
        if method == "HEAD" or status in (101, 204, 304):
            return r
        te, cl = r.header("Transfer-Encoding"), r.header("Content-Length")
        if te:
            eq(te, "chunked", "transfer-encoding")
            r.chunks = []
            while True:
                n = int(self.line(), 16)
                if n == 0:
                    eq(self.line(), b"", "end of chunked body")
                    break
                r.chunks.append(n)
                r.body += self.take(n)
                eq(self.take(2), b"\r\n", "chunk end")
        elif cl is not None:
            r.body = self.take(int(cl))
        else:
            try:
                while True:
                    self.fill()
            except EOFError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def request(self, method, path, headers=(), body=None, version="HTTP/1.1"):
        self.send(build(method, path, headers, body, version))
        return self.response(method)

    def closed(self, timeout=2.0):
        """The peer closed: EOF (or a reset) within timeout, no bytes first."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)
        check(d == b"", "unexpected bytes %r" % d)
        return True


# --- checks -------------------------------------------------------------------


def t_default(b):
    r = b.get("/anything?x=1", headers=[("X-Request-Id", "rid-1")])
    eq((r.status, r.body), (200, b"b1\n"), "default answer")
    eq(r.header("X-Backend"), "b1", "X-Backend")
    eq(r.header("X-Zone"), "none", "X-Zone")
    eq(r.header("X-Request-Id"), "rid-1", "X-Request-Id")
    eq(r.header("Content-Length"), "3", "Content-Length")
    eq(r.header("Connection"), None, "no Connection header on HTTP/1.1 keep-alive")


def t_zone():
    b = Backend("--zone", "eu-1")
    try:
        eq(b.get("/").header("X-Zone"), "eu-1", "X-Zone")
    finally:
        b.stop()


def t_keepalive(b):
    with b.conn() as c:
        for i in range(1, 4):
            e = json.loads(c.request("GET", "/echo").body)
            eq(e["connection_requests"], i, "connection_requests")
        r = c.request("GET", "/", headers=[("Connection", "close")])
        eq(r.header("Connection"), "close", "Connection: close answered")
        check(c.closed(), "closed after Connection: close")
    with b.conn() as c:
        r = c.request("GET", "/", version="HTTP/1.0")
        eq(r.header("Connection"), "close", "HTTP/1.0 default")
        check(c.closed(), "HTTP/1.0 closes")
    with b.conn() as c:
        for _ in range(2):
            r = c.request("GET", "/", headers=[("Connection", "keep-alive")], version="HTTP/1.0")
            eq(r.header("Connection"), "keep-alive", "HTTP/1.0 keep-alive")


def t_pipeline(b):
    body = os.urandom(3000)
    wire = (build("GET", "/", [("X-Request-Id", "1")]) +
            build("POST", "/echo?a=1", [("X-Request-Id", "2")], body) +
            build("POST", "/echo", [("Transfer-Encoding", "chunked"), ("X-Request-Id", "3")]) + chunked(body) +
            build("GET", "/bytes/100000", [("X-Request-Id", "4")]) +
            build("GET", "/status/204", [("X-Request-Id", "5")]) +
            build("HEAD", "/bytes/10", [("X-Request-Id", "6")]) +
            build("GET", "/bytes/70000?chunked=1", [("X-Request-Id", "7")]) +
            build("GET", "/echo", [("X-Request-Id", "8")]))
    with b.conn() as c:
        c.send(wire)
        c.sock.shutdown(socket.SHUT_WR)  # half-close: everything must still be answered
        rs = [c.response("HEAD" if i == 5 else "GET") for i in range(8)]
        check(c.closed(), "closed after the half-closed client's last answer")
    eq([r.header("X-Request-Id") for r in rs], [str(i) for i in range(1, 9)], "answer order")
    eq(rs[0].body, b"b1\n", "1")
    e = json.loads(rs[1].body)
    eq((e["path"], e["body_length"], e["body_sha256"]), ("/echo?a=1", 3000, hashlib.sha256(body).hexdigest()), "2")
    e = json.loads(rs[2].body)
    eq((e["body_length"], e["body_sha256"]), (3000, hashlib.sha256(body).hexdigest()), "3 (chunked)")
    eq(rs[3].body, pattern(0, 100000), "4")
    eq((rs[4].status, rs[4].body), (204, b""), "5")
    eq((rs[5].header("Content-Length"), rs[5].body), ("10", b""), "6 (HEAD)")
    eq(rs[6].body, pattern(0, 70000), "7 (chunked)")
    check(max(rs[6].chunks) <= 16384, "chunks up to 16 KiB: %r" % rs[6].chunks)
    eq(json.loads(rs[7].body)["connection_requests"], 8, "8")


def t_pipeline_bytewise(b):
    """The same pipeline fed one byte at a time."""
    wire = build("POST", "/echo", [("Transfer-Encoding", "chunked")]) + chunked(b"hello world", 3) + \
        build("GET", "/x") + build("POST", "/echo", body=b"abc")
    with b.conn() as c:
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
        e1, r2, e3 = json.loads(c.response().body), c.response(), json.loads(c.response().body)
    eq((e1["body_length"], e1["body_sha256"]), (11, hashlib.sha256(b"hello world").hexdigest()), "1")
    eq(r2.body, b"b1\n", "2")
    eq(e3["body_length"], 3, "3")


def t_echo(b):
    body = b"x" * 100
    hdrs = [("X-One", "1"), ("x-two", 'quote " back \\ slash'), ("X-One", "again"), ("X-Latin", "caf\xe9")]
    with b.conn() as c:
        c.send(build("PUT", "/echo?q=%20z", hdrs, body).replace(b"caf\xc3\xa9", b"caf\xe9"))
        r = c.response()
        local = "%s:%d" % c.sock.getsockname()[:2]
    eq(r.header("Content-Type"), "application/json", "content type")
    e = json.loads(r.body)
    eq(e["method"], "PUT", "method")
    eq(e["path"], "/echo?q=%20z", "path")
    eq(e["version"], "HTTP/1.1", "version")
    eq(e["headers"], [["Host", "test"], ["X-One", "1"], ["x-two", 'quote " back \\ slash'], ["X-One", "again"],
                      ["X-Latin", "caf\u00e9"], ["Content-Length", "100"]], "headers in order")
    eq((e["body_length"], e["body_sha256"]), (100, hashlib.sha256(body).hexdigest()), "body")
    eq((e["backend"], e["connection_requests"], e["remote"]), ("b1", 1, local), "backend, count, remote")
    e = json.loads(b.get("/echo").body)
    eq((e["body_length"], e["body_sha256"]), (0, hashlib.sha256(b"").hexdigest()), "no body")
    with b.conn() as c:
        r = c.request("HEAD", "/echo")
        check(int(r.header("Content-Length")) > 100 and r.body == b"", "HEAD /echo")
        eq(c.request("GET", "/").body, b"b1\n", "after HEAD")
    # a head of ~15 KiB of quotes escapes to ~30 KiB: more than the out-buffer
    big = [("X-Q%d" % i, '"' * 1000) for i in range(15)]
    with b.conn() as c:
        e = json.loads(c.request("GET", "/echo", big).body)
        eq(e["headers"][1:], [[k, v] for k, v in big], "escaped big head")
        # with a body behind it too
        e = json.loads(c.request("POST", "/echo", big, b"y" * 50000).body)
        eq((e["body_length"], e["body_sha256"]), (50000, hashlib.sha256(b"y" * 50000).hexdigest()), "big head + body")


def t_bytes(b):
    with b.conn() as c:
        for n in (0, 1, 26, 27, 16384, 16385, 200000):
            eq(c.request("GET", "/bytes/%d" % n).body, pattern(0, n), "/bytes/%d" % n)
            r = c.request("GET", "/bytes/%d?chunked=1" % n)
            eq((r.header("Transfer-Encoding"), r.body), ("chunked", pattern(0, n)), "/bytes/%d?chunked=1" % n)
    for n in (0, 5, 100000):
        with b.conn() as c:
            r = c.request("GET", "/bytes/%d?close=1" % n)
            eq((r.header("Content-Length"), r.header("Connection"), r.body), (None, "close", pattern(0, n)), "close=1")
    with b.conn() as c:
        r = c.request("GET", "/bytes/10?chunked=1", version="HTTP/1.0")
        eq((r.header("Content-Length"), r.body), ("10", pattern(0, 10)), "HTTP/1.0 gets Content-Length")
    for bad in ("/bytes/x", "/bytes/", "/bytes/1099511627777", "/bytes/-1"):
        eq(b.get(bad).status, 400, bad)
    with b.conn() as c:
        eq(c.request("HEAD", "/bytes/1099511627776").header("Content-Length"), "1099511627776", "2^40")


def t_status(b):
    with b.conn() as c:
        for s in (200, 201, 302, 404, 418, 500, 503, 599):
            r = c.request("GET", "/status/%d" % s)
            eq(r.status, s, "status")
            check(r.body.startswith(b"%d " % s), "status body %r" % r.body)
        for s in (204, 304):
            r = c.request("GET", "/status/%d" % s)
            eq((r.status, r.header("Content-Length")), (s, None), "no body for %d" % s)
        eq(c.request("GET", "/").body, b"b1\n", "framing intact after 204/304")
        for bad in ("/status/99", "/status/600", "/status/100", "/status/abc"):
            eq(c.request("GET", bad).status, 400, bad)


def t_sleep_drip(b):
    t0 = time.monotonic()
    eq(b.get("/sleep/300").status, 200, "sleep")
    dt = time.monotonic() - t0
    check(0.29 <= dt < 1.0, "/sleep/300 took %.3fs" % dt)
    t0 = time.monotonic()
    with b.conn() as c:
        c.send(build("GET", "/drip/5/100"))
        c.head()
        times = []
        for _ in range(5):
            c.take(1)
            times.append(time.monotonic() - t0)
    check(times[-1] - times[0] >= 0.38, "drip spacing %r" % times)
    # other connections are served while one sleeps
    with b.conn() as slow:
        slow.send(build("GET", "/sleep/1000"))
        t0 = time.monotonic()
        eq(b.get("/").status, 200, "served during another's sleep")
        check(time.monotonic() - t0 < 0.5, "not blocked by /sleep")
        eq(slow.response().status, 200, "sleep answer")


def ws_frame(op, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        h = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        h = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return h + payload
    key = os.urandom(4)
    return h + key + bytes(p ^ key[i % 4] for i, p in enumerate(payload))


def ws_read(c):
    b0, b1 = c.take(2)
    check(not b1 & 0x80, "server frames are unmasked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", c.take(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.take(8))[0]
    return b0 & 0x80, b0 & 0x0F, c.take(n)


def ws_open(b):
    c = b.conn()
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(build("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
    r = c.response()
    eq(r.status, 101, "upgrade")
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    eq(r.header("Sec-WebSocket-Accept"), want, "accept key")
    return c


def t_websocket(b):
    c = ws_open(b)
    with c:
        c.send(ws_frame(1, b"hello"))
        eq(ws_read(c), (0x80, 1, b"hello"), "text echo")
        big = os.urandom(200000)
        c.send(ws_frame(2, big))
        eq(ws_read(c), (0x80, 2, big), "binary 64-bit length echo")
        mid = os.urandom(300)
        c.send(ws_frame(2, mid))
        eq(ws_read(c), (0x80, 2, mid), "16-bit length echo")
        c.send(ws_frame(1, b"frag", fin=False) + ws_frame(9, b"ping!") + ws_frame(0, b"ment"))
        eq(ws_read(c), (0, 1, b"frag"), "first fragment")
        eq(ws_read(c), (0x80, 10, b"ping!"), "pong between fragments")
        eq(ws_read(c), (0x80, 0, b"ment"), "continuation")
        c.send(ws_frame(10, b"unsolicited") + ws_frame(1, b""))
        eq(ws_read(c), (0x80, 1, b""), "pong dropped, empty frame echoed")
        wire = ws_frame(1, b"bytewise")
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
        eq(ws_read(c), (0x80, 1, b"bytewise"), "frame fed byte by byte")
        c.send(ws_frame(8, struct.pack("!H", 1000) + b"bye"))
        eq(ws_read(c), (0x80, 8, struct.pack("!H", 1000) + b"bye"), "close echoed")
        check(c.closed(), "closed after close")
    with ws_open(b) as c:
        c.send(ws_frame(1, b"unmasked", mask=False))
        eq(ws_read(c), (0x80, 8, struct.pack("!H", 1002)), "1002 for an unmasked frame")
        check(c.closed(), "closed after protocol error")
    eq(b.get("/ws").status, 400, "/ws without upgrade")
    eq(b.get("/ws", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")]).status, 400, "no key")


def t_health_and_stats():
    b = Backend("--error-rate", "1", "--latency", "300ms")
    try:
        t0 = time.monotonic()
        r = b.get("/healthz")
        eq((r.status, r.body), (200, b"ok\n"), "healthz unaffected by request faults")
        check(time.monotonic() - t0 < 0.25, "healthz not delayed by latency")
        r, f = b.ctl("health=503&health_delay=200&error_rate=0&latency=0")
        eq((f["health"], f["health_delay"]), (503, 200), "control answer")
        t0 = time.monotonic()
        eq(b.get("/healthz").status, 503, "health=503")
        check(time.monotonic() - t0 >= 0.19, "health_delay")
        b.ctl("reset=1")
        for p in ("/", "/status/503", "/status/404", "/echo"):
            b.get(p)
        b.get("/healthz")
        s = b.stats()
        eq((s["requests"], s["health_checks"]), (4, 1), "requests and health checks counted apart")
        eq(s["responses"], {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 1}, "responses")
        eq((s["name"], s["active_connections"]), ("b1", 1), "name, active (this one)")
        check(s["connections"] >= 6 and s["bytes_in"] > 0 and s["bytes_out"] > 0, "counters %r" % s)
    finally:
        b.stop()


def t_control(b):
    r, f = b.ctl("")
    eq(f, {"latency": "0ms", "error_rate": 0, "error_status": 500, "reset_rate": 0, "hang": 0,
           "refuse": 0, "slow_body": 0, "health": 200, "health_delay": 0, "close_after": 0,
           "expect": "continue"}, "defaults")
    r, f = b.ctl("latency=lognormal:5ms:50ms&error-rate=0.25&error_status=503&slow_body=1000&expect=ignore")
    eq((f["latency"], f["error_rate"], f["error_status"], f["slow_body"], f["expect"]),
       ("lognormal:5ms:50ms", 0.25, 503, 1000, "ignore"), "set")
    for bad in ("nope=1", "error_rate=2", "latency=5parsecs", "health=99", "close_after=-1", "a=%zz",
                "latency=lognormal:50ms:5ms", "hang=maybe"):
        r, f = b.ctl("error_rate=0&" + bad)
        eq(r.status, 400, bad)
        check("error" in f, "error message for %s" % bad)
    r, f = b.ctl("")
    eq(f["error_rate"], 0.25, "a rejected query changes nothing")
    r, f = b.ctl("reset=1&latency=1s")
    eq((f["latency"], f["error_rate"], f["slow_body"]), ("1000ms", 0, 0), "reset, then the other keys")
    b.ctl("reset=1")


def non_loopback_ip():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def t_control_loopback_only():
    ip = non_loopback_ip()
    if ip is None:
        print("    (skipped: no non-loopback address)")
        return
    b = Backend(listen="0.0.0.0:0")
    try:
        with Conn("%s:%d" % (ip, b.port)) as c:
            eq(c.request("GET", "/__control?hang=1").status, 403, "control from %s" % ip)
            eq(c.request("GET", "/__stats").status, 200, "stats from anywhere")
        eq(b.get("/").status, 200, "no change made")
    finally:
        b.stop()


def t_latency():
    b = Backend("--latency", "100ms")
    try:
        t0 = time.monotonic()
        b.get("/")
        dt = time.monotonic() - t0
        check(0.099 <= dt < 0.5, "fixed latency %.3f" % dt)
        t0 = time.monotonic()
        b.get("/__stats")
        check(time.monotonic() - t0 < 0.09, "no latency for /__stats")
        b.ctl("latency=lognormal:5ms:50ms")
        ds = []
        with b.conn() as c:
            for _ in range(300):
                t0 = time.monotonic()
                c.request("GET", "/")
                ds.append((time.monotonic() - t0) * 1000)
        ds.sort()
        p50, p90 = ds[150], ds[270]
        check(3.5 < p50 < 8, "lognormal p50 %.1fms" % p50)
        check(15 < p90 < 45, "lognormal p90 %.1fms (expect ~ 21ms)" % p90)
    finally:
        b.stop()


def t_errors_resets():
    b = Backend("--error-rate", "0.5", "--error-status", "503", "--seed", "7")
    try:
        n503 = 0
        with b.conn() as c:
            for _ in range(400):
                r = c.request("GET", "/")
                if r.status == 503:
                    n503 += 1
                    eq(r.header("X-Fault"), "error", "X-Fault on injected errors")
        check(150 < n503 < 250, "error_rate 0.5: %d of 400" % n503)
        eq(b.stats()["injected"]["errors"], n503, "counted")
        b.ctl("error_rate=0&reset_rate=1")
        with b.conn() as c:
            c.send(build("GET", "/"))
            try:
                d = c.sock.recv(100)
                raise Fail("expected a reset, got %r" % d)
            except ConnectionResetError:
                pass
        b.ctl("reset_rate=0.3")
        resets = 0
        for _ in range(200):
            with b.conn() as c:
                try:
                    c.request("GET", "/")
                except (ConnectionResetError, EOFError):
                    resets += 1
        check(30 < resets < 90, "reset_rate 0.3: %d of 200" % resets)
        eq(b.stats()["injected"]["resets"], resets + 1, "resets counted")
    finally:
        b.stop()


def t_hang_refuse():
    b = Backend(control=True)
    try:
        b.ctl("hang=1")
        with b.conn() as c:
            c.send(build("GET", "/"))
            c.sock.settimeout(0.5)
            try:
                d = c.sock.recv(100)
                raise Fail("hang answered %r" % d)
            except socket.timeout:
                pass
            eq(b.stats()["injected"]["hangs"], 1, "hang counted")
            eq(b.get("/__stats").status, 200, "admin endpoints answer during hang")
            b.ctl("hang=0")
            eq(b.get("/").status, 200, "hang=0")
        b.ctl("refuse=1")
        try:
            connect(b.addrs[0], 1).close()
            raise Fail("connected while refused")
        except ConnectionRefusedError:
            pass
        eq(b.stats()["requests"], 1, "control listener works while refused")
        b.ctl("refuse=0")
        eq(b.get("/").status, 200, "refuse=0 reopens the same port")
        with b.conn() as c:  # the control listener serves only admin endpoints
            pass
        with Conn(b.control) as c:
            eq(c.request("GET", "/").status, 404, "control listener: admin endpoints only")
    finally:
        b.stop()


def t_slow_body_close_after():
    b = Backend("--slow-body", "2000")
    try:
        t0 = time.monotonic()
        r = b.get("/bytes/1000")
        dt = time.monotonic() - t0
        eq(r.body, pattern(0, 1000), "throttled body")
        check(0.45 < dt < 1.0, "1000 bytes at 2000 B/s took %.3fs" % dt)
        t0 = time.monotonic()
        e = b.get("/echo")
        check(len(e.body) > 200 and time.monotonic() - t0 > 0.05, "echo throttled too")
        b.ctl("slow_body=0&close_after=2")
        with b.conn() as c:
            eq(c.request("GET", "/").header("Connection"), None, "first")
            eq(c.request("GET", "/").header("Connection"), "close", "second announces close")
            check(c.closed(), "closed after 2")
    finally:
        b.stop()


def t_expect(b):
    with b.conn() as c:
        c.send(build("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "5")]))
        r = c.response()
        eq(r.status, 100, "100 Continue first")
        c.send(b"hello")
        eq(json.loads(c.response().body)["body_length"], 5, "then the answer")
    b.ctl("expect=ignore")
    try:
        with b.conn() as c:
            c.send(build("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "5")]))
            c.sock.settimeout(0.3)
            try:
                d = c.sock.recv(100)
                raise Fail("expect=ignore sent %r" % d)
            except socket.timeout:
                pass
            c.sock.settimeout(TIMEOUT)
            c.send(b"hello")
            eq(c.response().status, 200, "answer after the body")
    finally:
        b.ctl("expect=continue")


def t_bad_input(b):
    cases = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\nHost: x\n\n",
             b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
             b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
             b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    for wire in cases:
        with b.conn() as c:
            c.send(wire)
            r = c.response()
            eq((r.status, r.header("Connection")), (400, "close"), "bad input %r" % wire[:40])
            check(c.closed(), "closed after 400")
    with b.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        eq(c.response().status, 431, "huge head")
        check(c.closed(), "closed after 431")
    with b.conn() as c:
        c.send(build("GET", "/", [("X-H%d" % i, "v") for i in range(200)]))
        eq(c.response().status, 431, "too many headers")
    rnd = random.Random(1)
    for i in range(300):
        with b.conn() as c:
            wire = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
            if i % 2:
                wire = b"GET /echo HTTP/1.1\r\nHost: x\r\n" + wire
            try:
                c.send(wire)
                c.sock.shutdown(socket.SHUT_WR)
                c.sock.settimeout(2)
                while c.sock.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    eq(b.get("/").status, 200, "alive after garbage")


def t_idle_timeout():
    b = Backend("--idle-timeout", "300ms")
    try:
        with b.conn() as c:
            c.request("GET", "/")
            t0 = time.monotonic()
            check(c.closed(2), "idle connection closed")
            check(0.25 < time.monotonic() - t0 < 1.5, "after ~300ms")
    finally:
        b.stop()


def t_listeners():
    path = tempfile.mktemp(prefix="lb-backend-", suffix=".sock")
    b = Backend("--listen", "unix:" + path, "--listen", "[::1]:0", "--threads", "2", control=True)
    try:
        eq(len(b.addrs), 3, "three listeners %r" % b.addrs)
        for a in b.addrs:
            with Conn(a) as c:
                eq(c.request("GET", "/").body, b"b1\n", a)
        with Conn(b.addrs[1]) as c:
            e = json.loads(c.request("GET", "/echo").body)
            eq(e["remote"], "unix", "unix peer")
            eq(c.request("GET", "/__control").status, 200, "unix peers may control")
        conns = [b.conn() for _ in range(20)]  # spread over both threads
        for c in conns:
            eq(c.request("GET", "/").status, 200, "threads")
        b.ctl("refuse=1")
        time.sleep(0.1)
        for a in (b.addrs[0], b.addrs[2], b.addrs[1]):
            try:
                connect(a, 1).close()
                raise Fail("connected to %s while refused" % a)
            except (ConnectionRefusedError, FileNotFoundError):
                pass
        for c in conns:  # open connections are not affected
            eq(c.request("GET", "/").status, 200, "existing connection while refused")
            c.sock.close()
        b.ctl("refuse=0")
        time.sleep(0.1)
        for a in b.addrs:
            for _ in range(4):
                with Conn(a) as c:
                    eq(c.request("GET", "/").status, 200, "reopened %s" % a)
        s = b.stats()
        check(s["requests"] >= 40, "stats summed over threads: %r" % s)
    finally:
        b.stop()
    check(not os.path.exists(path), "unix socket removed on exit")


def t_cli():
    for args in ([], ["--listen", "127.0.0.1:0"], ["--name", "x"], ["--listen", "nope", "--name", "x"],
                 ["--listen", "127.0.0.1:0", "--name", "bad name"], ["--listen", "127.0.0.1:0", "--name", "x", "--bogus", "1"],
                 ["--listen", "127.0.0.1:0", "--name", "x", "--latency", "fast"],
                 ["--listen", "127.0.0.1:0", "--name", "x", "--threads", "0"]):
        p = subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
        eq(p.returncode, 2, "exit status for %r" % args)
        check(b"usage:" in p.stderr, "usage for %r" % args)
    b = Backend()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            p = subprocess.run([BIN, "--listen", "127.0.0.1:%d" % s.getsockname()[1], "--name", "x"],
                               capture_output=True, timeout=5)
            eq(p.returncode, 1, "address in use")
    finally:
        b.stop()
    b = Backend()
    b.proc.send_signal(signal.SIGINT)
    eq(b.proc.wait(5), 0, "SIGINT exit status")


def t_big():
    b = Backend()
    try:
        n = 1 << 30
        with b.conn() as c:
            c.sock.settimeout(120)
            c.send(build("GET", "/bytes/%d" % n))
            c.head()
            h, left, off = hashlib.sha256(), n, 0
            while left:
                d, c.buf = (c.buf, b"") if c.buf else (c.sock.recv(min(left, 1 << 20)), b"")
                check(d, "short body")
                check(d[:1] == bytes([97 + off % 26]), "pattern at %d" % off)
                h.update(d)
                left -= len(d)
                off += len(d)
        block = pattern(0, 26 * 40000)
        want = hashlib.sha256()
        left = n
        while left:
            k = min(left, len(block))
            want.update(block[:k])
            left -= k
        eq(h.hexdigest(), want.hexdigest(), "1 GiB download")
        zero = bytes(1 << 20)
        with b.conn() as c:
            c.sock.settimeout(120)
            c.send(build("POST", "/echo", [("Content-Length", str(n))]))
            for _ in range(1024):
                c.send(zero)
            e = json.loads(c.response().body)
        eq(e["body_sha256"], "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14", "1 GiB upload")
    finally:
        b.stop()


SHARED = [t_default, t_keepalive, t_pipeline, t_pipeline_bytewise, t_echo, t_bytes, t_status, t_sleep_drip,
          t_websocket, t_control, t_expect, t_bad_input]
OWN = [t_zone, t_health_and_stats, t_control_loopback_only, t_latency, t_errors_resets, t_hang_refuse,
       t_slow_body_close_after, t_idle_timeout, t_listeners, t_cli]


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("-k", default="")
    ap.add_argument("--big", action="store_true")
    a = ap.parse_args()
    BIN = a.bin
    failed = 0
    shared = Backend(control=True)
    for t in SHARED + OWN + ([t_big] if a.big else []):
        if a.k not in t.__name__:
            continue
        t0 = time.monotonic()
        try:
            t(shared) if t in SHARED else t()
            print("ok    %-28s %.2fs" % (t.__name__, time.monotonic() - t0))
        except Exception as e:  # noqa: a failed check or an unexpected error both fail the test
            failed += 1
            print("FAIL  %-28s %s: %s" % (t.__name__, type(e).__name__, e))
    try:
        shared.stop()
    except Fail as e:
        failed += 1
        print("FAIL  shared backend: %s" % e)
    print("%d failed" % failed if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
