"""WebSocket upgrade through the proxy to lb-backend's /ws echo."""

import base64
import hashlib
import os
import struct

from harness import check, eq, ws_frame, ws_read_frame

SIZES = [0, 1, 2, 125, 126, 127, 1000, 4096, 65535, 65536, 70000, 131072]


def _upgrade(t, lb):
    c = lb.conn()
    key = base64.b64encode(os.urandom(16)).decode()
    c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key)
    r = c.read_response()
    eq(r.status, 101, "upgrade status")
    eq((r.header("Upgrade") or "").lower(), "websocket", "Upgrade header on the 101")
    check("upgrade" in (r.header("Connection") or "").lower(), "Connection on the 101: %r" % r.header("Connection"))
    acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    eq(r.header("Sec-WebSocket-Accept"), acc, "Sec-WebSocket-Accept")
    eq(r.body, b"", "body of the 101")
    return c


def test_websocket_echo_100_frames_and_close(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1]))
    c = _upgrade(t, lb)
    sent = 0
    for i in range(90):
        n = SIZES[i % len(SIZES)]
        opcode = 1 if i % 2 else 2
        payload = (b"txt%d-" % i * (n // 5 + 1))[:n] if opcode == 1 else os.urandom(n)
        c.send(ws_frame(opcode, payload))
        fin, op, got, masked = ws_read_frame(c)
        eq((fin, op, masked), (True, opcode, False), "echoed frame %d flags" % i)
        check(got == payload, "echoed frame %d (%d bytes) differs (got %d bytes)" % (i, n, len(got)))
        sent += 1
    # ten small frames in one write
    burst = [os.urandom(10 * k + 1) for k in range(10)]
    c.send(b"".join(ws_frame(2, p) for p in burst))
    for k, p in enumerate(burst):
        fin, op, got, masked = ws_read_frame(c)
        eq((op, got == p), (2, True), "burst frame %d echoed" % k)
        sent += 1
    eq(sent, 100, "frames echoed")
    c.send(ws_frame(8, struct.pack("!H", 1000) + b"bye"))
    fin, op, got, masked = ws_read_frame(c)
    eq(op, 8, "close frame answered")
    eq(got[:2], struct.pack("!H", 1000), "close code echoed")
    check(c.closed_within(3 * t.slow), "connection not closed after the close handshake")
