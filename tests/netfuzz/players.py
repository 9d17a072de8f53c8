"""
players.py - the two ends of a case: the client script, played against an lb
listener, and the scripted backend that lb forwards to.

Every wait here is a bounded poll and every loop has a bound: a case can never
hold a lane longer than the pauses it scripts plus READ_S (client) or HOLD_S
(backend).
"""

import re
import socket
import struct
import threading
import time

READ_S = 3.0  # the longest a client waits for lb to finish answering and close
HOLD_S = 2.0  # the longest a backend connection hangs, echoes or waits for a request
POLL_S = 0.05  # granularity of the waits above
MAX_HEAD = 1 << 20  # a forwarded request head larger than this ends the connection
MAX_REQUESTS = 200  # requests served on one backend connection


def reset_close(sock):
    """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def send_counted(sock, data, deadline):
    """Send data until the deadline; returns the number of bytes the kernel took
    and whether the peer is still there."""
    off = 0
    while off < len(data):  # bounded: every turn sends or meets the deadline
        left = deadline - time.monotonic()
        if left <= 0:
            return off, True
        sock.settimeout(left)
        try:
            off += sock.send(data[off:])
        except socket.timeout:
            return off, True
        except OSError:
            return off, False
    return off, True


# --------------------------------------------------------------------------
# client


class ClientResult:
    def __init__(self):
        self.sent = 0
        self.received = bytearray()
        self.refused = False  # lb did not accept the connection at all
        self.closed = False  # lb closed (FIN or RST) before READ_S ran out


def play_client(port, script):
    """Play one client script against 127.0.0.1:port."""
    res = ClientResult()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    except OSError:
        res.refused = True
        return res
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for data, pause in script["writes"]:
            if pause:
                time.sleep(pause / 1000.0)
            n, up = send_counted(s, data, time.monotonic() + 1.0)
            res.sent += n
            if not up or n < len(data):
                break  # lb closed on us or stopped reading; read what it said
        end = script["end"]
        if end in ("close", "reset"):
            _read(s, res, script["linger_ms"] / 1000.0)
            if end == "reset":
                reset_close(s)
            return res
        if end == "half-close":
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        _read(s, res, READ_S)
        return res
    finally:
        s.close()


def _read(s, res, seconds):
    """Read until lb closes or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:  # bounded by deadline
        left = deadline - time.monotonic()
        if left <= 0:
            return
        s.settimeout(min(left, POLL_S * 4))
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            res.closed = True
            return
        if not data:
            res.closed = True
            return
        res.received += data


STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r?\n")


def response_statuses(data):
    """Statuses of the responses at the start of what a client received, walked
    with their framing (Content-Length, chunked, no body). A walk that loses
    track stops there: this counts what lb answered, it does not judge it."""
    out = []
    pos = 0
    for _ in range(1000):  # bounded: a response per turn
        m = STATUS_LINE.match(data, pos)
        if not m:
            break
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            out.append(int(m.group(1)))
            break
        head = bytes(data[pos:end]).lower()
        out.append(int(m.group(1)))
        pos = end + 4
        cl = re.search(rb"\r\ncontent-length: *(\d{1,19})(?!\d)", head)
        if b"\r\ntransfer-encoding:" in head:
            pos = _skip_chunked(data, pos)
        elif cl and not data.startswith(b"HTTP/1.", pos):
            # a HEAD answer carries Content-Length and no body: the next
            # response follows at once
            pos += int(cl.group(1))
        if pos < 0 or pos >= len(data):
            break
    return out


def _skip_chunked(data, pos):
    """Position after a chunked body at pos, or -1 if it is not all there."""
    for _ in range(100000):  # bounded: a chunk per turn
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return -1
        try:
            size = int(bytes(data[pos:nl]).split(b";")[0], 16)
        except ValueError:
            return -1
        pos = nl + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return -1 if end < 0 else end + 4
        pos += size + 2
    return -1


# --------------------------------------------------------------------------
# scripted backend


class ScriptedBackend:
    """Two listening sockets on kernel-assigned loopback ports (the two
    backends of a lane's pool, so lb can retry on the other) that answer
    with the current case's plans. begin(plans) switches to a new case; the
    request counter that picks a plan restarts with it, whichever
    connection the requests come on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.plans = []
        self.nreq = 0
        self.sent = 0  # bytes written to lb, all cases
        self.socks = set()
        self.listeners = []
        self.threads = []
        for _ in range(2):
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(64)
            ls.settimeout(POLL_S * 2)
            self.listeners.append(ls)
            t = threading.Thread(target=self._accept_loop, args=(ls,), daemon=True)
            t.start()
            self.threads.append(t)
        self.ports = [ls.getsockname()[1] for ls in self.listeners]

    def begin(self, plans):
        with self.lock:
            self.plans = plans
            self.nreq = 0

    def _next_plan(self):
        with self.lock:
            plan = self.plans[min(self.nreq, len(self.plans) - 1)] if self.plans else None
            self.nreq += 1
            return plan

    def stop(self):
        self.stopping.set()
        for ls in self.listeners:
            ls.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(2)

    def _accept_loop(self, ls):
        while not self.stopping.is_set():  # bounded by stop()
            try:
                s, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        peer = _Peer(s, self.stopping)
        try:
            for _ in range(MAX_REQUESTS):
                head = peer.read_head()
                if head is None:
                    return
                plan = self._next_plan()
                if plan is None:
                    return
                if plan["after"] == "body" and not peer.read_body(head):
                    return
                for data, pause in plan["writes"]:
                    if pause:
                        time.sleep(pause / 1000.0)
                    n, up = send_counted(s, data, time.monotonic() + HOLD_S)
                    with self.lock:
                        self.sent += n
                    if not up:
                        return
                end = plan["end"]
                if end == "reset":
                    reset_close(s)
                    return
                if end == "hang":
                    peer.hold(False)
                if end == "echo":
                    with self.lock:
                        self.sent += peer.hold(True)
                if end != "keep":
                    return
        finally:
            with self.lock:
                self.socks.discard(s)
            s.close()


class _Peer:
    """Reads from lb on a backend connection, every wait bounded by HOLD_S."""

    def __init__(self, sock, stopping):
        self.sock = sock
        self.stopping = stopping
        self.buf = bytearray()
        sock.settimeout(POLL_S)

    def _fill(self):
        """More bytes into buf; False on EOF, reset, stop or HOLD_S of silence."""
        deadline = time.monotonic() + HOLD_S
        while not self.stopping.is_set() and time.monotonic() < deadline:  # bounded
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not data:
                return False
            self.buf += data
            return True
        return False

    def read_head(self):
        """The next request head (lowercased, without the blank line), or None."""
        while len(self.buf) <= MAX_HEAD:  # bounded: _fill grows buf or ends it
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i]).lower()
                del self.buf[:i + 4]
                return head
            if not self._fill():
                return None
        return None

    def _take(self, n):
        while len(self.buf) < n:  # bounded: _fill grows buf or ends it
            if not self._fill():
                return False
        del self.buf[:n]
        return True

    def _line(self):
        while True:  # bounded: _fill grows buf or ends it
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > 4096 or not self._fill():
                return None

    def read_body(self, head):
        """Consume the request body that lb forwards; False if it never completes."""
        if b"\r\ntransfer-encoding:" in head:
            for _ in range(100000):  # bounded: a chunk per turn
                line = self._line()
                if line is None:
                    return False
                try:
                    size = int(line.split(b";")[0], 16)
                except ValueError:
                    return False
                if size == 0:
                    for _ in range(100):  # trailer fields, then the blank line
                        t = self._line()
                        if t is None:
                            return False
                        if t == b"":
                            return True
                    return False
                if not self._take(size + 2):
                    return False
            return False
        m = re.search(rb"\r\ncontent-length: *(\d{1,19})(?!\d)", head)
        return self._take(int(m.group(1))) if m else True

    def hold(self, echo):
        """Stay on the connection without answering (or echoing what comes)
        until lb closes it or HOLD_S pass; returns the bytes echoed."""
        echoed = 0
        deadline = time.monotonic() + HOLD_S
        if echo and self.buf:
            echoed += send_counted(self.sock, bytes(self.buf), deadline)[0]
            self.sock.settimeout(POLL_S)
        self.buf.clear()
        while not self.stopping.is_set() and time.monotonic() < deadline:  # bounded
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if echo:
                echoed += send_counted(self.sock, data, deadline)[0]
                self.sock.settimeout(POLL_S)
        return echoed
