#!/usr/bin/env python3
"""graceful-shutdown: SIGTERM to lb under load, with slow requests in flight.

Setup: b1 b2, timeouts.drain 10s, access log on (JSON, one line per request).
1. 20 tracked clients each send GET /sleep/3000 (3 s at the backend) on a
   connection of their own; lb's /stats.json shows all 20 in flight.
   5 more clients made one quick request and keep their connection idle.
2. lb-load: open loop, 1000 req/s of GET /sleep/100 for 6 s (about 100 in flight
   at any moment), up to 300 connections.
3. 1.5 s later: SIGTERM to lb.
PASS when:
  - the 20 slow requests all complete with 200, the whole body and
    "Connection: close";
  - the 5 idle keep-alive connections are closed by lb within 0.5 s;
  - new connections are refused within 0.5 s of the signal, while the drain
    is still going on, and the admin /healthz answers 503 meanwhile;
  - lb exits with status 0, within timeouts.drain, and within 1.5 s of the
    last slow response (1 s of that is lb's linger for the client's FIN);
  - every request lb took was answered: the access log has as many lines as
    the clients got responses, all 2xx; lb-load saw no 5xx, no timeout and
    no broken response (its connect errors and resets are requests sent after
    the signal, when lb no longer accepts; they are reported).
"""
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

SLOW = 20
IDLE = 5
SLOW_MS = 3000
DRAIN_S = 10
RATE = 1000
TERM_AFTER = 1.5


def read_response(sock, deadline):
    """Read one HTTP/1.1 response with Content-Length: (status, headers, body) or raise."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline or len(buf) > 65536:
            raise TimeoutError("no complete head in time")
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("closed before the head (%d bytes)" % len(buf))
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, val = line.partition(":")
        hdrs[k.strip().lower()] = val.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("body incomplete in time (%d of %d bytes)" % (len(body), n))
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("closed in the body (%d of %d bytes)" % (len(body), n))
        body += d
    return status, hdrs, body[:n]


def main(sc):
    v = sc.v
    b1, b2 = sc.backends(2)
    access = os.path.join(sc.work, "access.log")
    lb = sc.lb([b1, b2], timeouts={"drain": "%ds" % DRAIN_S}, access_log=access,
               pool={"health": {"interval": "200ms", "timeout": "1s"}})
    port = lb.port

    # idle keep-alive clients: one request each, then wait for lb to close
    idle = []
    for i in range(IDLE):
        s = socket.create_connection((lib.HOST, port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: scenario\r\n\r\n")
        st, _, _ = read_response(s, time.monotonic() + 5)
        if st != 200:
            raise lib.ScenarioError("idle client %d: status %d" % (i, st))
        idle.append(s)

    slow_res = [None] * SLOW
    slow_conns = []
    for i in range(SLOW):
        s = socket.create_connection((lib.HOST, port), timeout=5)
        slow_conns.append(s)

    def slow_client(i):
        s = slow_conns[i]
        try:
            s.sendall(b"GET /sleep/%d HTTP/1.1\r\nHost: scenario\r\n\r\n" % SLOW_MS)
            st, h, body = read_response(s, time.monotonic() + SLOW_MS / 1000 + DRAIN_S + 5)
            slow_res[i] = (st, h.get("connection", ""), body, sc.t())
        except (OSError, ValueError) as e:
            slow_res[i] = ("error: %s" % e, "", b"", sc.t())
        finally:
            s.close()

    threads = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(SLOW)]
    for th in threads:
        th.start()
    t_sent = sc.t()

    def all_in_flight():
        st = lb.stats()
        return sum(b["inflight"] for b in st["pools"][0]["backends"]) >= SLOW
    lib.wait_until(all_in_flight, 3, interval=0.02, what="the %d slow requests to be in flight" % SLOW)
    v.event(sc.t(), "%d slow requests in flight (sent at t=%.3f)" % (SLOW, t_sent))

    load = sc.load(lb, "/sleep/100", rate=RATE, seconds=6, conns=300)
    sc.sleep_until(load.t_start + TERM_AFTER)
    inflight = sum(b["inflight"] for b in lb.stats()["pools"][0]["backends"])
    lb.sample_sched()
    t_term = sc.t()
    lb.proc.signal(signal.SIGTERM)
    v.event(t_term, "SIGTERM to lb (%d requests in flight)" % inflight)

    # new connections: refused from when on, while lb still drains?
    t_refused, alive_then = None, False
    for _ in range(200):  # at most 2 s
        try:
            socket.create_connection((lib.HOST, port), timeout=0.2).close()
        except ConnectionRefusedError:
            t_refused = sc.t()
            alive_then = lb.proc.alive()
            break
        except OSError:
            pass
        time.sleep(0.01)
    health = None
    if lb.proc.alive():
        try:
            health = lib.http_request(lb.admin_port, "GET", "/healthz", timeout=1)[0]
        except OSError as e:
            health = "error: %s" % e

    # idle connections: closed by lb?
    idle_closed = []
    for s in idle:
        try:
            s.settimeout(max(0.01, t_term + 2 - sc.t()))
            d = s.recv(1)
            idle_closed.append(sc.t() - t_term if d == b"" else None)
        except OSError:
            idle_closed.append(sc.t() - t_term)  # a reset closes it too
        finally:
            s.close()

    rc = lb.proc.wait(DRAIN_S + 3)
    t_exit = sc.t()
    if rc is None:
        v.event(t_exit, "lb still running %.0f s after SIGTERM" % (DRAIN_S + 3))
    else:
        v.event(t_exit, "lb exited (%s)" % lib.exit_desc(rc))
    for th in threads:
        th.join(max(0.1, t_term + DRAIN_S + 5 - sc.t()))
    r = load.wait()

    ok_slow = [x for x in slow_res if x and x[0] == 200 and len(x[2]) > 0]
    closing = [x for x in ok_slow if x[1].lower() == "close"]
    last_slow = max([x[3] for x in slow_res if x] or [t_term])
    lines = []
    try:
        with open(access) as f:
            for line in f:
                lines.append(json.loads(line))
    except (OSError, ValueError) as e:
        raise lib.ScenarioError("access log: %s" % e)
    by_status = {}
    for rec in lines:
        by_status[rec["status"]] = by_status.get(rec["status"], 0) + 1
    client_got = r["requests"] + len([x for x in slow_res if x and isinstance(x[0], int)]) + IDLE
    sc.note_events(lb, r"stopping|drain|stopped|cut")

    lib.load_figures(v, r)
    v.fig("fault", "SIGTERM at t=%.3f s with %d requests in flight (%d slow ones, %d ms each)" % (
        t_term, inflight, SLOW, SLOW_MS))
    v.fig("slow requests", "%d/%d completed with 200 (%d with Connection: close); last at +%.3f s; %s" % (
        len(ok_slow), SLOW, len(closing), last_slow - t_term,
        "; ".join(sorted(set(str(x[0]) for x in slow_res if x and x[0] != 200))) or "no failure"))
    v.fig("idle connections", "closed after %s s" % ", ".join(
        "%.3f" % x if x is not None else "never" for x in idle_closed))
    v.fig("new connections", "refused from +%s s (lb %s then); admin /healthz during the drain: %s" % (
        "%.3f" % (t_refused - t_term) if t_refused else "never", "still draining" if alive_then else "gone",
        health))
    v.fig("lb exit", "%s at +%.3f s" % (lib.exit_desc(rc), t_exit - t_term))
    v.fig("access log", "%d lines (%s); clients got %d responses" % (
        len(lines), ", ".join("%s: %d" % kv for kv in sorted(by_status.items())), client_got))

    v.check("the %d slow in-flight requests completed (200, whole body, Connection: close)" % SLOW,
            len(closing) == SLOW, "%d of %d" % (len(closing), SLOW))
    v.check("idle keep-alive connections closed within 0.5 s",
            all(x is not None and x <= 0.5 for x in idle_closed),
            "%d of %d" % (len([x for x in idle_closed if x is not None and x <= 0.5]), IDLE))
    v.check("new connections refused within 0.5 s, during the drain",
            t_refused is not None and t_refused - t_term <= 0.5 and alive_then,
            "+%.3f s, lb %s" % (t_refused - t_term, "draining" if alive_then else "already gone")
            if t_refused else "never refused")
    v.check("admin /healthz answers 503 during the drain", health == 503, str(health))
    v.check("lb exits 0 within timeouts.drain and within 1.5 s of the last slow response",
            rc == 0 and t_exit - t_term <= DRAIN_S and t_exit - last_slow <= 1.5,
            "%s at +%.3f s, %.3f s after the last slow response" % (
                lib.exit_desc(rc), t_exit - t_term, t_exit - last_slow))
    bad = [s for s in by_status if not 200 <= s < 300]
    v.check("every request lb took was answered (access log lines == responses, all 2xx)",
            len(lines) == client_got and not bad, "%d lines, %d responses, non-2xx %s" % (
                len(lines), client_got, {s: by_status[s] for s in bad}))
    broken = r["status"]["5xx"] + r["errors"]["timeout"] + r["errors"]["parse"] + r["errors"]["other"]
    v.check("lb-load: no 5xx, timeout or broken response", broken == 0, "%d (%s)" % (broken, lib.fmt_errors(r)))
    v.summary = "slow %d/%d ok, exit %s at +%.2f s, refused +%s s" % (
        len(closing), SLOW, rc, t_exit - t_term, "%.3f" % (t_refused - t_term) if t_refused else "never")


if __name__ == "__main__":
    lib.run("graceful-shutdown", "SIGTERM under load with slow requests in flight", main)
