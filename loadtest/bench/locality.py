#!/usr/bin/env python3
"""make bench, last step: bin/lb alone on locality and on consistent hashing
(HAProxy and nginx have no zone-aware p2c-ewma to set beside it).

  locality.py RESULTS_DIR

Locality run: six lb-backend processes, a1-a3 in zone-a (lb.zone) and b1-b3
in zone-b, each answering after BASE_MS, except a1, slowed 10x (SLOW_MS).
One lb per algorithm, fresh each time: round-robin, least-request and
p2c-ewma over all six (locality off), then p2c-ewma zone-aware; each gets
lb-load, open loop, RATE req/s, 1 s of warm-up then SECONDS measured.
Figures: req/s, p50/p99/p99.9 (from each request's scheduled time), the
share answered in zone-a (X-Backend) and the slow a1's share.

Hash run: the same six backends, all answering after HASH_MS, balance hash
over all six on X-Partition-Key; lb-load sends KEYS keys drawn from a Zipf
distribution (s = ZIPF_S: key 0 carries 18% of the requests). First each
key's owner is found (one request at a time, nothing else in flight, the
backends answering at once), which gives the spread consistent hashing
alone would produce (owners weighted by the Zipf probabilities); then one
measured run per hash_balance. Figures: the share each backend took, the
busiest one's share over the mean (1/6), and "moved": half the sum of
|share - unbounded share| over the backends, the least part of the requests
that cannot have gone to their key's owner.

The tables go to stdout and, with the JSON, to
RESULTS_DIR/bench-STAMP-locality.{txt,json} and latest-locality.{txt,json}.
Processes, pinning (lb on CPU 1, the rest on CPU 0) and priorities are the
failure scenarios' (loadtest/scenarios/lib.py): SCENARIO_BIN, SCENARIO_PIN,
SCENARIO_NICE, SCENARIO_KEEP apply; bench.sh sets them. Knobs:
BENCH_LOCALITY_SECONDS (5), BENCH_LOCALITY_RATE (2000), BENCH_STAMP.
"""
import http.client
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "loadtest", "scenarios"))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (meta: date, git, versions)
import lib  # noqa: E402

BASE_MS = 2
SLOW_MS = 20
HASH_MS = 10
KEYS = 1000
ZIPF_S = 1.1
CONNS = 64  # open loop: the most connections lb-load opens
WARMUP_S = 1
ZONE, OTHER = "zone-a", "zone-b"
NAMES = ["a1", "a2", "a3", "b1", "b2", "b3"]
LOCALITY_RUNS = [("round-robin", "off"), ("least-request", "off"), ("p2c-ewma", "off"), ("p2c-ewma", "zone-aware")]
HASH_BALANCES = [1.1, 1.25, 1.5, 2.0, 1000.0]  # 1000: no bound ever reached


def zipf_probs(k, s):
    w = [(i + 1.0) ** -s for i in range(k)]
    total = sum(w)
    return [x / total for x in w]


def owners(lb, keys):
    """Key -> the backend that answers it, one request at a time on one connection."""
    c = http.client.HTTPConnection(lib.HOST, lb.port, timeout=5)
    out = {}
    try:
        for k in keys:
            c.request("GET", "/", headers={"X-Partition-Key": k})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise lib.ScenarioError("key %s: status %d" % (k, r.status))
            out[k] = r.getheader("X-Backend")
    finally:
        c.close()
    return out


def measure(sc, backends, tag, pool, extra=()):
    """A fresh lb with POOL over BACKENDS, warmed up, then measured: (lb-load report, /stats.json)."""
    entries = [{"name": b.name, "address": b.address, "zone": ZONE if b.name[0] == "a" else OTHER}
               for b in backends]
    lb = sc.lb(backends, backend_entries=entries, zone=ZONE, pool=pool,
               timeouts={"backend": "10s", "client_idle": "10s"})
    return run_on(sc, lb, tag, extra)


def run_on(sc, lb, tag, extra=()):
    sc.load(lb, rate=RATE, seconds=WARMUP_S, conns=CONNS, tag=tag + "-warmup", extra=extra).wait()
    r = sc.load(lb, rate=RATE, seconds=SECONDS, conns=CONNS, tag=tag, extra=extra).wait()
    st = lb.stats()
    if not lb.proc.alive():
        raise lib.ScenarioError("bin/lb died during %s: %s" % (tag, lb.proc.log_tail(8)))
    sc.stop(lb.proc)
    return r, st


def run_figures(r):
    lat = r["latency_us"]
    n = r["requests"] or 1
    by = {name: r["backends"].get(name, 0) for name in NAMES}
    return {
        "requests": r["requests"], "rps": round(r["rps"], 1),
        "p50_ms": lat["p50"] / 1000.0, "p99_ms": lat["p99"] / 1000.0, "p99.9_ms": lat["p999"] / 1000.0,
        "errors": lib.client_errors(r), "errors_by_kind": lib.fmt_errors(r),
        "dropped": (r.get("open_loop") or {}).get("dropped", 0),
        "by_backend": by, "share": {name: by[name] / n for name in NAMES},
    }


def pool_of(stats):
    return [p for p in stats["pools"] if p["name"] == "api"][0]


def locality_runs(sc, backends):
    for b in backends:
        b.control(latency="%dms" % (SLOW_MS if b.name == "a1" else BASE_MS))
    out = []
    for balance, locality in LOCALITY_RUNS:
        tag = "%s-%s" % (balance, locality)
        r, st = measure(sc, backends, tag, {"balance": balance, "locality": locality, "health": {"type": "off"},
                                            "slow_start": "0s"})
        f = run_figures(r)
        p = pool_of(st)
        f.update({
            "balance": balance, "locality": locality,
            "local_share": sum(f["share"][n] for n in NAMES if n[0] == "a"),
            "slow_share": f["share"]["a1"],
            "tiers": p["tiers"],
            "ewma_ms": {b["name"]: b.get("ewma_ms") for b in p["backends"]},
        })
        out.append(f)
        progress("locality %-13s %-10s: %6.0f req/s  p99 %7.3f ms  local %5.1f%%  a1 %5.1f%%%s" % (
            balance, locality, f["rps"], f["p99_ms"], 100 * f["local_share"], 100 * f["slow_share"],
            "  ERRORS %d (%s)" % (f["errors"], f["errors_by_kind"]) if f["errors"] else ""))
    return out


def hash_runs(sc, backends):
    keys = [str(i) for i in range(KEYS)]
    probs = zipf_probs(KEYS, ZIPF_S)
    extra = ["--keys", str(KEYS), "--key-dist", "zipf", "--zipf-s", str(ZIPF_S)]
    out = []
    unbounded = None
    for hb in HASH_BALANCES:
        entries = [{"name": b.name, "address": b.address} for b in backends]
        lb = sc.lb(backends, backend_entries=entries, pool={"balance": "hash", "hash_balance": hb,
                                                            "health": {"type": "off"}, "slow_start": "0s"},
                   timeouts={"backend": "10s", "client_idle": "10s"})
        if unbounded is None:  # the ring does not depend on hash_balance: map the keys once
            for b in backends:
                b.control(latency="0")
            own = owners(lb, keys)
            unbounded = {n: 0.0 for n in NAMES}
            for k, p in zip(keys, probs):
                unbounded[own[k]] += p
            hot_owner = own["0"]
            for b in backends:
                b.control(latency="%dms" % HASH_MS)
        r, st = run_on(sc, lb, "hash-%g" % hb, extra)
        f = run_figures(r)
        busiest = max(f["share"].values())
        f.update({
            "hash_balance": hb,
            "busiest_share": busiest,
            "max_over_mean": busiest * len(NAMES),
            "moved_at_least": sum(abs(f["share"][n] - unbounded[n]) for n in NAMES) / 2,
            "hot_key_owner": hot_owner,
        })
        out.append(f)
        progress("hash balance %-6g: %6.0f req/s  p99 %7.3f ms  busiest %5.1f%% (x%.2f of the mean)  moved >= %4.1f%%%s" % (
            hb, f["rps"], f["p99_ms"], 100 * busiest, f["max_over_mean"], 100 * f["moved_at_least"],
            "  ERRORS %d (%s)" % (f["errors"], f["errors_by_kind"]) if f["errors"] else ""))
    return out, unbounded, hot_owner


def progress(msg):
    print("bench: %s" % msg, file=sys.stderr)
    sys.stderr.flush()


def pct(x):
    return "%5.1f" % (100.0 * x)


def tables(loc, hsh, unbounded, hot_owner, meta, elapsed):
    lines = []
    lines.append("# make bench, locality and hash runs  %s  git %s  bin/lb sha256 %s" % (
        meta["date"], meta["git"] or "?", meta["lb_sha256"] or "?"))
    lines.append("# bin/lb alone (workers 1); lb-load --rate %d -c %d, %d s after %d s of warm-up, a fresh lb "
                 "per row; latency from each request's scheduled time" % (RATE, CONNS, SECONDS, WARMUP_S))
    lines.append("")
    lines.append("# locality: a1 a2 a3 in zone-a (lb.zone), b1 b2 b3 in zone-b; every backend answers after "
                 "%d ms, a1 after %d ms (10x)" % (BASE_MS, SLOW_MS))
    lines.append("%-26s %8s %8s %8s %9s %10s %8s  %s" % ("balance", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
                                                    "zone-a %", "a1 %", "errors"))
    for f in loc:
        name = f["balance"] + (" zone-aware" if f["locality"] == "zone-aware" else "")
        lines.append("%-26s %8.0f %8.3f %8.3f %9.3f %10s %8s  %s" % (
            name, f["rps"], f["p50_ms"], f["p99_ms"], f["p99.9_ms"], pct(f["local_share"]), pct(f["slow_share"]),
            f["errors"] if f["errors"] else "0"))
    lines.append("")
    lines.append("# hash: the six backends, every one answering after %d ms, balance hash on X-Partition-Key over "
                 "all six; lb-load --keys %d --key-dist zipf --zipf-s %g (key 0: %.0f%% of requests, owned by %s)"
                 % (HASH_MS, KEYS, ZIPF_S, 100 * zipf_probs(KEYS, ZIPF_S)[0], hot_owner))
    lines.append("# shares in % of requests; unbounded: each key on its owner (consistent hashing alone); "
                 "moved: at least this share left its key's owner")
    lines.append("%-14s %8s %8s %8s %s %9s %8s  %s" % ("hash_balance", "req/s", "p50 ms", "p99 ms",
                                                     " ".join("%5s" % n for n in NAMES), "max/mean", "moved",
                                                     "errors"))
    lines.append("%-14s %8s %8s %8s %s %9.2f %8s  %s" % ("unbounded", "-", "-", "-",
                                                       " ".join(pct(unbounded[n]) for n in NAMES),
                                                       max(unbounded.values()) * len(NAMES), "0.0", "-"))
    for f in hsh:
        hb = "%g" % f["hash_balance"]
        if f["hash_balance"] >= 1000:
            hb += " (none)"
        lines.append("%-14s %8.0f %8.3f %8.3f %s %9.2f %8s  %s" % (
            hb, f["rps"], f["p50_ms"], f["p99_ms"], " ".join(pct(f["share"][n]) for n in NAMES),
            f["max_over_mean"], pct(f["moved_at_least"]), f["errors"] if f["errors"] else "0"))
    lines.append("# %.0f s" % elapsed)
    return "\n".join(lines) + "\n"


def main(outdir):
    t0 = time.monotonic()
    sc = lib.Scenario("bench-locality", "make bench: locality and hash runs")
    ok = False
    try:
        backends = [lib.Backend(sc, n) for n in NAMES]
        loc = locality_runs(sc, backends)
        hsh, unbounded, hot_owner = hash_runs(sc, backends)
        meta = bench.meta(ROOT)
        elapsed = time.monotonic() - t0
        text = tables(loc, hsh, unbounded, hot_owner, meta, elapsed)
        sys.stdout.write(text)
        doc = {"meta": meta, "settings": {
            "rate": RATE, "seconds": SECONDS, "warmup_s": WARMUP_S, "connections": CONNS, "base_ms": BASE_MS,
            "slow_ms": SLOW_MS, "hash_ms": HASH_MS, "keys": KEYS, "zipf_s": ZIPF_S, "pinning": sc.machine()},
            "locality": loc, "hash": {"unbounded": unbounded, "hot_key_owner": hot_owner, "runs": hsh},
            "elapsed_s": round(elapsed, 1)}
        stamp = os.environ.get("BENCH_STAMP") or time.strftime("%Y%m%d-%H%M%S")
        os.makedirs(outdir, exist_ok=True)
        for name in ("bench-%s-locality" % stamp, "latest-locality"):
            with open(os.path.join(outdir, name + ".json"), "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            with open(os.path.join(outdir, name + ".txt"), "w") as f:
                f.write(text)
        print("results: %s (and latest-locality.json, latest-locality.txt)"
              % os.path.relpath(os.path.join(outdir, "bench-%s-locality.json" % stamp)))
        ok = True
    except (lib.ScenarioError, lib.ProxyDied) as e:
        print("bench: locality and hash runs: %s" % e, file=sys.stderr)
    finally:
        sc.cleanup(ok)
    return 0 if ok else 1


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def env_int(name, default, lo, hi):
    v = os.environ.get(name) or str(default)
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench: %s must be an integer in %d..%d (is %r)" % (name, lo, hi, v))
    return int(v)


SECONDS = env_int("BENCH_LOCALITY_SECONDS", 5, 1, 120)
RATE = env_int("BENCH_LOCALITY_RATE", 2000, 1, 1000000)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    sys.exit(main(sys.argv[1]))
