#!/usr/bin/env python3
"""Helper of loadtest/bench.sh (standard library only).

  bench.py ports BASE N          print N free TCP ports on 127.0.0.1, from BASE up
  bench.py report RUNS OUTDIR    medians, ratios to HAProxy, the table (stdout,
                                 OUTDIR/bench-STAMP.txt, latest.txt) and the JSON
                                 (OUTDIR/bench-STAMP.json, latest.json)

RUNS holds one JSON object per measured run, written by bench.sh:
  {"workload", "proxy", "round", "cpu_ns", "cpu_source", "wrk": {...}}
where "wrk" is the line loadtest/bench/report.lua prints.
The settings and the start time come from the environment (BENCH_*).
"""
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

WORKLOAD_ORDER = ["keepalive", "newconn", "64k"]
PROXY_ORDER = ["lb", "haproxy", "nginx"]
REF = "haproxy"


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
        "wrk_threads": 1,
        "workloads": env.get("BENCH_WORKLOADS", ""),
        "proxies": env.get("BENCH_PROXIES", ""),
        "backend": env.get("BENCH_BACKEND", "lb-backend"),
        "peer_headers": env.get("BENCH_PEER_HEADERS", "1") == "1",
        "pinning": env.get("BENCH_PIN_DESC", ""),
        "cpu_source": env.get("BENCH_CPU_SOURCE", ""),
    }


def run_metrics(r):
    w = r["wrk"]
    req = w["requests"]
    dur_s = w["duration_us"] / 1e6
    errs = w["errors"]
    nerr = sum(errs.values())
    lat = w["latency_us"]
    return {
        "round": r["round"],
        "requests": req,
        "rps": req / dur_s if dur_s > 0 else 0.0,
        "p50_ms": lat["p50"] / 1000.0,
        "p99_ms": lat["p99"] / 1000.0,
        "p99.9_ms": lat["p99.9"] / 1000.0,
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
    }


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


def report(runs_path, outdir):
    runs = []
    with open(runs_path) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))

    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["proxy"]), []).append(run_metrics(r))

    def order(key, known):
        return (known.index(key) if key in known else len(known), key)

    workloads = sorted({w for w, _ in groups}, key=lambda w: order(w, WORKLOAD_ORDER))
    proxies = sorted({p for _, p in groups}, key=lambda p: order(p, PROXY_ORDER))

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
                "workload": w, "proxy": p, "median": med,
                "spread_pct": {"rps": spread([m["rps"] for m in ms]),
                               "cpu_us_per_req": spread([m["cpu_us_per_req"] for m in ms])},
                "errors": sum(m["error_count"] for m in ms),
                "flagged_runs": [m["round"] for m in ms if m["flagged"]],
                "runs": ms,
            }
            results.append(entry)
            by_key[(w, p)] = entry

    for e in results:
        ref = by_key.get((e["workload"], REF))
        e["vs_haproxy"] = {
            "rps": ratio(e["median"]["rps"], ref["median"]["rps"]) if ref else None,
            "cpu_us_per_req": ratio(e["median"]["cpu_us_per_req"],
                                    ref["median"]["cpu_us_per_req"]) if ref else None,
        }

    bar = {}
    for w in workloads:
        lb, ref = by_key.get((w, "lb")), by_key.get((w, REF))
        if lb and ref and lb["median"]["cpu_us_per_req"] is not None:
            bar[w] = {
                "lb_cpu_us_per_req": lb["median"]["cpu_us_per_req"],
                "haproxy_cpu_us_per_req": ref["median"]["cpu_us_per_req"],
                "ratio": lb["vs_haproxy"]["cpu_us_per_req"],
                "pass": lb["median"]["cpu_us_per_req"] <= ref["median"]["cpu_us_per_req"]
                        and not lb["errors"],
            }

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    m = meta(root)
    st = settings()
    doc = {"meta": m, "settings": st, "results": results, "bar": bar,
           "elapsed_s": None}

    lines = []
    v = m["versions"]
    lines.append(f"# make bench  {m['date']}  git {m['git'] or '?'}  bin/lb sha256 {m['lb_sha256'] or '?'}")
    lines.append(f"# {m['nproc']} CPUs: {m['cpu_model']}; kernel {m['kernel']}")
    lines.append(f"# {v['lb'] or 'lb ?'}; {v['haproxy']}; {v['nginx']}; {v['wrk']}")
    lines.append(f"# wrk -t1 -c{st['connections']} -d{st['duration_s']:g}s, "
                 f"{st['rounds']} rounds in turn, medians; backends: 2 x {st['backend']}; "
                 f"{st['pinning']}; cpu from {st['cpu_source']}")
    lines.append("# haproxy and nginx " + ("add X-Forwarded-For/-Proto and X-Request-Id like lb"
                                          if st["peer_headers"] else "proxy plainly (no added headers)"))
    loads = [run["loadavg"] for e in results for run in e["runs"] if run.get("loadavg") is not None]
    if loads:
        # the bench itself keeps about nproc tasks runnable
        busy = max(loads) > (m["nproc"] or 1) + 1.5
        lines.append(f"# load average during the runs {min(loads):.1f}..{max(loads):.1f}"
                     + (f" -- the machine was busy with other work; expect noise" if busy else ""))
        m["loadavg_range"] = [min(loads), max(loads)]
    hdr = (f"{'workload':<10} {'proxy':<8} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
           f"{'cpu us/req':>10} {'cpu vs haproxy':>14} {'req/s vs haproxy':>16} "
           f"{'proxy cpu%':>10} {'wait%':>5} {'be conn/req':>11} {'spread rps/cpu':>14}  errors")
    lines.append(hdr)
    for e in results:
        md, vs, sp = e["median"], e["vs_haproxy"], e["spread_pct"]
        err = str(e["errors"]) if e["errors"] else "0"
        if e["flagged_runs"]:
            err += " FLAGGED (rounds " + ",".join(map(str, e["flagged_runs"])) + ")"
        sp_s = f"{sp['rps']:.0f}%/{sp['cpu_us_per_req']:.0f}%" if sp["rps"] is not None \
            and sp["cpu_us_per_req"] is not None else "-"
        lines.append(
            f"{e['workload']:<10} {e['proxy']:<8} {fmt(md['rps'], '.0f', 9)} "
            f"{fmt(md['p50_ms'], '.3f', 7)} {fmt(md['p99_ms'], '.3f', 7)} {fmt(md['p99.9_ms'], '.3f', 8)} "
            f"{fmt(md['cpu_us_per_req'], '.2f', 10)} {fmt(vs['cpu_us_per_req'], '.2f', 14)} "
            f"{fmt(vs['rps'], '.2f', 16)} {fmt(md['proxy_cpu_pct'], '.0f', 10)} "
            f"{fmt(md['proxy_runq_wait_pct'], '.0f', 5)} {fmt(md['backend_conns_per_req'], '.3f', 11)} "
            f"{sp_s:>14}  {err}")
    for w, b in bar.items():
        lines.append(f"bar {w:<10} lb {b['lb_cpu_us_per_req']:.2f} us/req vs haproxy "
                     f"{b['haproxy_cpu_us_per_req']:.2f} us/req (x{b['ratio']:.2f}): "
                     f"{'ok' if b['pass'] else 'NOT MET'}")
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
    elif len(argv) == 4 and argv[1] == "report":
        report(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
