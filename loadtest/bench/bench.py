#!/usr/bin/env python3
"""Helper of loadtest/bench.sh (standard library only).

  bench.py ports BASE N          print N free TCP ports on 127.0.0.1, from BASE up
  bench.py rate RUNS WORKLOAD PROXY FRACTION
                                 FRACTION x the median req/s of PROXY in WORKLOAD
                                 (an integer; exit 1 when there is none)
  bench.py progress RUNS I N T   the progress line of the last run (T: seconds since the start)
  bench.py tree PID              the process and its descendants: pids, summed RSS
  bench.py storm PID SIG SECONDS INTERVAL_MS
                                 send SIG to PID every INTERVAL_MS for SECONDS,
                                 watching its process tree; JSON on stdout
  bench.py storm-progress STORMS T   the progress line of the last storm
  bench.py stime HOST:PORT new|reuse SECONDS
                                 openssl s_time -www / for SECONDS: a new TLS connection
                                 (full handshake, or resumed with -reuse) and one
                                 HTTP/1.0 request each; one line "BENCH {json}" like
                                 report.lua's, plus "reused" (resumed handshakes)
  bench.py idle HOST:PORT N PID tls|plain
                                 after a warm-up of 200 connections, open N keep-alive
                                 connections (TLS or not) one after the other, one
                                 request each, hold them idle: PID's (and its
                                 descendants') RSS growth per connection, as JSON
  bench.py report RUNS OUTDIR [STORMS [IDLE]]
                                 medians, ratios to HAProxy, the tables (stdout,
                                 OUTDIR/bench-STAMP.txt, latest.txt) and the JSON
                                 (OUTDIR/bench-STAMP.json, latest.json)

RUNS holds one JSON object per measured run, written by bench.sh:
  {"workload", "proxy", "round", "cpu_ns", "cpu_source", "client", "rate", "out": {...}}
where "out" is the client's result: the line loadtest/bench/report.lua prints
(client "wrk") or lb-load's --json object (client "lb-load").
STORMS holds one JSON object per reload storm (mode and proxy), written by bench.sh.
IDLE holds one JSON object per proxy and mode: "bench.py idle"'s result, with "proxy".

Two comparisons come out of one run: the peers doing the header work lb does
(proxies "haproxy" and "nginx", ratios to "haproxy"), and the peers in their plain
configuration ("haproxy-plain", "nginx-plain", ratios to "haproxy-plain"). "lb" is
in both; "lb-nosplice" (lb.splice = "off") and "lb-base" are in the first.
The settings and the start time come from the environment (BENCH_*).
"""
import hashlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time

WORKLOAD_ORDER = ["keepalive", "newconn", "64k", "openloop", "tls-full", "tls-resumed", "tls-keepalive"]
STORM_ORDER = ["newconn", "keepalive"]
IDLE_ORDER = ["plain", "tls"]
PROXY_ORDER = ["lb", "lb-nosplice", "lb-base", "haproxy", "nginx", "haproxy-plain", "nginx-plain"]
REF = "haproxy"
REF_PLAIN = "haproxy-plain"
# the two tables: (title, proxies, reference)
TABLES = [
    ("peers doing lb's header work (X-Forwarded-For/-Proto, X-Request-Id)",
     ["lb", "lb-nosplice", "lb-base", "haproxy", "nginx"], REF),
    ("peers in their plain configuration (no added headers)",
     ["lb", "haproxy-plain", "nginx-plain"], REF_PLAIN),
]


def free_ports(base, n):
    ports = []
    port = base
    while len(ports) < n and port < min(base + 1000, 65536):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
        port += 1
    if len(ports) < n:
        sys.exit(f"bench.py: fewer than {n} free ports in {base}..{base + 999}")
    print(" ".join(map(str, ports)))


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        out = (p.stdout + p.stderr).strip().splitlines()
        return out[0].strip() if out else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def meta(root):
    git = first_line(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    lb_bin = os.environ.get("BENCH_LB_BIN") or os.path.join(root, "bin/lb")
    try:
        with open(lb_bin, "rb") as f:
            lb_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        lb_sha = None
    return {
        "lb_sha256": lb_sha,
        "date": os.environ.get("BENCH_START_ISO") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "git": git + ("-dirty" if dirty and git else ""),
        "versions": {
            "lb": first_line([os.environ.get("BENCH_LB_BIN") or os.path.join(root, "bin/lb"), "-v"]),
            "haproxy": first_line(["haproxy", "-v"]),
            "nginx": first_line(["nginx", "-v"]),
            "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
        },
    }


def settings():
    env = os.environ
    return {
        "rounds": int(env.get("BENCH_ROUNDS", "3")),
        "duration_s": float(env.get("BENCH_DURATION", "5")),
        "warmup_s": float(env.get("BENCH_WARMUP", "1")),
        "connections": int(env.get("BENCH_CONNS", "50")),
        "client": env.get("BENCH_CLIENT", "wrk"),
        "client_threads": 1,
        "workloads": env.get("BENCH_WORKLOADS", ""),
        "open_fraction": float(env.get("BENCH_OPEN_FRACTION", "0.5")),
        "open_rate_fixed": int(env["BENCH_OPEN_RATE"]) if env.get("BENCH_OPEN_RATE") else None,
        "storm_seconds": int(env.get("BENCH_STORM_SECONDS", "0")),
        "storm_interval_ms": int(env.get("BENCH_STORM_INTERVAL_MS", "100")),
        "storm_modes": env.get("BENCH_STORM_MODES", ""),
        "proxies": env.get("BENCH_PROXIES", ""),
        "backend": env.get("BENCH_BACKEND", "lb-backend"),
        "peer_headers": env.get("BENCH_PEER_HEADERS", "1") == "1",
        "pinning": env.get("BENCH_PIN_DESC", ""),
        "workers": int(env.get("BENCH_WORKERS", "1")),
        "idle_connections": int(env.get("BENCH_IDLE_CONNS", "0")),
        "cpu_source": env.get("BENCH_CPU_SOURCE", ""),
    }


def load_errors(o):
    """lb-load's error classes plus "status": responses other than 2xx."""
    errs = dict(o["errors"])
    errs["status"] = sum(v for k, v in o["status"].items() if k != "2xx")
    return errs


def client_result(r):
    """The client's result, the same whatever the client: requests, duration,
    errors {class: count} (status: non-2xx for lb-load, non-2xx/3xx for wrk),
    latency_us {p50, p99, p99.9}."""
    o = r.get("out") or r.get("wrk")
    if r.get("client", "wrk") in ("wrk", "s_time"):
        return {"requests": o["requests"], "duration_s": o["duration_us"] / 1e6,
                "errors": o["errors"], "latency_us": o["latency_us"]}
    lat = dict(o["latency_us"])
    lat["p99.9"] = lat.pop("p999")
    res = {"requests": o["requests"], "duration_s": o["duration_s"],
           "errors": load_errors(o), "latency_us": lat}
    if o.get("open_loop"):
        res["open_loop"] = o["open_loop"]
    return res


def run_metrics(r):
    w = client_result(r)
    req = w["requests"]
    dur_s = w["duration_s"]
    errs = w["errors"]
    nerr = sum(errs.values())
    # s_time measures no latency
    lat = w["latency_us"] or {"p50": None, "p99": None, "p99.9": None}

    def ms(v):
        return v / 1000.0 if v is not None else None

    return {
        "round": r["round"],
        "client": r.get("client", "wrk"),
        "rate": r.get("rate"),
        "requests": req,
        "rps": req / dur_s if dur_s > 0 else 0.0,
        "p50_ms": ms(lat["p50"]),
        "p99_ms": ms(lat["p99"]),
        "p99.9_ms": ms(lat["p99.9"]),
        "cpu_us_per_req": (r["cpu_ns"] / 1000.0 / req) if req else None,
        "proxy_cpu_pct": 100.0 * r["cpu_ns"] / 1e9 / dur_s if dur_s > 0 else 0.0,
        # time the proxy was runnable but another task had its CPU: noise from elsewhere
        "proxy_runq_wait_pct": 100.0 * r.get("runq_wait_ns", 0) / 1e9 / dur_s if dur_s > 0 else 0.0,
        "loadavg": r.get("loadavg"),
        # new backend connections per request the backends served (0: all reused)
        "backend_conns_per_req": (r["backend_conns"] / r["backend_reqs"]
                                  if r.get("backend_reqs", -1) > 0 and r.get("backend_conns", -1) >= 0
                                  else None),
        "cpu_ns": r["cpu_ns"],
        "cpu_source": r.get("cpu_source"),
        "duration_s": dur_s,
        "errors": errs,
        "error_count": nerr,
        "flagged": nerr > 0 or req == 0,
        "open_loop": w.get("open_loop"),
    }


def read_jsonl(path):
    out = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out


def peak_rate(runs_path, workload, proxy, fraction):
    rps = [run_metrics(r)["rps"] for r in read_jsonl(runs_path)
           if r["workload"] == workload and r["proxy"] == proxy]
    if not rps:
        sys.exit(1)
    print(max(1, int(round(float(fraction) * statistics.median(rps)))))


def progress(runs_path, i, n, t):
    r = read_jsonl(runs_path)[-1]
    m = run_metrics(r)
    errs = {k: v for k, v in m["errors"].items() if v}
    ol = m.get("open_loop")
    p99 = f"{m['p99_ms']:.3f} ms" if m["p99_ms"] is not None else "-"
    print(f"bench: [{i}/{n} t+{t}s] {r['workload']:<13} {r['proxy']:<13} round {r['round']}: "
          f"{m['rps']:9.0f} req/s  p99 {p99}  "
          f"{m['cpu_us_per_req'] or 0:.2f} us/req"
          + (f"  (rate {ol['rate']:.0f}/s, dropped {ol['dropped']}, backlog max {ol['backlog_max']})" if ol else "")
          + (f"  ERRORS {errs}" if errs else ""))


# --- process trees (reload storm) --------------------------------------------------
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def children(pid):
    kids = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree(pid):
    """pid and its descendants (not zombies), with their summed resident memory."""
    pids, rss, todo = [], 0, [pid]
    while todo:
        p = todo.pop(0)
        try:
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{p}/statm") as f:
                r = int(f.read().split()[1]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            continue
        if state in ("Z", "X"):
            continue
        pids.append(p)
        rss += r
        todo += children(p)
    return {"pids": pids, "procs": len(pids), "rss_kb": rss}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid):
    """CPU time of pid and its descendants, in seconds (clock ticks): user+system of
    each, plus the root's children's that it has reaped (HAProxy's and nginx's old
    workers once they exited)."""
    total, todo, root = 0, [pid], True
    while todo:
        p = todo.pop(0)
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
        total += int(fields[11]) + int(fields[12])
        if root:
            total += int(fields[13]) + int(fields[14])
            root = False
        todo += children(p)
    return total / CLK_TCK


def storm(pid, sig, seconds, interval_ms):
    """SIG to pid every interval for seconds (absolute schedule, no drift), the
    process tree sampled after each signal: peak RSS and process count, and
    every descendant pid seen (HAProxy's and nginx's workers)."""
    pid, seconds, interval = int(pid), float(seconds), int(interval_ms) / 1000.0
    signum = getattr(signal, "SIG" + sig)
    before = tree(pid)
    cpu0 = tree_cpu_s(pid)
    seen = set(before["pids"][1:])
    rss_max, procs_max = before["rss_kb"], before["procs"]
    n = int(round(seconds / interval))
    t0 = time.monotonic()
    sent = 0
    for i in range(n):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        os.kill(pid, signum)
        sent += 1
        # sample halfway to the next signal
        delay = t0 + (i + 0.5) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = tree(pid)
        seen.update(t["pids"][1:])
        rss_max, procs_max = max(rss_max, t["rss_kb"]), max(procs_max, t["procs"])
    time.sleep(max(0.0, t0 + n * interval - time.monotonic()))
    cpu1 = tree_cpu_s(pid)
    window = time.monotonic() - t0
    end = tree(pid)
    seen.update(end["pids"][1:])
    print(json.dumps({
        "signals": sent, "elapsed_s": round(window, 3),
        "cpu_s": round(cpu1 - cpu0, 3),
        "rss_kb_before": before["rss_kb"], "procs_before": before["procs"],
        "rss_kb_max": max(rss_max, end["rss_kb"]), "procs_max": max(procs_max, end["procs"]),
        "workers_before": before["pids"][1:], "workers_end": end["pids"][1:],
        "workers_seen": len(seen),
    }))


def storm_metrics(s):
    o = s["load"]
    errs = load_errors(o)
    d = s["driver"]
    lat = o["latency_us"]
    wb, we = set(d["workers_before"]), set(s["after"]["pids"][1:])
    return {
        "mode": s["mode"], "proxy": s["proxy"], "signal": s["signal"], "rate": s["rate"],
        "seconds": s["seconds"], "interval_ms": s["interval_ms"],
        "signals": d["signals"], "reloads": s["reloads"],
        "reloads_failed": s["reloads_failed"] if s["reloads_failed"] >= 0 else None,
        "workers_seen": d["workers_seen"],
        # a master-worker proxy's workers after the storm are all new ones
        "workers_replaced": (not (wb & we)) if wb else None,
        "scheduled": (o.get("open_loop") or {}).get("scheduled"),
        "requests": o["requests"], "rps": o["rps"],
        "failed": sum(errs.values()), "errors": errs,
        "p50_ms": lat["p50"] / 1000.0, "p99_ms": lat["p99"] / 1000.0,
        "p99.9_ms": lat["p999"] / 1000.0, "max_ms": lat["max"] / 1000.0,
        # the proxy's processes (old workers included) busy during the storm
        "proxy_cpu_pct": 100.0 * d["cpu_s"] / d["elapsed_s"] if d.get("elapsed_s") else None,
        "rss_kb_before": d["rss_kb_before"], "procs_before": d["procs_before"],
        "rss_kb_max": d["rss_kb_max"], "procs_max": d["procs_max"],
        "rss_kb_after": s["after"]["rss_kb"], "procs_after": s["after"]["procs"],
        "open_loop": o.get("open_loop"),
    }


def storm_progress(storms_path, t):
    m = storm_metrics(read_jsonl(storms_path)[-1])
    errs = {k: v for k, v in m["errors"].items() if v}
    print(f"bench: [t+{t}s] storm {m['mode']:<9} {m['proxy']:<7}: {m['signals']} x {m['signal']}, "
          f"{m['reloads']} reloads; {m['requests']} requests, {m['failed']} failed"
          + (f" {errs}" if errs else "")
          + f"; p99 {m['p99_ms']:.3f} ms; cpu {m['proxy_cpu_pct'] or 0:.0f}%; rss {m['rss_kb_before'] / 1024:.1f} -> "
          f"{m['rss_kb_after'] / 1024:.1f} MB ({m['procs_after']} processes)")


def stime(addr, mode, seconds):
    """openssl s_time -www / for SECONDS, new or resumed sessions; wall time measured
    here (s_time's own is in whole seconds). In its progress output '*' is a full
    handshake and 'r' a resumed one."""
    cmd = ["openssl", "s_time", "-connect", addr, "-" + mode, "-www", "/", "-time", str(int(seconds))]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=int(seconds) + 30)
    dur = time.monotonic() - t0
    out = p.stdout + p.stderr
    import re
    m = re.findall(r"^(\d+) connections in \d+ real seconds, (\d+) bytes read per connection", out, re.M)
    if p.returncode != 0 or not m:
        sys.exit(f"bench.py stime: s_time failed (exit {p.returncode}):\n{out[-2000:]}")
    n, per = int(m[-1][0]), int(m[-1][1])
    # the timed part's progress marks (with -reuse, after its one untimed first connection)
    timed = out.split("Now timing with session id reuse.")[-1]
    reused = sum(line.count("r") for line in timed.splitlines() if line and set(line) <= {"r", "*"})
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0,
              # a connection without an answer, or (resumed) one that did not resume
              "status": (n if per == 0 else 0) + (n - reused if mode == "reuse" else 0)}
    print("BENCH " + json.dumps({"requests": n, "duration_us": int(dur * 1e6), "bytes": n * per,
                                 "errors": errors, "latency_us": None, "reused": reused,
                                 "bytes_per_conn": per}))


IDLE_WARMUP = 200  # connections opened and closed again before the first reading
IDLE_SETTLE_S = 1.0  # before each reading


def idle(addr, n, pid, mode):
    """N keep-alive connections (TLS or plain) to a freshly started proxy, opened one
    after the other, one GET / answered on each, then held idle: the RSS of PID and
    its descendants (nginx's workers), summed and read again at each reading, before
    and after, and the growth per connection, as one line of JSON.

    One request in flight at a time: every proxy keeps the buffers of finished
    requests for later ones, so concurrent requests would count pool growth as
    connection memory. The warm-up (IDLE_WARMUP connections of the same kind, closed
    again) fills those pools and caches first, so that what is counted is the
    connections. The proxies' keep-alive timeouts are 60 s: a connection the proxy
    closed before the reading would make the figure too low, so every one is checked
    (closed: "closed_by_proxy", and the exit status is 1)."""
    import resource
    import ssl
    host, port = addr.rsplit(":", 1)
    n, pid = int(n), int(pid)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        if hard < n + 64:
            sys.exit(f"bench.py idle: {n} connections need {n + 64} file descriptors, the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def one():
        s = socket.create_connection((host, int(port)), timeout=10)
        if mode == "tls":
            s = ctx.wrap_socket(s, server_hostname="bench.test")
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:  # bounded by the size
            d = s.recv(65536)
            if not d:
                raise RuntimeError("closed before the answer")
            buf += d
        head, _, body = buf.partition(b"\r\n\r\n")
        cl = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        left = (cl[0] if cl else 0) - len(body)
        while left > 0:  # bounded by Content-Length
            d = s.recv(left)
            if not d:
                raise RuntimeError("closed inside the body")
            left -= len(d)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("answer %r" % head[:40])
        return s

    def closed(s):
        """The proxy closed it: EOF, a reset, or (TLS) an alert record waiting
        (close_notify); a session ticket or nothing at all is an open connection."""
        s.settimeout(0)  # a socket with a timeout would wait for data first
        try:
            d = socket.socket.recv(s, 1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return d == b"" or (mode == "tls" and d == b"\x15")

    t0 = time.monotonic()
    for _ in range(IDLE_WARMUP):
        one().close()
    time.sleep(IDLE_SETTLE_S)
    before = tree(pid)
    conns = []
    t1 = time.monotonic()
    try:
        for _ in range(n):
            conns.append(one())
        took = time.monotonic() - t1
        time.sleep(IDLE_SETTLE_S)
        after = tree(pid)
        gone = sum(1 for c in conns if closed(c))
    finally:
        for c in conns:
            c.close()
    print(json.dumps({"mode": mode, "connections": n, "warmup": IDLE_WARMUP,
                      "rss_kb_before": before["rss_kb"], "rss_kb_after": after["rss_kb"],
                      "kib_per_conn": round((after["rss_kb"] - before["rss_kb"]) / n, 3),
                      "procs": after["procs"], "open_s": round(took, 2),
                      "total_s": round(time.monotonic() - t0, 2), "closed_by_proxy": gone}))
    if gone:
        sys.exit(f"bench.py idle: the proxy closed {gone} of the {n} connections before the reading")


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals):
    """(max - min) / median, in percent."""
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return 0.0
    m = statistics.median(vals)
    return 100.0 * (max(vals) - min(vals)) / m if m else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, spec, width):
    return (format(v, spec) if v is not None else "-").rjust(width)


def report(runs_path, outdir, storms_path=None, idle_path=None):
    runs = read_jsonl(runs_path)
    storms = [storm_metrics(x) for x in read_jsonl(storms_path)]
    idles = read_jsonl(idle_path)

    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["proxy"]), []).append(run_metrics(r))

    def order(key, known):
        return (known.index(key) if key in known else len(known), key)

    workloads = sorted({w for w, _ in groups}, key=lambda w: order(w, WORKLOAD_ORDER))
    proxies = sorted({p for _, p in groups} | {s["proxy"] for s in storms},
                     key=lambda p: order(p, PROXY_ORDER))

    results = []
    by_key = {}
    for w in workloads:
        for p in proxies:
            ms = groups.get((w, p))
            if not ms:
                continue
            med = {k: median([m[k] for m in ms])
                   for k in ("rps", "p50_ms", "p99_ms", "p99.9_ms", "cpu_us_per_req", "proxy_cpu_pct",
                                 "proxy_runq_wait_pct", "backend_conns_per_req")}
            entry = {
                "workload": w, "proxy": p, "client": ms[0]["client"], "rate": ms[0]["rate"],
                "median": med,
                "spread_pct": {"rps": spread([m["rps"] for m in ms]),
                               "cpu_us_per_req": spread([m["cpu_us_per_req"] for m in ms])},
                "errors": sum(m["error_count"] for m in ms),
                "flagged_runs": [m["round"] for m in ms if m["flagged"]],
                "runs": ms,
            }
            results.append(entry)
            by_key[(w, p)] = entry

    for e in results:
        for key, refname in (("vs_haproxy", REF), ("vs_haproxy_plain", REF_PLAIN)):
            ref = by_key.get((e["workload"], refname))
            e[key] = {k: ratio(e["median"][k], ref["median"][k]) if ref else None
                      for k in ("rps", "cpu_us_per_req", "p50_ms", "p99_ms", "p99.9_ms")}

    bar = {}
    bar_plain = {}
    for w in workloads:
        for out, refname, key in ((bar, REF, "vs_haproxy"), (bar_plain, REF_PLAIN, "vs_haproxy_plain")):
            lb, ref = by_key.get((w, "lb")), by_key.get((w, refname))
            if lb and ref and lb["median"]["cpu_us_per_req"] is not None:
                out[w] = {
                    "lb_cpu_us_per_req": lb["median"]["cpu_us_per_req"],
                    "haproxy_cpu_us_per_req": ref["median"]["cpu_us_per_req"],
                    "ratio": lb[key]["cpu_us_per_req"],
                    "pass": lb["median"]["cpu_us_per_req"] <= ref["median"]["cpu_us_per_req"]
                            and not lb["errors"],
                }

    storms.sort(key=lambda x: (order(x["mode"], STORM_ORDER), order(x["proxy"], PROXY_ORDER)))
    for x in storms:
        ref = next((y for y in storms if y["mode"] == x["mode"] and y["proxy"] == REF), None)
        x["vs_haproxy"] = {k: ratio(x[k], ref[k]) if ref else None
                           for k in ("p99_ms", "p99.9_ms", "rss_kb_after")}
        if ref:
            x["vs_haproxy"]["failed_haproxy"] = ref["failed"]

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    m = meta(root)
    st = settings()
    doc = {"meta": m, "settings": st, "results": results, "bar": bar, "bar_plain": bar_plain,
           "storm": storms, "idle": idles, "elapsed_s": None}

    lines = []
    v = m["versions"]
    closed = [w for w in workloads if w != "openloop"]
    lines.append(f"# make bench  {m['date']}  git {m['git'] or '?'}  bin/lb sha256 {m['lb_sha256'] or '?'}")
    lines.append(f"# {m['nproc']} CPUs: {m['cpu_model']}; kernel {m['kernel']}")
    lines.append(f"# {v['lb'] or 'lb ?'}; {v['haproxy']}; {v['nginx']}"
                 + (f"; {v['wrk']}" if st["client"] == "wrk" else ""))
    client = (f"wrk -t1 -c{st['connections']}" if st["client"] == "wrk"
              else f"lb-load -c{st['connections']} (closed loop)")
    lines.append(f"# {client} -d{st['duration_s']:g}s, "
                 f"{st['rounds']} rounds in turn, medians; backends: 2 x {st['backend']}; "
                 f"{st['pinning']}; cpu from {st['cpu_source']}")
    ol = by_key.get(("openloop", REF)) or next((e for e in results if e["workload"] == "openloop"), None)
    if ol:
        src = (f"BENCH_OPEN_RATE" if st["open_rate_fixed"]
               else f"{st['open_fraction']:g} x haproxy's median keepalive req/s")
        lines.append(f"# openloop: lb-load --rate {ol['rate']} -c{st['connections']} keep-alive ({src}), "
                     f"the same rate for every proxy; latency from each request's scheduled send time")
    if any(w.startswith("tls-") for w in workloads):
        lines.append("# tls-full, tls-resumed: openssl s_time -www / (one connection at a time: a full or a "
                     "resumed TLS 1.3 handshake, GET / HTTP/1.0, close), req/s = connections/s; "
                     "tls-keepalive: wrk over TLS; one ECDSA P-256 certificate for all; "
                     "cpu us/req = proxy CPU per connection (per request for tls-keepalive)")
    lines.append("# haproxy and nginx " + ("add X-Forwarded-For/-Proto and X-Request-Id like lb"
                                          if st["peer_headers"] else "proxy plainly (no added headers)")
                 + "; haproxy-plain and nginx-plain proxy plainly; lb-nosplice is lb with lb.splice = off"
                 + (f"; {st['workers']} workers each (lb.workers, haproxy nbthread, nginx worker_processes)"
                    if st["workers"] > 1 else "; one worker each"))
    loads = [run["loadavg"] for e in results for run in e["runs"] if run.get("loadavg") is not None]
    if loads:
        # the bench itself keeps about nproc tasks runnable
        busy = max(loads) > (m["nproc"] or 1) + 1.5
        lines.append(f"# load average during the runs {min(loads):.1f}..{max(loads):.1f}"
                     + (f" -- the machine was busy with other work; expect noise" if busy else ""))
        m["loadavg_range"] = [min(loads), max(loads)]
    for title, members, refname in TABLES:
        # a workload where lb is alone in this table compares nothing (openloop has no
        # plain peers), nor does the table when no peer of it ran
        peered = {e["workload"] for e in results if e["proxy"] in members and e["proxy"] != "lb"}
        rows = [e for e in results if e["proxy"] in members and e["workload"] in peered]
        if not rows:
            continue
        key, bars = ("vs_haproxy", bar) if refname == REF else ("vs_haproxy_plain", bar_plain)
        lines.append("")
        lines.append(f"# {title}: ratios to {refname}")
        lines.append(f"{'workload':<13} {'proxy':<13} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
                     f"{'cpu us/req':>10} {'cpu vs ' + refname:>20} {'req/s vs ref':>12} {'p99 vs ref':>10} "
                     f"{'proxy cpu%':>10} {'wait%':>5} {'be conn/req':>11} {'spread rps/cpu':>14}  errors")
        for e in rows:
            md, vs, sp = e["median"], e[key], e["spread_pct"]
            err = str(e["errors"]) if e["errors"] else "0"
            if e["flagged_runs"]:
                err += " FLAGGED (rounds " + ",".join(map(str, e["flagged_runs"])) + ")"
            sp_s = f"{sp['rps']:.0f}%/{sp['cpu_us_per_req']:.0f}%" if sp["rps"] is not None \
                and sp["cpu_us_per_req"] is not None else "-"
            lines.append(
                f"{e['workload']:<13} {e['proxy']:<13} {fmt(md['rps'], '.0f', 9)} "
                f"{fmt(md['p50_ms'], '.3f', 7)} {fmt(md['p99_ms'], '.3f', 7)} {fmt(md['p99.9_ms'], '.3f', 8)} "
                f"{fmt(md['cpu_us_per_req'], '.2f', 10)} {fmt(vs['cpu_us_per_req'], '.2f', 20)} "
                f"{fmt(vs['rps'], '.2f', 12)} {fmt(vs['p99_ms'], '.2f', 10)} {fmt(md['proxy_cpu_pct'], '.0f', 10)} "
                f"{fmt(md['proxy_runq_wait_pct'], '.0f', 5)} {fmt(md['backend_conns_per_req'], '.3f', 11)} "
                f"{sp_s:>14}  {err}")
        for w, b in bars.items():
            lines.append(f"bar {w:<13} lb {b['lb_cpu_us_per_req']:.2f} us/req vs {refname} "
                         f"{b['haproxy_cpu_us_per_req']:.2f} us/req (x{b['ratio']:.2f}): "
                         f"{'ok' if b['pass'] else 'NOT MET'}")

    if idles:
        lines.append("")
        lines.append(f"# idle keep-alive client connections: {idles[0]['connections']} to each proxy and mode, "
                     f"opened one after the other after a warm-up of {idles[0].get('warmup', 0)}, one GET / each, "
                     "then held idle for 1 s; KiB/conn = the growth of the RSS of all the proxy's processes "
                     "/ connections")
        lines.append(f"{'idle':<13} {'proxy':<13} {'KiB/conn':>8} {'vs haproxy':>10} {'rss MB before/after':>19} "
                     f"{'procs':>5}")
        for x in sorted(idles, key=lambda x: (order(x["mode"], IDLE_ORDER), order(x["proxy"], PROXY_ORDER))):
            ref = next((y for y in idles if y["mode"] == x["mode"] and y["proxy"] == REF), None)
            x["vs_haproxy"] = ratio(x["kib_per_conn"], ref["kib_per_conn"]) if ref else None
            rss = f"{x['rss_kb_before'] / 1024:.1f}/{x['rss_kb_after'] / 1024:.1f}"
            lines.append(f"{x['mode']:<13} {x['proxy']:<13} {x['kib_per_conn']:>8.2f} "
                         f"{fmt(x['vs_haproxy'], '.2f', 10)} {rss:>19} {x.get('procs', 1):>5}")

    if storms:
        x0 = storms[0]
        lines.append("")
        lines.append(f"# reload storm: a reload every {x0['interval_ms']} ms for {x0['seconds']} s under "
                     f"lb-load --rate R -c{st['connections']} (from 0.5 s before the first reload to 0.5 s after the storm); "
                     f"lb: SIGHUP; haproxy -W (master-worker): SIGUSR2 to the master; "
                     f"nginx (master + {st['workers']} worker{'s' if st['workers'] > 1 else ''}): SIGHUP to the master")
        lines.append("# failed = connect + reset + timeout + parse + other errors + non-2xx responses; "
                     "proxy cpu%: all its processes, during the reloads (compare openloop: same rate, no reload); "
                     "rss: the proxy's processes summed, before the first reload / highest during / 0.5 s after")
        lines.append(f"{'storm':<10} {'proxy':<8} {'rate':>6} {'signals':>7} {'reloads':>7} {'requests':>8} "
                     f"{'failed':>6} {'conn/reset/tmo/non2xx':>21} {'p50 ms':>7} {'p99 ms':>8} {'p99.9 ms':>8} "
                     f"{'max ms':>8} {'p99 vs haproxy':>14} {'proxy cpu%':>10} {'rss MB before/max/after':>23} "
                     f"{'procs max/after':>15}")
        for x in storms:
            e = x["errors"]
            ecols = f"{e['connect']}/{e['reset']}/{e['timeout']}/{e['status']}"
            if e["parse"] or e["other"]:
                ecols += f" +{e['parse'] + e['other']}"
            rss = (f"{x['rss_kb_before'] / 1024:.1f}/{x['rss_kb_max'] / 1024:.1f}/"
                   f"{x['rss_kb_after'] / 1024:.1f}")
            lines.append(
                f"{x['mode']:<10} {x['proxy']:<8} {x['rate']:>6} {x['signals']:>7} {x['reloads']:>7} "
                f"{x['requests']:>8} {x['failed']:>6} {ecols:>21} {fmt(x['p50_ms'], '.3f', 7)} "
                f"{fmt(x['p99_ms'], '.3f', 8)} {fmt(x['p99.9_ms'], '.3f', 8)} {fmt(x['max_ms'], '.1f', 8)} "
                f"{fmt(x['vs_haproxy']['p99_ms'], '.2f', 14)} {fmt(x['proxy_cpu_pct'], '.0f', 10)} {rss:>23} "
                f"{str(x['procs_max']) + '/' + str(x['procs_after']):>15}")
        for x in storms:
            notes = []
            if x["reloads"] < x["signals"]:
                notes.append(f"{x['signals'] - x['reloads']} of {x['signals']} signals brought no reload "
                             f"(coalesced while a reload was under way)")
            if x["reloads_failed"]:
                notes.append(f"{x['reloads_failed']} reloads FAILED")
            if x["workers_replaced"] is False:
                notes.append("the worker of before the storm is still there")
            if x["reloads"] == 0:
                notes.append("NO RELOAD HAPPENED")
            if notes:
                lines.append(f"note storm {x['mode']} {x['proxy']}: " + "; ".join(notes))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)

    elapsed = os.environ.get("BENCH_ELAPSED_S")
    if elapsed:
        doc["elapsed_s"] = float(elapsed)
    stamp = os.environ.get("BENCH_STAMP") or time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(outdir, exist_ok=True)
    for name in (f"bench-{stamp}", "latest"):
        with open(os.path.join(outdir, name + ".json"), "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        with open(os.path.join(outdir, name + ".txt"), "w") as f:
            f.write(text)
    print(f"results: {os.path.relpath(os.path.join(outdir, 'bench-' + stamp + '.json'))} "
          f"(and latest.json, latest.txt)")


def main(argv):
    if len(argv) == 4 and argv[1] == "ports":
        free_ports(int(argv[2]), int(argv[3]))
    elif len(argv) == 6 and argv[1] == "rate":
        peak_rate(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 6 and argv[1] == "progress":
        progress(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 3 and argv[1] == "tree":
        print(json.dumps(tree(int(argv[2]))))
    elif len(argv) == 6 and argv[1] == "storm":
        storm(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 4 and argv[1] == "storm-progress":
        storm_progress(argv[2], argv[3])
    elif len(argv) == 5 and argv[1] == "stime":
        stime(argv[2], argv[3], argv[4])
    elif len(argv) == 6 and argv[1] == "idle":
        idle(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) in (4, 5, 6) and argv[1] == "report":
        report(argv[2], argv[3], argv[4] if len(argv) >= 5 else None, argv[5] if len(argv) == 6 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
