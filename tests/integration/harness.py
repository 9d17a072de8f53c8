"""
harness.py - black-box test harness for bin/lb (Python 3 standard library only).

A test is a function test_NAME(t) in tests/integration/test_*.py; run.py runs
each one in its own process and hands it a Ctx (`t`). Everything a test starts
through the Ctx (lb, lb-backend processes, Python servers, client sockets) is
stopped by t.cleanup(), which also checks that every lb exited 0 on SIGTERM and
that a sanitizer build logged no error.

Rules kept here: every wait is a bounded poll with a deadline, every loop is
bounded, and traffic goes to 127.0.0.1 only.
"""

import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

ASAN_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """The test cannot run in this environment (not: it failed). run.py says
    so on a `skip` line and counts it neither passed nor failed. Only for a
    missing tool the test cannot do without (headless Chromium, promtool)."""


TestSkipped = Skip


def skip(reason):
    """End the test as skipped, saying why; run.py counts it apart from passes."""
    raise Skip(reason)


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, actual))


def timeout(seconds):
    """Decorator: this test's own time limit (before the sanitizer factor)."""

    def deco(fn):
        fn.timeout = seconds
        return fn

    return deco


def wait_until(pred, timeout_s, interval=0.02, what="condition"):
    """Bounded poll: call pred() until it returns a true value or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout_s, what))
        time.sleep(interval)


def make_env():
    """The environment for running make from a test, without what an outer
    `make test` passes down to its sub-makes (its command-line variables)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def pattern_bytes(offset, n):
    """The lb-backend /bytes pattern: byte i is 'a' + i % 26."""
    start = offset % 26
    reps = (start + n) // 26 + 1
    return (bytes(range(97, 97 + 26)) * reps)[start:start + n]


_PAT_BIG = None


def _pat_big():
    global _PAT_BIG
    if _PAT_BIG is None:
        _PAT_BIG = bytes(range(97, 97 + 26)) * ((1 << 20) // 26 + 2)
    return _PAT_BIG


class PatternChecker:
    """A body sink that checks bytes against the /bytes pattern as they arrive."""

    def __init__(self):
        self.n = 0
        self.bad_at = None

    def __call__(self, data):
        if self.bad_at is None:
            big = _pat_big()
            pos = 0
            while pos < len(data):  # bounded: advances by >= 1 MiB - 26 per turn
                take = min(len(data) - pos, (1 << 20) - 26)
                s = (self.n + pos) % 26
                if big[s:s + take] != data[pos:pos + take]:
                    self.bad_at = self.n + pos
                    break
                pos += take
        self.n += len(data)


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread; .max_kb and .first_kb."""

    def __init__(self, pid):
        self.pid = pid
        self.first_kb = rss_kb(pid)
        self.max_kb = self.first_kb or 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.02):
            v = rss_kb(self.pid)
            if v is None:
                return
            self.samples += 1
            self.max_kb = max(self.max_kb, v)

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return self.max_kb


# --------------------------------------------------------------------------
# libconfig text from Python values


def _cfg_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, _cfg_value(x, indent + 1)) for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            return "(\n" + ",\n".join(pad + "  " + _cfg_value(x, indent + 1) for x in v) + "\n" + pad + ")"
        if isinstance(v, tuple):
            return "(" + ", ".join(_cfg_value(x, indent + 1) for x in v) + ")"
        return "[" + ", ".join(_cfg_value(x, indent + 1) for x in v) + "]"
    raise TypeError("cannot write %r to a config" % (v,))


class Raw:
    def __init__(self, text):
        self.text = text


def config_text(cfg):
    """A dict of top-level settings -> libconfig text. Lists of dicts become lists ( ),
    lists of scalars arrays [ ], dicts groups { }."""
    if isinstance(cfg, str):
        return cfg
    return "".join("%s = %s;\n" % (k, _cfg_value(v, 0)) for k, v in cfg.items())


# --------------------------------------------------------------------------
# HTTP client over a raw socket


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), as received
        self.raw_head = raw_head
        self.body = b""
        self.body_len = 0
        self.framing = "none"  # none | length | chunked | close
        self.trailers = []

    def header(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def json(self):
        try:
            return json.loads(self.body.decode())
        except Exception as e:
            raise TestFailure("response body is not JSON (%s): %r" % (e, self.body[:200]))

    def __repr__(self):
        return "<%s %d %s, %d body bytes>" % (self.version, self.status, self.reason, self.body_len)


class ConnClosed(Exception):
    pass


class HttpConn:
    """One client connection. Tests control the exact bytes sent; responses are read
    with full framing (Content-Length, chunked, close-delimited, no body)."""

    def __init__(self, ctx, port, host="127.0.0.1", timeout=None):
        self.ctx = ctx
        self.port = port
        self.timeout = timeout if timeout is not None else 5.0 * ctx.slow
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        ctx._conns.append(self)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def try_send(self, data):
        """Send what the peer takes; return False if it closed or reset meanwhile."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _recv(self, deadline, size):
        """One recv() within the deadline; b"" on EOF or reset."""
        if self.eof:
            return b""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("timed out reading from the proxy (have %d bytes: %r)" % (len(self.buf), bytes(self.buf[:200])))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(size)
        except socket.timeout:
            raise TestFailure("timed out reading from the proxy (have %d bytes: %r)" % (len(self.buf), bytes(self.buf[:200])))
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        return data

    def _fill(self, deadline, size=262144):
        data = self._recv(deadline, size)
        self.buf += data
        return bool(data)

    def _read_line(self, deadline, limit=65536):
        for _ in range(1000000):
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise TestFailure("line longer than %d bytes from the proxy" % limit)
            if not self._fill(deadline):
                raise ConnClosed("connection closed in the middle of a line (%r)" % bytes(self.buf[:100]))
        raise TestFailure("unreachable")

    def _read_exact(self, n, deadline, sink):
        left = n
        for _ in range(100000000):
            if left == 0:
                return
            if self.buf:
                take = min(left, len(self.buf))
                sink(bytes(self.buf[:take]))
                del self.buf[:take]
                left -= take
                continue
            data = self._recv(deadline, min(left, 1 << 20))
            if not data:
                raise ConnClosed("connection closed with %d of %d body bytes missing" % (left, n))
            sink(data)
            left -= len(data)

    def read_head(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        for _ in range(1000000):
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                return head
            if len(self.buf) > 1 << 20:
                raise TestFailure("response head larger than 1 MiB")
            if not self._fill(deadline):
                if self.buf:
                    raise ConnClosed("connection closed inside a response head: %r" % bytes(self.buf[:300]))
                raise ConnClosed("connection closed before a response arrived")
        raise TestFailure("unreachable")

    def read_response(self, head_request=False, timeout=None, sink=None):
        """Read one response (a 1xx is returned as a response of its own). With sink,
        body bytes go to sink(bytes) instead of .body."""
        t = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + t
        head = self.read_head(t)
        lines = head[:-4].split(b"\r\n")
        m = re.match(rb"^(HTTP/1\.[01]) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise TestFailure("bad status line from the proxy: %r" % lines[0])
        headers = []
        for ln in lines[1:]:
            if b":" not in ln:
                raise TestFailure("bad header line from the proxy: %r" % ln)
            n, v = ln.split(b":", 1)
            headers.append((n.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        r = Response(m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), headers, head)
        chunks = []
        if sink is None:
            sink_fn = chunks.append
        else:
            def sink_fn(b):
                sink(b)
        counter = [0]

        def count_sink(b):
            counter[0] += len(b)
            sink_fn(b)

        te = r.header("Transfer-Encoding")
        cl = r.header_all("Content-Length")
        if head_request or 100 <= r.status < 200 or r.status in (204, 304):
            r.framing = "none"
        elif te is not None:
            if te.lower().split(",")[-1].strip() != "chunked":
                raise TestFailure("response Transfer-Encoding %r not ending in chunked" % te)
            r.framing = "chunked"
            for _ in range(100000000):
                line = self._read_line(deadline)
                if not line.endswith(b"\r\n"):
                    raise TestFailure("chunk size line without CRLF: %r" % line)
                size_s = line[:-2].split(b";")[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    raise TestFailure("bad chunk size line from the proxy: %r" % line)
                if size == 0:
                    for _ in range(1000):
                        tl = self._read_line(deadline)
                        if tl == b"\r\n":
                            break
                        r.trailers.append(tl)
                    break
                self._read_exact(size, deadline, count_sink)
                crlf = self._read_line(deadline)
                if crlf != b"\r\n":
                    raise TestFailure("chunk data not followed by CRLF: %r" % crlf)
        elif cl:
            if len(set(cl)) != 1:
                raise TestFailure("several different Content-Length headers: %r" % cl)
            try:
                n = int(cl[0])
            except ValueError:
                raise TestFailure("bad Content-Length from the proxy: %r" % cl[0])
            r.framing = "length"
            self._read_exact(n, deadline, count_sink)
        else:
            r.framing = "close"
            if self.buf:
                count_sink(bytes(self.buf))
                self.buf.clear()
            for _ in range(100000000):
                data = self._recv(deadline, 1 << 20)
                if not data:
                    break
                count_sink(data)
        r.body_len = counter[0]
        if sink is None:
            r.body = b"".join(chunks)
        return r

    def request(self, method="GET", path="/", headers=None, body=None, version="HTTP/1.1",
                host="localhost", timeout=None, sink=None):
        self.send(build_request(method, path, headers, body, version, host))
        return self.read_response(head_request=(method == "HEAD"), timeout=timeout, sink=sink)

    def closed_within(self, seconds):
        """True when the peer closes (FIN or RST) within `seconds` with no more data;
        False on timeout. Data arriving meanwhile is an error."""
        if self.buf:
            raise TestFailure("unexpected bytes from the proxy: %r" % bytes(self.buf[:200]))
        if self.eof:
            return True
        deadline = time.monotonic() + seconds
        while True:  # bounded by deadline
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                return True
            if not data:
                self.eof = True
                return True
            raise TestFailure("unexpected bytes from the proxy: %r" % data[:200])

    def quiet_for(self, seconds):
        """True when nothing arrives and the connection stays open for `seconds`."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return False


def build_request(method="GET", path="/", headers=None, body=None, version="HTTP/1.1", host="localhost"):
    hs = list(headers or [])
    names = {n.lower() for n, _ in hs}
    if host is not None and "host" not in names and version == "HTTP/1.1":
        hs.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    out = "%s %s %s\r\n" % (method, path, version)
    out += "".join("%s: %s\r\n" % (n, v) for n, v in hs)
    out += "\r\n"
    data = out.encode("latin-1")
    if body:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def chunked(body, sizes=(1, 7, 100, 4096, 65536, 3), ext_every=3):
    """Encode body in chunks of the given sizes (cycled), with chunk extensions on some."""
    out = []
    pos = 0
    i = 0
    while pos < len(body):  # bounded: pos grows by >= 1
        n = min(sizes[i % len(sizes)], len(body) - pos)
        ext = ";ext=%d;q=\"x\"" % i if ext_every and i % ext_every == 0 else ""
        out.append(b"%x%s\r\n" % (n, ext.encode()))
        out.append(body[pos:pos + n])
        out.append(b"\r\n")
        pos += n
        i += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def header_of(pairs, name):
    """Values of header NAME in an /echo headers list [[n, v], ...]."""
    name = name.lower()
    return [v for n, v in pairs if n.lower() == name]


# --------------------------------------------------------------------------
# processes


def _tail(path, n=25):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no stderr file)"


def _port_accepts(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), timeout=0.2)
        s.close()
        return True
    except OSError:
        return False


class Lb:
    def __init__(self, ctx, cfg, args=(), name=None, check_exit=True):
        self.ctx = ctx
        self.name = name or "lb%d" % (len(ctx._lbs) + 1)
        self.cfg = cfg
        self.conf_path = os.path.join(ctx.tmp, self.name + ".conf")
        with open(self.conf_path, "w") as f:
            f.write(config_text(cfg))
        self.stderr_path = os.path.join(ctx.tmp, self.name + ".stderr")
        self.stdout_path = os.path.join(ctx.tmp, self.name + ".stdout")
        self.check_exit = check_exit
        self.port = None
        self.admin_port = None
        if isinstance(cfg, dict):
            ls = cfg.get("listeners") or []
            if ls:
                self.port = int(ls[0]["listen"].rsplit(":", 1)[1])
            if "admin" in cfg and "listen" in cfg["admin"] and not cfg["admin"]["listen"].startswith("unix:"):
                self.admin_port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen([ctx.lb_bin, "-c", self.conf_path] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, cwd=ctx.tmp)
        self.pid = self.proc.pid
        self.exit_code = None
        self.stopped = False
        self.terminated = False  # the test sent SIGTERM/SIGINT itself
        ctx._lbs.append(self)

    def wait_ready(self, ports=None):
        ports = [p for p in (ports or [self.port, self.admin_port]) if p]
        deadline = time.monotonic() + 5.0 * self.ctx.slow
        for p in ports:
            while not _port_accepts(p):  # bounded by deadline
                if self.proc.poll() is not None:
                    fail("%s exited with %s before listening on %d; stderr:\n%s" % (self.name, self.proc.returncode, p, self.stderr_tail()))
                if time.monotonic() > deadline:
                    fail("%s does not accept on port %d after %.1fs; stderr:\n%s" % (self.name, p, 5.0 * self.ctx.slow, self.stderr_tail()))
                time.sleep(0.02)
        if self.admin_port and self.admin_port in ports:
            # the admin answering means the main loop runs (signal handlers are
            # in place); test_sigterm_as_soon_as_listening_exits_0 checks the
            # earlier moment on purpose
            while True:  # bounded by deadline
                try:
                    if self.admin_get("/healthz").status == 200:
                        break
                except (OSError, ConnClosed, TestFailure):
                    pass
                if self.proc.poll() is not None:
                    fail("%s exited with %s; stderr:\n%s" % (self.name, self.proc.returncode, self.stderr_tail()))
                if time.monotonic() > deadline:
                    fail("%s admin /healthz not 200 after %.1fs; stderr:\n%s" % (self.name, 5.0 * self.ctx.slow, self.stderr_tail()))
                time.sleep(0.02)
        return self

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=25):
        return _tail(self.stderr_path, n)

    def conn(self, port=None, timeout=None):
        return HttpConn(self.ctx, port or self.port, timeout=timeout)

    def get(self, path="/", headers=None, host="localhost", port=None):
        c = self.conn(port)
        try:
            return c.request("GET", path, headers=(headers or []) + [("Connection", "close")], host=host)
        finally:
            c.close()

    def admin_get(self, path):
        c = HttpConn(self.ctx, self.admin_port)
        try:
            return c.request("GET", path, headers=[("Connection", "close")], host="127.0.0.1")
        finally:
            c.close()

    def stats(self):
        r = self.admin_get("/stats.json")
        eq(r.status, 200, "GET /stats.json status")
        return r.json()

    def backend_stats(self, pool, name):
        for p in self.stats().get("pools", []):
            if p.get("name") == pool:
                for b in p.get("backends", []):
                    if b.get("name") == name:
                        return b
        fail("no backend %s/%s in /stats.json" % (pool, name))

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.terminated = True
        self.proc.send_signal(sig)

    def stop(self, timeout_s=None):
        """SIGTERM and wait for exit; returns a list of problems (empty when clean)."""
        if self.stopped:
            return []
        self.stopped = True
        problems = []
        t = timeout_s if timeout_s is not None else 5.0 * self.ctx.slow
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(t)
            except subprocess.TimeoutExpired:
                problems.append("%s did not exit within %.1fs of SIGTERM" % (self.name, t))
                self.proc.kill()
                self.proc.wait(5)
        elif not self.terminated:
            problems.append("%s had already exited (status %s) before SIGTERM" % (self.name, self.proc.returncode))
        self.exit_code = self.proc.returncode
        self._err.close()
        self._out.close()
        if self.check_exit and self.exit_code != 0 and not problems:
            problems.append("%s exited with status %s after SIGTERM (expected 0)" % (self.name, self.exit_code))
        text = self.stderr_text()
        for pat in ASAN_PATTERNS:
            if pat in text:
                problems.append("%s stderr has %r" % (self.name, pat))
        return problems


class BackendProc:
    """A bin/lb-backend process."""

    def __init__(self, ctx, name, port, zone=None, control=False, host="127.0.0.1"):
        self.ctx = ctx
        self.name = name
        self.port = port
        self.host = host
        self.addr = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        self.stderr_path = os.path.join(ctx.tmp, "backend-%s.stderr" % name)
        args = [ctx.backend_bin, "--listen", self.addr, "--name", name]
        if zone:
            args += ["--zone", zone]
        self.control_port = None
        if control:
            self.control_port = ctx.port()
            args += ["--control", "127.0.0.1:%d" % self.control_port]
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err)
        ctx._backends.append(self)
        deadline = time.monotonic() + 5.0 * ctx.slow
        while True:  # bounded by deadline
            with open(self.stderr_path, "rb") as f:
                if b"listening on" in f.read():
                    break
            if self.proc.poll() is not None:
                fail("lb-backend %s exited with %s; stderr:\n%s" % (name, self.proc.returncode, _tail(self.stderr_path)))
            if time.monotonic() > deadline:
                fail("lb-backend %s did not say 'listening on' within 5s" % name)
            time.sleep(0.01)

    def stats_conn(self):
        return HttpConn(self.ctx, self.port, host=self.host)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        self._err.close()
        text = _tail(self.stderr_path, 200)
        return ["lb-backend %s stderr has %r" % (self.name, p) for p in ASAN_PATTERNS if p in text]


class Ctx:
    def __init__(self, slot, tmp, lb_bin, backend_bin, slow=1.0, asan=False, port_base=20000, ports_per_slot=20):
        self.slot = slot
        self.tmp = tmp
        self.lb_bin = lb_bin
        self.backend_bin = backend_bin
        self.slow = slow
        self.asan = asan
        self._next_port = port_base + slot * ports_per_slot
        self._port_end = self._next_port + ports_per_slot
        self._conns = []
        self._lbs = []
        self._backends = []
        self._servers = []
        self._cleanups = []

    # ports: this test's own range; a port is used only if nothing holds it now
    def port(self):
        while self._next_port < self._port_end:  # bounded by the range
            p = self._next_port
            self._next_port += 1
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
                s.listen(1)
                return p
            except OSError:
                continue
            finally:
                s.close()
        fail("test ran out of ports in its range")

    def use_py_backend(self):
        return self.backend_bin in ("", "py") or not os.path.exists(self.backend_bin)

    def backend(self, name, zone=None, control=False, host="127.0.0.1", port=None):
        """An lb-backend on a fresh port (the Python emulation when the binary is absent).
        HOST: another loopback address (127.0.0.2, ::1) with PORT shared by several
        backends, as DNS discovery gives one port for many addresses."""
        port = port or self.port()
        if self.use_py_backend():
            from pyservers import LbBackendEmu
            check(host == "127.0.0.1", "the Python stand-in for lb-backend listens on 127.0.0.1 only")
            b = LbBackendEmu(self, name, port)
            self._servers.append(b)
            return b
        return BackendProc(self, name, port, zone=zone, control=control, host=host)

    def server(self, handler, **kw):
        """A Python fault server (see pyservers.py)."""
        from pyservers import PyServer
        s = PyServer(self, handler, self.port(), **kw)
        self._servers.append(s)
        return s

    def config(self, backends=None, workers=1, pool=None, lb=None, timeouts=None, listener=None,
               pools=None, listeners=None, log=None, extra=None):
        """The minimal test config: one listener "web" on a fresh port to pool "api"
        holding BACKENDS (objects with .name/.port, or dicts). Override any part."""
        t = {"connect": "1s", "client_header": "1s", "backend": "1s", "client_idle": "5s", "drain": "2s"}
        t.update(timeouts or {})
        if pools is None:
            bl = []
            for b in backends or []:
                if isinstance(b, dict):
                    bl.append(b)
                else:
                    bl.append({"name": b.name, "address": "127.0.0.1:%d" % b.port})
            p = {"name": "api", "health": {"type": "off"}, "backends": bl}
            p.update(pool or {})
            pools = [p]
        if listeners is None:
            ln = {"name": "web", "listen": "127.0.0.1:%d" % self.port(), "pool": "api"}
            ln.update(listener or {})
            listeners = [ln]
        lbs = {"workers": workers}
        lbs.update(lb or {})
        cfg = {
            "lb": lbs,
            "log": {"level": "info"},
            "admin": {"listen": "127.0.0.1:%d" % self.port()},
            "timeouts": t,
            "listeners": listeners,
            "pools": pools,
        }
        if log:
            cfg["log"].update(log)
        cfg.update(extra or {})
        return cfg

    def lb(self, cfg, args=(), ready=True, check_exit=True):
        lb = Lb(self, cfg, args=args, check_exit=check_exit)
        if ready:
            lb.wait_ready()
        return lb

    def run_lb(self, args, timeout_s=10, cwd=None):
        """Run lb to completion (for -t, -v); returns (exit code, stdout+stderr text)."""
        p = subprocess.run([self.lb_bin] + list(args), cwd=cwd or self.tmp, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s * self.slow)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def on_cleanup(self, fn):
        self._cleanups.append(fn)

    def cleanup(self):
        problems = []
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as e:  # cleanup must go on
                problems.append("cleanup: %r" % e)
        for c in self._conns:
            c.close()
        for lb in self._lbs:
            problems += lb.stop()
        for s in self._servers:
            try:
                s.stop()
            except Exception as e:
                problems.append("stopping server: %r" % e)
        for b in self._backends:
            problems += b.stop()
        return problems

    def lb_tails(self):
        out = []
        for lb in self._lbs:
            out.append("--- %s stderr (tail) ---\n%s" % (lb.name, lb.stderr_tail()))
        return "\n".join(out)


# --------------------------------------------------------------------------
# small shared assertions


def assert_proxy_error(r, status, what=""):
    """A response the proxy generated itself: the status, a small body, and a
    Content-Length that matches it."""
    eq(r.status, status, "status %s" % what)
    cl = r.header("Content-Length")
    check(cl is not None, "proxy error %d has no Content-Length (%s) head=%r" % (status, what, r.raw_head))
    eq(int(cl), len(r.body), "Content-Length of the proxy's %d body" % status)
    check(len(r.body) <= 4096, "proxy error %d body is %d bytes, expected a small one" % (status, len(r.body)))


def ws_frame(opcode, payload, mask=True, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + ws_mask(payload, key)


def ws_mask(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_read_frame(conn, timeout=None):
    """Read one frame from an HttpConn's stream: (fin, opcode, payload, masked)."""
    deadline = time.monotonic() + (timeout if timeout is not None else conn.timeout)

    def need(n):
        for _ in range(10000000):
            if len(conn.buf) >= n:
                return
            if not conn._fill(deadline):
                raise ConnClosed("connection closed inside a WebSocket frame")

    need(2)
    b0, b1 = conn.buf[0], conn.buf[1]
    n = b1 & 0x7F
    off = 2
    if n == 126:
        need(4)
        n = struct.unpack("!H", bytes(conn.buf[2:4]))[0]
        off = 4
    elif n == 127:
        need(10)
        n = struct.unpack("!Q", bytes(conn.buf[2:10]))[0]
        off = 10
    masked = bool(b1 & 0x80)
    key = None
    if masked:
        need(off + 4)
        key = bytes(conn.buf[off:off + 4])
        off += 4
    need(off + n)
    payload = bytes(conn.buf[off:off + n])
    del conn.buf[: off + n]
    if masked:
        payload = ws_mask(payload, key)
    return bool(b0 & 0x80), b0 & 0x0F, payload, masked
