#!/usr/bin/env python3
"""make bench, stats step: what reading lb's stats costs with BACKENDS backends.

  stats_cost.py RESULTS_DIR

One bin/lb (one worker, health checks off) with one round-robin pool of
BACKENDS backends, be0000 be0001 ..., which all point at four real
lb-backend processes in turn (distinct names, so lb keeps each one's
counters, histograms, windows and idle connections apart, as it would for
distinct hosts). First lb-load sends keep-alive traffic for POPULATE_S so
every backend has counters and its windows have samples.

1. Cost of one read: N times GET /stats.json and N times GET /metrics in
   turn, each on a new connection with nothing else running, timed from
   connect to the last byte (median and p99 in ms, body size), and the CPU
   time lb's main thread (the admin's) spent per read, from its schedstat.
   The goal: each read under GOAL_MS.

2. Does reading stats touch the request path: lb-load, closed loop,
   keep-alive, CONNS connections, SECONDS per run (after one warm-up), runs
   without and with a poller that GETs /stats.json then /metrics every
   POLL_MS (or at once when a pass took longer), in pairs (off, on) ROUNDS
   times; the ratios are the medians of each pair's, so that the drift of a
   busy machine between pairs cancels out. For each run: req/s, the
   worker thread's CPU per request, and how the worker's wall time split
   into running, waiting for the CPU (runnable) and sleeping; the main
   thread's CPU share. Everything of lb runs on one CPU (as in the rest of
   make bench), so the main thread's stats work takes CPU time from the
   worker; a lock would show as the worker sleeping (blocked) more, or
   spending more CPU per request.

Tables to stdout and, with the JSON, to RESULTS_DIR/bench-STAMP-stats.{txt,json}
and latest-stats.{txt,json}. Processes, pinning (lb on CPU 1, the rest on CPU
0) and priorities are the failure scenarios' (loadtest/scenarios/lib.py):
SCENARIO_BIN, SCENARIO_PIN, SCENARIO_NICE, SCENARIO_KEEP apply; bench.sh sets
them. Knobs: BENCH_STATS_BACKENDS (1000), BENCH_STATS_READS (50),
BENCH_STATS_SECONDS (3), BENCH_STATS_ROUNDS (4), BENCH_STAMP.
"""
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "loadtest", "scenarios"))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (meta: date, git, versions)
import lib  # noqa: E402

REAL_BACKENDS = 4
CONNS = 50
POPULATE_S = 3
WARMUP_S = 1
POLL_MS = 100
GOAL_MS = 20.0
PATHS = ("/stats.json", "/metrics")


def progress(msg):
    print("bench: %s" % msg, file=sys.stderr)
    sys.stderr.flush()


def env_int(name, default, lo, hi):
    v = os.environ.get(name) or str(default)
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench: %s must be an integer in %d..%d (is %r)" % (name, lo, hi, v))
    return int(v)


def fetch(port, path, timeout=10.0):
    """GET path on a new connection, read to the end: (seconds, status, body bytes)."""
    t0 = time.monotonic()
    s = socket.create_connection((lib.HOST, port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
        parts = []
        for _ in range(1 << 20):  # bounded: the body is a few MB at most
            b = s.recv(1 << 20)
            if not b:
                break
            parts.append(b)
    finally:
        s.close()
    took = time.monotonic() - t0
    data = b"".join(parts)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    return took, status, len(body)


def thread_sched(pid, tid):
    """(ns on CPU, ns runnable waiting) of one thread."""
    with open("/proc/%d/task/%d/schedstat" % (pid, tid)) as f:
        a = f.read().split()
    return int(a[0]), int(a[1])


def threads(pid):
    """lb's main thread (the admin's: its tid is the pid) and its one worker thread."""
    worker = []
    for t in os.listdir("/proc/%d/task" % pid):
        tid = int(t)
        with open("/proc/%d/task/%d/comm" % (pid, tid)) as f:
            comm = f.read().strip()
        if tid != pid and comm == "lb":
            worker.append(tid)
    if len(worker) != 1:
        raise lib.ScenarioError("expected one worker thread in lb, found %d" % len(worker))
    return pid, worker[0]


def pct(xs, q):
    """Nearest-rank percentile of xs (q in 0..100)."""
    s = sorted(xs)
    k = max(1, -(-len(s) * q // 100))
    return s[int(k) - 1]


def read_costs(lb, reads):
    """N reads of each path in turn: per path the wall times (ms), sizes and the main
    thread's CPU per read (ms)."""
    main, _ = threads(lb.pid)
    out = {p: {"ms": [], "bytes": [], "cpu_ns": 0} for p in PATHS}
    for _ in range(reads):
        for p in PATHS:
            c0, _ = thread_sched(lb.pid, main)
            took, status, size = fetch(lb.admin_port, p)
            c1, _ = thread_sched(lb.pid, main)
            if status != 200:
                raise lib.ScenarioError("GET %s: status %d" % (p, status))
            out[p]["ms"].append(took * 1000)
            out[p]["bytes"].append(size)
            out[p]["cpu_ns"] += c1 - c0
    res = {}
    for p in PATHS:
        ms = out[p]["ms"]
        res[p] = {"reads": len(ms), "median_ms": round(statistics.median(ms), 3), "p99_ms": round(pct(ms, 99), 3),
                  "max_ms": round(max(ms), 3), "bytes": max(out[p]["bytes"]),
                  "main_cpu_ms_per_read": round(out[p]["cpu_ns"] / len(ms) / 1e6, 3),
                  "goal_met": statistics.median(ms) < GOAL_MS}
    return res


class Poller(threading.Thread):
    """GET /stats.json then /metrics every POLL_MS (start to start) until stopped."""

    def __init__(self, port, max_s):
        super().__init__(daemon=True)
        self.port, self.max_s = port, max_s
        self.halt = threading.Event()
        self.ms = {p: [] for p in PATHS}
        self.errors = 0

    def run(self):
        end = time.monotonic() + self.max_s
        nxt = time.monotonic()
        for _ in range(int(self.max_s * 1000 / POLL_MS) + 1):
            if self.halt.is_set() or time.monotonic() >= end:
                return
            for p in PATHS:
                try:
                    took, status, _ = fetch(self.port, p)
                    if status == 200:
                        self.ms[p].append(took * 1000)
                    else:
                        self.errors += 1
                except OSError:
                    self.errors += 1
            nxt += POLL_MS / 1000.0
            self.halt.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.halt.set()
        self.join(15)


def run_load(sc, lb, seconds, polling, tag):
    """One measured run: lb-load for SECONDS, with or without the poller."""
    main, worker = threads(lb.pid)
    poller = Poller(lb.admin_port, seconds + 30) if polling else None
    w0, m0, t0 = thread_sched(lb.pid, worker), thread_sched(lb.pid, main), time.monotonic()
    if poller:
        poller.start()
    r = sc.load(lb, seconds=seconds, conns=CONNS, tag=tag).wait()
    w1, m1, t1 = thread_sched(lb.pid, worker), thread_sched(lb.pid, main), time.monotonic()
    if poller:
        poller.stop()
    if not lb.proc.alive():
        raise lib.ScenarioError("bin/lb died during %s: %s" % (tag, lb.proc.log_tail(8)))
    wall_ns = (t1 - t0) * 1e9
    n = r["requests"] or 1
    run_ns, wait_ns = w1[0] - w0[0], w1[1] - w0[1]
    f = {
        "polling": polling, "requests": r["requests"], "rps": round(r["rps"], 1),
        "errors": lib.client_errors(r), "errors_by_kind": lib.fmt_errors(r),
        "p99_ms": r["latency_us"]["p99"] / 1000.0,
        "worker_cpu_us_per_req": round(run_ns / n / 1000, 3),
        "worker_running_pct": round(100 * run_ns / wall_ns, 1),
        "worker_runnable_pct": round(100 * wait_ns / wall_ns, 1),
        "worker_sleeping_pct": round(max(0.0, 100 * (wall_ns - run_ns - wait_ns) / wall_ns), 1),
        "main_cpu_pct": round(100 * (m1[0] - m0[0]) / wall_ns, 1),
    }
    if poller:
        f["polls"] = len(poller.ms[PATHS[0]])
        f["poll_errors"] = poller.errors
        f["poll_ms"] = {p: {"median": round(statistics.median(v), 3) if v else None,
                            "p99": round(pct(v, 99), 3) if v else None} for p, v in poller.ms.items()}
    return f


def summary(runs):
    """Medians of the runs without and with the poller, and the medians of the
    on/off ratios of each pair (runs[0], runs[1]), (runs[2], runs[3]), ..."""
    off = [r for r in runs if not r["polling"]]
    on = [r for r in runs if r["polling"]]

    def med(rs, k):
        return statistics.median(r[k] for r in rs)

    def ratio(k):
        return round(statistics.median(b[k] / a[k] for a, b in zip(off, on) if a[k]), 3)

    keys = ("rps", "worker_cpu_us_per_req", "worker_running_pct", "worker_runnable_pct", "worker_sleeping_pct",
            "main_cpu_pct")
    s = {"off": {k: med(off, k) for k in keys}, "on": {k: med(on, k) for k in keys}}
    s["rps_ratio"] = ratio("rps")
    s["worker_cpu_per_req_ratio"] = ratio("worker_cpu_us_per_req")
    return s


def tables(costs, runs, s, meta, settings, elapsed):
    L = []
    L.append("# make bench, stats cost  %s  git %s  bin/lb sha256 %s" % (meta["date"], meta["git"] or "?",
                                                                          meta["lb_sha256"] or "?"))
    L.append("# bin/lb alone (workers 1): one round-robin pool of %d backends (health off) over %d lb-backends; "
             "%s" % (settings["backends"], REAL_BACKENDS, settings["pinning"]))
    L.append("")
    L.append("# one read at a time, after %d s of traffic to every backend: %d reads of each, new connection each, "
             "connect to last byte; main cpu: lb's admin thread per read" % (POPULATE_S, settings["reads"]))
    L.append("%-12s %10s %10s %10s %12s %14s  %s" % ("endpoint", "median ms", "p99 ms", "max ms", "bytes",
                                                   "main cpu ms", "goal < %g ms" % GOAL_MS))
    for p in PATHS:
        c = costs[p]
        L.append("%-12s %10.3f %10.3f %10.3f %12d %14.3f  %s" % (p, c["median_ms"], c["p99_ms"], c["max_ms"],
                                                                c["bytes"], c["main_cpu_ms_per_read"],
                                                                "met" if c["goal_met"] else "MISSED"))
    L.append("")
    L.append("# lb-load -c %d keep-alive, %d s runs, without and with a poller (GET /stats.json then /metrics "
             "every %d ms), in pairs" % (CONNS, settings["seconds"], POLL_MS))
    L.append("# worker: its wall time running / runnable, waiting for the CPU / sleeping (blocked or idle)")
    L.append("%-8s %8s %8s %8s %14s %22s %10s %7s %s" % ("poller", "req/s", "p99 ms", "errors", "worker us/req",
                                                      "worker run/wait/sleep%", "main cpu%", "polls",
                                                      "poll ms median (json, metrics)"))
    for r in runs:
        pm = r.get("poll_ms")
        L.append("%-8s %8.0f %8.3f %8d %14.2f %22s %10.1f %7s %s" % (
            "on" if r["polling"] else "off", r["rps"], r["p99_ms"], r["errors"], r["worker_cpu_us_per_req"],
            "%.1f/%.1f/%.1f" % (r["worker_running_pct"], r["worker_runnable_pct"], r["worker_sleeping_pct"]),
            r["main_cpu_pct"], r.get("polls", "-"),
            "%s, %s" % (pm["/stats.json"]["median"], pm["/metrics"]["median"]) if pm else "-"))
    L.append("medians: req/s %.0f without, %.0f with the poller (pairs' ratio %.3f); worker us/req %.2f "
             "without, %.2f with (pairs' ratio %.3f); main thread %.1f%% of a CPU with the poller" % (
                 s["off"]["rps"], s["on"]["rps"], s["rps_ratio"], s["off"]["worker_cpu_us_per_req"],
                 s["on"]["worker_cpu_us_per_req"], s["worker_cpu_per_req_ratio"], s["on"]["main_cpu_pct"]))
    for r in runs:
        if r["errors"]:
            L.append("FLAGGED: a run with the poller %s had %d client errors (%s)" % (
                "on" if r["polling"] else "off", r["errors"], r["errors_by_kind"]))
    L.append("# %.0f s" % elapsed)
    return "\n".join(L) + "\n"


def main(outdir):
    t0 = time.monotonic()
    sc = lib.Scenario("bench-stats", "make bench: the cost of reading stats")
    ok = False
    try:
        if sc.pin:
            os.sched_setaffinity(0, {0})  # this process (reads and the poller) with the clients
        nb = env_int("BENCH_STATS_BACKENDS", 1000, 2, 100000)
        reads = env_int("BENCH_STATS_READS", 50, 1, 10000)
        seconds = env_int("BENCH_STATS_SECONDS", 3, 1, 120)
        rounds = env_int("BENCH_STATS_ROUNDS", 4, 1, 20)
        real = [lib.Backend(sc, "r%d" % i) for i in range(1, REAL_BACKENDS + 1)]
        entries = [{"name": "be%04d" % i, "address": real[i % REAL_BACKENDS].address} for i in range(nb)]
        lb = sc.lb(real, backend_entries=entries, pool={"health": {"type": "off"}, "slow_start": "0s"},
                   timeouts={"backend": "10s", "client_idle": "30s"})
        progress("stats: lb with %d backends; %d s of traffic to populate them" % (nb, POPULATE_S))
        r = sc.load(lb, seconds=POPULATE_S, conns=CONNS, tag="populate").wait()
        st = lb.stats(timeout=10)
        busy = sum(1 for b in st["pools"][0]["backends"] if b["requests"] > 0)
        if busy != nb:
            raise lib.ScenarioError("only %d of %d backends got requests (%d requests)" % (busy, nb, r["requests"]))
        costs = read_costs(lb, reads)
        for p in PATHS:
            c = costs[p]
            progress("stats: GET %-11s median %.2f ms, p99 %.2f ms, %d bytes, lb main thread %.2f ms of CPU a read"
                     % (p, c["median_ms"], c["p99_ms"], c["bytes"], c["main_cpu_ms_per_read"]))
        sc.load(lb, seconds=WARMUP_S, conns=CONNS, tag="warmup").wait()
        runs = []
        for rnd in range(rounds):
            for polling in (False, True):
                f = run_load(sc, lb, seconds, polling, "load-%s-%d" % ("on" if polling else "off", rnd + 1))
                runs.append(f)
                progress("stats: poller %-3s %6.0f req/s, worker %.2f us/req, main thread %.1f%% CPU%s" % (
                    "on" if polling else "off", f["rps"], f["worker_cpu_us_per_req"], f["main_cpu_pct"],
                    "  ERRORS %d (%s)" % (f["errors"], f["errors_by_kind"]) if f["errors"] else ""))
        s = summary(runs)
        settings = {"backends": nb, "real_backends": REAL_BACKENDS, "reads": reads, "seconds": seconds,
                    "rounds": rounds, "connections": CONNS, "poll_ms": POLL_MS, "goal_ms": GOAL_MS,
                    "populate_s": POPULATE_S, "pinning": sc.machine()}
        meta = bench.meta(ROOT)
        elapsed = time.monotonic() - t0
        text = tables(costs, runs, s, meta, settings, elapsed)
        sys.stdout.write(text)
        doc = {"meta": meta, "settings": settings, "reads": costs, "runs": runs, "summary": s,
               "elapsed_s": round(elapsed, 1)}
        stamp = os.environ.get("BENCH_STAMP") or time.strftime("%Y%m%d-%H%M%S")
        os.makedirs(outdir, exist_ok=True)
        for name in ("bench-%s-stats" % stamp, "latest-stats"):
            with open(os.path.join(outdir, name + ".json"), "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            with open(os.path.join(outdir, name + ".txt"), "w") as f:
                f.write(text)
        print("results: %s (and latest-stats.json, latest-stats.txt)"
              % os.path.relpath(os.path.join(outdir, "bench-%s-stats.json" % stamp)))
        ok = True
    except (lib.ScenarioError, lib.ProxyDied, OSError) as e:
        print("bench: stats step: %s" % e, file=sys.stderr)
    finally:
        sc.cleanup(ok)
    return 0 if ok else 1


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    sys.exit(main(sys.argv[1]))
