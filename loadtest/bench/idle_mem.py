#!/usr/bin/env python3
"""idle_mem.py - memory a proxy holds per idle keep-alive client connection.

Opens N client connections to 127.0.0.1:PORT, sends one `GET /` on each and
reads its response (so each connection has served a request and is idle in
keep-alive), then measures the proxy's RSS (every PID given, summed) and
divides the growth by N. Connections are opened with at most 16 requests in
flight, so the buffers a proxy keeps for later requests (every one of them
has pools) stay at that level; a warm-up of the same kind first (200
connections, closed again) fills those pools and caches, so that what is
measured is the connections themselves. Run it against a freshly
started proxy: memory freed by earlier connections would be reused.

    idle_mem.py --port 18400 --pid 1234 [--pid 1235] [-n 10000] [--json]

Python 3 standard library only; loopback only. Every wait is bounded.
"""

import argparse
import json
import resource
import selectors
import socket
import sys
import time


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def open_idle(port, n, deadline):
    """n connections, each with one request answered; returns the sockets."""
    socks = []
    sel = selectors.DefaultSelector()
    pending = {}
    batch = 16  # requests in flight at once: the proxies' buffer pools stay small
    i = 0
    while i < n or pending:
        if time.monotonic() > deadline:
            raise SystemExit("idle_mem: timed out with %d of %d connections done" % (len(socks), n))
        while i < n and len(pending) < batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("127.0.0.1", port))
            s.sendall(REQ)
            s.setblocking(False)
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
            i += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit("idle_mem: the proxy closed a connection before answering")
            buf = pending[s] + data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                pending[s] = buf
                continue
            head = buf[:head_end].decode("latin-1").lower()
            clen = 0
            for line in head.split("\r\n")[1:]:
                if line.startswith("content-length:"):
                    clen = int(line.split(":", 1)[1])
            if len(buf) - head_end - 4 < clen:
                pending[s] = buf
                continue
            if not head.startswith("http/1.1 200"):
                raise SystemExit("idle_mem: unexpected answer %r" % head[:40])
            sel.unregister(s)
            del pending[s]
            socks.append(s)
    sel.close()
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before each RSS reading")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.n + a.warmup + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        if min(need, hard) < need:
            a.n = max(100, hard - a.warmup - 100)
    deadline = time.monotonic() + 120
    for s in open_idle(a.port, a.warmup, deadline):
        s.close()
    time.sleep(a.settle)
    before = rss_kb(a.pid)
    socks = open_idle(a.port, a.n, deadline)
    time.sleep(a.settle)
    after = rss_kb(a.pid)
    per = (after - before) / len(socks)
    res = {"connections": len(socks), "rss_kb_before": before, "rss_kb_after": after,
           "kib_per_conn": round(per, 3)}
    for s in socks:
        s.close()
    if a.json:
        print(json.dumps(res))
    else:
        print("%d idle connections: RSS %d -> %d KiB, %.2f KiB per connection"
              % (len(socks), before, after, per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
