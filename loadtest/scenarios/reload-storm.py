#!/usr/bin/env python3
"""reload-storm: SIGHUP every 100 ms for SCENARIO_SECONDS (30 s) under open-loop load.

Setup: 2 workers, backends b1 b2 b3.
1. peak: closed loop, 50 connections, 3 s (GET /): the proxy's peak req/s here.
2. baseline: open loop at half the peak, 5 s, no reload: p99 without; then lb's RSS.
3. storm: open loop at half the peak for SCENARIO_SECONDS + 1 s; from 0.5 s in,
   every 100 ms the config file is rewritten (atomically, b3's weight
   alternating 100/90, so every reload changes something) and lb gets SIGHUP.
   Then lb's RSS again, once every reload is counted.
Preconditions (else ERROR, not a verdict): the peak and baseline runs are clean.
PASS when: no failed request during the storm (no error of any class, no
non-2xx); every SIGHUP was applied (reloads.failed == 0 and reloads.ok ==
SIGHUPs sent, less those that came while lb had not yet handled the previous
one: POSIX signals do not queue, so these merge, which shows as a gap of two
periods or more between reloads in lb's log); the last config written is in
effect; RSS after the storm <= RSS before x 1.05 + 512 KiB; lb still running.
Figures: p99 without vs during the storm, reloads ok/failed and generation,
RSS before / peak during / after.
"""
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

PERIOD = 0.1
RSS_SLACK_KB = 512
# every run uses at most this many connections: lb keeps released I/O buffers
# for reuse, so its RSS follows the most requests it ever had in flight; the
# peak run (closed loop, all CONNS busy) reaches that before RSS is first read,
# and the RSS comparison then sees what the reloads add, not a higher
# concurrency during the storm
CONNS = 50


def main(sc):
    v = sc.v
    storm_s = sc.seconds
    bs = sc.backends(3)
    lb = sc.lb(bs, workers=2, pool={"health": {"interval": "200ms", "timeout": "1s"}})

    def entries(w3):
        return [{"name": b.name, "address": b.address, "weight": 90 if (b.name == "b3" and w3) else 100}
                for b in bs]

    peak = sc.load(lb, "/", seconds=3, conns=CONNS, tag="peak").wait()
    sc.require(lib.client_errors(peak) == 0, "the peak run had %d errors (%s)" % (
        lib.client_errors(peak), lib.fmt_errors(peak)))
    rate = max(100, int(peak["rps"] / 2))
    base = sc.load(lb, "/", rate=rate, seconds=5, conns=CONNS, tag="baseline").wait()
    # without a clean baseline at half the peak, the machine (or lb) is not in a
    # state where the storm can be judged
    sc.require(lib.client_errors(base) == 0 and not base["open_loop"]["dropped"],
               "the baseline run (no reload, %d req/s) was not clean: %d errors (%s), %d dropped" % (
                   rate, lib.client_errors(base), lib.fmt_errors(base), base["open_loop"]["dropped"]))
    rss_before = lb.rss_kb()
    st0 = lb.stats()
    poll = sc.poller(lb, interval=0.25)
    storm = sc.load(lb, "/", rate=rate, seconds=storm_s + 1, conns=CONNS, tag="storm")
    t_storm = storm.t_start + 0.5
    sent = 0
    last_w3 = 100
    for i in range(int(round(storm_s / PERIOD))):
        sc.sleep_until(t_storm + i * PERIOD)
        lb.write_config(backend_entries=entries(i % 2 == 0))
        last_w3 = 90 if i % 2 == 0 else 100
        lb.proc.signal(signal.SIGHUP)
        sent += 1
    v.event(t_storm, "first SIGHUP")
    v.event(sc.t(), "last SIGHUP (%d sent)" % sent)
    rs = storm.wait()
    poll.stop()
    want = st0["reloads"]["ok"] + st0["reloads"]["failed"] + sent

    def settled():
        rl = lb.stats()["reloads"]
        return rl if rl["ok"] + rl["failed"] >= want else None
    try:
        lib.wait_until(settled, 5, interval=0.05, what="every reload to be counted")
    except lib.ScenarioError:
        pass  # judged below
    final = lb.stats()
    rss_after = lb.rss_kb()
    rl = final["reloads"]
    ok, failed = rl["ok"] - st0["reloads"]["ok"], rl["failed"] - st0["reloads"]["failed"]
    # SIGHUPs that arrive while lb's main thread has not yet handled the previous one
    # merge into one (POSIX signals do not queue): that needs a gap of two periods or
    # more between consecutive reloads in lb's log
    applied = sorted(w for w, _ in lb.log_events(r"reload: .* applied") if w)
    merged = sum(max(0, int(round((b - a) / PERIOD)) - 1) for a, b in zip(applied, applied[1:]))
    durs = [float(m) for _, line in lb.log_events(r"reload complete")
            for m in re.findall(r"\(([0-9.]+)ms\)", line)]
    rss_peak = max([s["memory"]["rss_bytes"] // 1024 for _, s in poll.snapshot() if s] or [0])
    weights = [b["weight"] for b in final["pools"][0]["backends"]]

    lib.load_figures(v, peak, "peak")
    lib.load_figures(v, base, "baseline")
    lib.load_figures(v, rs, "storm")
    v.fig("fault", "SIGHUP every %d ms for %d s: %d sent (config rewritten each time)" % (
        PERIOD * 1000, storm_s, sent))
    v.fig("reloads", "ok %d, failed %d, generation %d, last %s%s; weights now %s" % (
        ok, failed, rl["generation"], rl["last"],
        ", last error: " + rl["last_error"] if rl["last_error"] else "", weights))
    if durs:
        durs.sort()
        v.fig("reload time ms", "until every worker runs it: median %.1f, max %.1f; %d gaps of 2+ periods "
              "between reloads (up to %d SIGHUPs merged)" % (durs[len(durs) // 2], durs[-1],
                                                             sum(1 for a, b in zip(applied, applied[1:])
                                                                 if b - a >= 1.5 * PERIOD), merged))
    p99b, p99s = base["latency_us"]["p99"] / 1000.0, rs["latency_us"]["p99"] / 1000.0
    v.fig("p99 ms", "without reloads %.2f, during the storm %.2f (x%.2f); p99.9 %.2f vs %.2f" % (
        p99b, p99s, p99s / p99b if p99b else 0, base["latency_us"]["p999"] / 1000.0,
        rs["latency_us"]["p999"] / 1000.0))
    v.fig("lb RSS KiB", "before %d, peak during (polled) %d, after %d" % (rss_before, rss_peak, rss_after or -1))
    errs = lib.client_errors(rs)
    v.check("failed requests during the storm == 0", errs == 0, "%d (%s)" % (errs, lib.fmt_errors(rs)))
    v.check("every SIGHUP applied (reloads.ok == sent, failed == 0; a SIGHUP that came while lb had "
            "not handled the last one merges with it)", failed == 0 and ok <= sent and sent - ok <= merged,
            "ok %d of %d sent, failed %d, merged at most %d" % (ok, sent, failed, merged))
    v.check("the last config written is in effect (b3 weight %d)" % last_w3, weights[2] == last_w3,
            "b3 weight %s" % weights[2])
    limit = rss_before * 1.05 + RSS_SLACK_KB
    v.check("RSS after <= RSS before x 1.05 + %d KiB" % RSS_SLACK_KB,
            rss_after is not None and rss_after <= limit, "%s KiB <= %.0f KiB" % (rss_after, limit))
    sc.check_alive(lb)
    v.summary = "errors %d, reloads %d/%d, p99 %.1f -> %.1f ms, RSS %d -> %s KiB" % (
        errs, ok, sent, p99b, p99s, rss_before, rss_after)


if __name__ == "__main__":
    lib.run("reload-storm", "config reload every 100 ms under load", main)
