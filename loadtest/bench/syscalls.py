#!/usr/bin/env python3
"""System calls per request of a proxy (bin/lb, HAProxy, nginx), counted with
perf stat on the syscalls:sys_enter_* tracepoints of the proxy process alone.

    python3 loadtest/bench/syscalls.py [lb|haproxy|nginx ...]

One worker each, two bin/lb-backend backends, all on 127.0.0.1. Per proxy and
workload (keep-alive: 50 connections; new-conn: a new connection per request,
Connection: close, 50 at once): 2000 requests to warm up, then N requests
(SYSCALLS_N, 20000) under perf; SYSCALLS_WORKLOADS=new-conn runs one. Prints the total per request and the calls
that make up most of it, then (SYSCALLS_CPU_N requests more, 100000, without
perf) the proxy's user and system CPU time per request from /proc. Needs root (or perf_event_paranoid <= 1) and perf.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "loadtest", "scenarios"))
import lib  # noqa: E402  (free_ports, wait_until)

BIN = os.environ.get("BIN", os.path.join(ROOT, "bin"))
N = int(os.environ.get("SYSCALLS_N", "20000"))
CPU_N = int(os.environ.get("SYSCALLS_CPU_N", "100000"))  # requests of the user/sys split (0: none)
HZ = os.sysconf("SC_CLK_TCK")
WORKLOADS = [w for w in [("keep-alive", []), ("new-conn", ["--new-conn"])]
             if w[0] in os.environ.get("SYSCALLS_WORKLOADS", "keep-alive,new-conn").split(",")]

LB_CONF = """lb: { workers = 1; };
log: { level = "warn"; access = "off"; };
listeners = ( { name = "web"; listen = "127.0.0.1:%(port)d"; pool = "api"; } );
pools = ( { name = "api"; balance = "round-robin"; health = { type = "off"; };
    backends = ( { name = "b1"; address = "127.0.0.1:%(b1)d"; },
                 { name = "b2"; address = "127.0.0.1:%(b2)d"; } ); } );
"""
HAPROXY_CONF = """global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 60s
    timeout server 30s
frontend web
    bind 127.0.0.1:%(port)d
    default_backend api
backend api
    balance roundrobin
    server b1 127.0.0.1:%(b1)d
    server b2 127.0.0.1:%(b2)d
"""
NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 1000000;
    upstream api {
        server 127.0.0.1:%(b1)d;
        server 127.0.0.1:%(b2)d;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


def wait_port(port, proc, seconds=10):
    """Until PORT accepts a connection; exits if PROC dies or the time runs out."""

    def accepting():
        if proc.poll() is not None:
            sys.exit(f"syscalls.py: {proc.args[0]} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        lib.wait_until(accepting, seconds, interval=0.05, what=f"a listener on port {port}")
    except lib.ScenarioError as e:
        sys.exit(f"syscalls.py: {e}")


def start_proxy(name, d, ports):
    conf = dict(ports, dir=d)
    if name == "lb":
        path = os.path.join(d, "lb.conf")
        open(path, "w").write(LB_CONF % conf)
        cmd = [os.path.join(BIN, "lb"), "-c", path]
    elif name == "haproxy":
        path = os.path.join(d, "haproxy.cfg")
        open(path, "w").write(HAPROXY_CONF % conf)
        cmd = ["haproxy", "-db", "-f", path]
    else:
        path = os.path.join(d, "nginx.conf")
        open(path, "w").write(NGINX_CONF % conf)
        cmd = ["nginx", "-p", d, "-c", path]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(ports["port"], p)
    return p


def load(port, n, extra):
    url = f"http://127.0.0.1:{port}" + os.environ.get("SYSCALLS_PATH", "/")
    cmd = [os.path.join(BIN, "lb-load"), url, "-c", "50", "-n", str(n)] + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=120)


def measure(pid, port, extra):
    out = tempfile.mktemp(suffix=".perf")
    perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e", "syscalls:sys_enter_*",
                             "-p", str(pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # perf attaches to every tracepoint before the run starts
    load(port, N, extra)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
    counts = {}
    for line in open(out):
        f = line.strip().split(",")
        m = re.match(r"syscalls:sys_enter_(\w+)", f[2] if len(f) > 2 else "")
        if m and f[0].isdigit() and int(f[0]):
            counts[m.group(1)] = int(f[0])
    os.unlink(out)
    return counts


def cpu_ticks(pid):
    """User and system clock ticks of every thread of PID."""
    user = system = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        user += int(f[11])
        system += int(f[12])
    return user, system


def cpu_split(pid, port, extra):
    """User and system CPU per request over CPU_N requests, without perf attached."""
    u0, s0 = cpu_ticks(pid)
    load(port, CPU_N, extra)
    u1, s1 = cpu_ticks(pid)
    per = 1e6 / HZ / CPU_N
    return (u1 - u0) * per, (s1 - s0) * per


def main(argv):
    proxies = argv or ["lb", "haproxy", "nginx"]
    d = tempfile.mkdtemp(prefix="syscalls-")
    ports = dict(zip(("port", "b1", "b2"), lib.free_ports(3)))
    backs = []
    try:
        for b in ("b1", "b2"):
            backs.append(subprocess.Popen([os.path.join(BIN, "lb-backend"), "--listen",
                                           f"127.0.0.1:{ports[b]}", "--name", b],
                                          stdout=subprocess.DEVNULL))
            wait_port(ports[b], backs[-1])
        for name in proxies:
            p = start_proxy(name, d, ports)
            try:
                for wl, extra in WORKLOADS:
                    load(ports["port"], 2000, extra)
                    c = measure(p.pid, ports["port"], extra)
                    total = sum(c.values()) / N
                    top = sorted(c.items(), key=lambda kv: -kv[1])[:8]
                    parts = " ".join(f"{k}={v / N:.2f}" for k, v in top)
                    print(f"{name:8} {wl:10} {total:5.2f} syscalls/request  {parts}", flush=True)
                    if CPU_N:
                        u, k = cpu_split(p.pid, ports["port"], extra)
                        print(f"{name:8} {wl:10} cpu: user {u:.1f} us/request, system {k:.1f} "
                              f"us/request ({CPU_N} requests, no perf)", flush=True)
            finally:
                p.terminate()
                p.wait(timeout=10)
    finally:
        for b in backs:
            b.terminate()
            b.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
