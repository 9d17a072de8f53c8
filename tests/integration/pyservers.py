"""
pyservers.py - backends written in Python, in threads, for precise faults.

PyServer(ctx, handler, port) listens on 127.0.0.1:port and runs
handler(conn, server) in a thread per accepted connection. It counts accepted
connections (.accepted) and complete requests (.requests, for handlers built
with http_handler). Handlers for the faults the tests need are below, and
LbBackendEmu is a stand-in for bin/lb-backend used only when that binary is not
built.
"""

import base64
import hashlib
import json
import re
import socket
import ssl
import threading
import time

from harness import pattern_bytes


class PeerGone(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, raw_head):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.body_len = 0
        self.body_sha = None

    def header(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


class ServerConn:
    def __init__(self, sock, server):
        self.sock = sock
        self.server = server
        self.buf = bytearray()
        self.requests = 0

    def _fill(self):
        if self.server.stopping.is_set():
            raise PeerGone()
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, OSError):
            raise PeerGone()
        if not data:
            raise PeerGone()
        self.buf += data

    def read_line(self):
        for _ in range(10000000):
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > 1 << 20:
                raise PeerGone()
            self._fill()
        raise PeerGone()

    def read_head(self):
        """The next request head, or PeerGone when the peer closes first."""
        for _ in range(10000000):
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                lines = head[:-4].split(b"\r\n")
                m = re.match(rb"^(\S+) (\S+) (HTTP/1\.[01])$", lines[0])
                if not m:
                    raise PeerGone()
                hs = []
                for ln in lines[1:]:
                    if b":" not in ln:
                        raise PeerGone()
                    n, v = ln.split(b":", 1)
                    hs.append((n.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
                return Request(m.group(1).decode(), m.group(2).decode(), m.group(3).decode(), hs, head)
            if len(self.buf) > 1 << 20:
                raise PeerGone()
            self._fill()
        raise PeerGone()

    def read_body(self, req, sink):
        te = req.header("Transfer-Encoding")
        cl = req.header("Content-Length")
        if te is not None:
            for _ in range(100000000):
                line = self.read_line()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise PeerGone()
                if size == 0:
                    for _ in range(1000):
                        if self.read_line() in (b"\r\n", b"\n"):
                            return
                    raise PeerGone()
                self._read_n(size, sink)
                if self.read_line() != b"\r\n":
                    raise PeerGone()
        elif cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise PeerGone()
            self._read_n(n, sink)

    def _read_n(self, n, sink):
        for _ in range(100000000):
            if n == 0:
                return
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_request(self, keep_body=True):
        req = self.read_head()
        h = hashlib.sha256()
        parts = []

        def sink(b):
            h.update(b)
            req.body_len += len(b)
            if keep_body and req.body_len <= 1 << 20:
                parts.append(b)

        self.read_body(req, sink)
        req.body = b"".join(parts)
        req.body_sha = h.hexdigest()
        self.requests += 1
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append(req)
        return req

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            raise PeerGone()

    def reset(self):
        """Close with RST."""
        import struct
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


class PyServer:
    def __init__(self, ctx, handler, port, name="py"):
        self.ctx = ctx
        self.handler = handler
        self.port = port
        self.name = name
        self.addr = "127.0.0.1:%d" % port
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests = 0
        self.seen = []
        self.stopping = threading.Event()
        self._socks = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(128)
        self.ls.settimeout(0.1)
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()

    def _accept_loop(self):
        while not self.stopping.is_set():  # bounded by stop()
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            with self.lock:
                self.accepted += 1
                self._socks.append(s)
            threading.Thread(target=self._run, args=(s,), daemon=True).start()

    def _run(self, s):
        c = ServerConn(s, self)
        try:
            self.handler(c, self)
        except PeerGone:
            pass
        except Exception:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._t.join(2)


class TlsPyServer(PyServer):
    """A PyServer that speaks TLS: each accepted connection does its handshake in its
    own thread, then runs the handler over the TLS socket. It records what the
    proxy did: .sni (the server name of every handshake, None without one),
    .handshakes, .resumed (handshakes that resumed a session), .failures (the
    error of each failed handshake) and .client_subjects (with client_ca: the
    subject of each client certificate)."""

    def __init__(self, ctx, handler, port, cert, key, client_ca=None, name="tls"):
        self.sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.sslctx.load_cert_chain(cert, key)
        self.sslctx.set_alpn_protocols(["http/1.1"])
        if client_ca:
            self.sslctx.load_verify_locations(client_ca)
            self.sslctx.verify_mode = ssl.CERT_REQUIRED
        self.sslctx.sni_callback = self._on_sni
        self.sni = []
        self.handshakes = 0
        self.resumed = 0
        self.failures = []
        self.client_subjects = []
        PyServer.__init__(self, ctx, handler, port, name=name)

    def _on_sni(self, sslobj, server_name, sslctx):
        with self.lock:
            self.sni.append(server_name)
        return None

    def _run(self, s):
        s.settimeout(5)
        try:
            ts = self.sslctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.failures.append(str(e))
            try:
                s.close()
            except OSError:
                pass
            return
        ts.settimeout(None)
        peer = ts.getpeercert()
        with self.lock:
            self.handshakes += 1
            if ts.session_reused:
                self.resumed += 1
            if peer:
                self.client_subjects.append(dict(x[0] for x in peer.get("subject", ())))
        PyServer._run(self, ts)


# --------------------------------------------------------------------------
# handlers


def response_bytes(status=200, headers=(), body=b"", reason="OK"):
    hs = list(headers)
    if not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    return ("HTTP/1.1 %d %s\r\n" % (status, reason)).encode() + \
        "".join("%s: %s\r\n" % (n, v) for n, v in hs).encode("latin-1") + b"\r\n" + body


def http_handler(respond):
    """Keep-alive HTTP server: respond(req, conn) returns the response bytes, or None to close."""

    def h(c, server):
        for _ in range(100000):
            req = c.read_request()
            out = respond(req, c)
            if out is None:
                return
            c.send(out)

    return h


def h_ok(body=b"ok\n", headers=()):
    return http_handler(lambda req, c: response_bytes(200, list(headers), body))


def h_garbage(c, server):
    c.read_head()
    c.send(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    _hold(c, server, 2)


def h_reset(c, server):
    c.read_head()
    c.reset()


def h_accept_close(c, server):
    c.sock.close()


def h_hang(c, server):
    c.read_head()
    _hold(c, server, 30)


def _hold(c, server, seconds):
    """Keep the connection open, answering nothing, until the peer closes, the
    server stops, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    c.sock.settimeout(0.1)
    while time.monotonic() < deadline and not server.stopping.is_set():
        try:
            if not c.sock.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def h_drip(body, pieces, gap_s):
    """Answer each request with a Content-Length response whose body comes in
    `pieces` parts, `gap_s` apart."""

    def respond(req, c):
        c.send(response_bytes(200, [("Content-Length", str(len(body)))], b""))
        step = (len(body) + pieces - 1) // pieces
        for i in range(pieces):
            time.sleep(gap_s)
            c.send(body[i * step:(i + 1) * step])
        return b""

    return http_handler(respond)


# --------------------------------------------------------------------------
# Python stand-in for bin/lb-backend (used only when the binary is not built)


class LbBackendEmu(PyServer):
    def __init__(self, ctx, name, port):
        self.active = 0
        PyServer.__init__(self, ctx, self._handle, port, name=name)

    def _handle(self, c, server):
        with self.lock:
            self.active += 1
        try:
            for _ in range(1000000):
                req = c.read_head()
                with self.lock:
                    self.requests += 1
                c.requests += 1
                if not self._serve(c, req):
                    return
        finally:
            with self.lock:
                self.active -= 1

    def _base_headers(self, req):
        hs = [("X-Backend", self.name)]
        rid = req.header("X-Request-Id")
        if rid is not None:
            hs.append(("X-Request-Id", rid))
        return hs

    def _serve(self, c, req):
        path, _, query = req.target.partition("?")
        q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        keep = req.version == "HTTP/1.1"
        conn_h = (req.header("Connection") or "").lower()
        if "close" in conn_h:
            keep = False
        if "keep-alive" in conn_h:
            keep = True
        if req.header("Expect", ) and req.header("Expect").lower() == "100-continue":
            c.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        h = hashlib.sha256()
        n = [0]

        def sink(b):
            h.update(b)
            n[0] += len(b)

        c.read_body(req, sink)
        hs = self._base_headers(req)
        if not keep:
            hs.append(("Connection", "close"))
        head_only = req.method == "HEAD"

        def send(status, body, extra=()):
            allh = hs + list(extra) + [("Content-Length", str(len(body)))]
            out = response_bytes(status, allh, b"" if head_only else body)
            c.send(out)

        m = re.match(r"^/bytes/(\d+)$", path)
        if path == "/":
            send(200, (self.name + "\n").encode(), [("Content-Type", "text/plain")])
        elif path == "/echo":
            body = json.dumps({
                "method": req.method, "path": req.target, "version": req.version,
                "headers": [[a, b] for a, b in req.headers], "body_length": n[0],
                "body_sha256": h.hexdigest(), "backend": self.name,
                "connection_requests": c.requests, "remote": "%s:%d" % c.sock.getpeername(),
            }).encode()
            send(200, body, [("Content-Type", "application/json")])
        elif m:
            total = int(m.group(1))
            if q.get("chunked") == "1":
                c.send(response_bytes(200, hs + [("Transfer-Encoding", "chunked")], b""))
                if not head_only:
                    off = 0
                    while off < total:
                        k = min(65536, total - off)
                        c.send(b"%x\r\n" % k + pattern_bytes(off, k) + b"\r\n")
                        off += k
                    c.send(b"0\r\n\r\n")
            elif q.get("close") == "1":
                c.send(b"HTTP/1.1 200 OK\r\n" + "".join("%s: %s\r\n" % (a, b) for a, b in hs).encode() + b"Connection: close\r\n\r\n")
                if not head_only:
                    off = 0
                    while off < total:
                        k = min(1 << 20, total - off)
                        c.send(pattern_bytes(off, k))
                        off += k
                return False
            else:
                c.send(response_bytes(200, hs + [("Content-Length", str(total))], b""))
                if not head_only:
                    off = 0
                    while off < total:
                        k = min(1 << 20, total - off)
                        c.send(pattern_bytes(off, k))
                        off += k
        elif re.match(r"^/status/\d{3}$", path):
            st = int(path[8:])
            if st in (204, 304):
                c.send(("HTTP/1.1 %d X\r\n" % st).encode() + "".join("%s: %s\r\n" % (a, b) for a, b in hs).encode() + b"\r\n")
            else:
                send(st, ("status %d\n" % st).encode())
        elif path.startswith("/sleep/"):
            time.sleep(int(path[7:]) / 1000.0)
            send(200, b"slept\n")
        elif path == "/__stats":
            with self.lock:
                body = json.dumps({"requests": self.requests, "connections": self.accepted,
                                   "active_connections": self.active}).encode()
            send(200, body, [("Content-Type", "application/json")])
        elif path == "/ws":
            key = req.header("Sec-WebSocket-Key") or ""
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            c.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\nX-Backend: %s\r\n\r\n" % (acc, self.name)).encode())
            self._ws_echo(c)
            return False
        else:
            send(404, b"not found\n")
        return keep

    def _ws_echo(self, c):
        import struct
        from harness import ws_frame, ws_mask
        for _ in range(1000000):
            while len(c.buf) < 2:
                c._fill()
            b0, b1 = c.buf[0], c.buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                while len(c.buf) < 4:
                    c._fill()
                n = struct.unpack("!H", bytes(c.buf[2:4]))[0]
                off = 4
            elif n == 127:
                while len(c.buf) < 10:
                    c._fill()
                n = struct.unpack("!Q", bytes(c.buf[2:10]))[0]
                off = 10
            while len(c.buf) < off + 4 + n:
                c._fill()
            key = bytes(c.buf[off:off + 4])
            payload = ws_mask(bytes(c.buf[off + 4:off + 4 + n]), key)
            del c.buf[:off + 4 + n]
            op = b0 & 0x0F
            c.send(ws_frame(op, payload, mask=False))
            if op == 8:
                return
