#!/usr/bin/env python3
"""health-flap: one of three backends fails and passes its health checks in turn.

Load: open loop, 1500 req/s for 12 s, GET / over b1 b2 b3 (round-robin).
Fault: from t=2 s to t=10 s, b2's /healthz is switched every second between
503 and 200 (/__control?health=...); b2 keeps answering requests normally.
Config: health checks every 200 ms (timeout 1 s), fall 3, rise 2.
PASS when: no client error; lb marks b2 down at least twice (the checks see
the flapping); no request is sent to b2 while it is marked down (counted
between /stats.json polls that all show it down, see below); lb still running.
Figures: health transitions seen in lb's log and counters, time b2 spent
down, requests to b2.

"While down" is measured race-free: over the interval between polls i and
i+1 when polls i-1, i, i+1 and i+2 all show b2 down within 0.6 s (health
cannot go up and down again that fast: rise + fall take at least 0.9 s).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 1500
SECONDS = 12
FLAP_FROM, FLAP_TO = 2.0, 10.0
PERIOD = 1.0


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3)
    lb = sc.lb([b1, b2, b3], pool={
        "health": {"interval": "200ms", "timeout": "1s", "fall": 3, "rise": 2},
    })
    poll = sc.poller(lb)
    load = sc.load(lb, "/", rate=RATE, seconds=SECONDS, conns=100)
    start = load.t_start + FLAP_FROM
    before = lib.backend_of(lb.stats(), "b2")
    n = int((FLAP_TO - FLAP_FROM) / PERIOD)
    for i in range(n):
        sc.sleep_until(start + i * PERIOD)
        st = 503 if i % 2 == 0 else 200
        b2.control(health=st)
        v.event(sc.t(), "b2: health=%d" % st)
    sc.sleep_until(start + n * PERIOD)
    b2.control(health=200)
    v.event(sc.t(), "b2: health=200 (end of the flapping)")
    r = load.wait()
    final = lb.stats()
    poll.stop()
    after = lib.backend_of(final, "b2")

    samples = [(t, lib.backend_of(s, "b2")) for t, s in poll.snapshot() if s is not None]
    down_sent, windows, down_time = 0, 0, 0.0
    for i in range(1, len(samples) - 2):
        quad = samples[i - 1:i + 3]
        if all(b["health"] == "down" for _, b in quad) and quad[-1][0] - quad[0][0] <= 0.6:
            down_sent += samples[i + 1][1]["requests"] - samples[i][1]["requests"]
            windows += 1
            down_time += samples[i + 1][0] - samples[i][0]
    downs = [t for t, line in sc.lb_events(lb, r"health down for api/b2")]
    ups = [t for t, line in sc.lb_events(lb, r"health up for api/b2")]
    trans = after["health_checks"]["transitions"] - before["health_checks"]["transitions"]
    panics = sc.lb_events(lb, r"in panic")
    sc.note_events(lb)

    lib.load_figures(v, r)
    v.fig("fault", "b2 /healthz 503 and 200 in turn every %.1f s, t=%.1f..%.1f s" % (
        PERIOD, start, start + n * PERIOD))
    v.fig("b2 health", "%d down and %d up transitions in lb's log after the start; counter +%d; now %s" % (
        len(downs), len(ups) - 1, trans, after["health"]))
    v.fig("b2 requests", "%d in all (slow_start 10s ramps it back after each recovery); %d while seen down (%.1f s of down time checked in %d poll intervals)" % (
        after["requests"], down_sent, down_time, windows))
    v.fig("panic", "pool entered panic %d times" % len(panics))
    errs = lib.client_errors(r)
    v.check("client errors == 0", errs == 0, "%d (%s)" % (errs, lib.fmt_errors(r)))
    v.check("b2 marked down at least twice", len(downs) >= 2, "%d times" % len(downs))
    v.check("no request sent to b2 while it was down", down_sent == 0 and windows > 0,
            "%d requests in %d checked intervals" % (down_sent, windows))
    sc.check_alive(lb)
    v.summary = "errors %d, b2 down %d times, %d requests while down" % (errs, len(downs), down_sent)


if __name__ == "__main__":
    lib.run("health-flap", "health checks of a backend flapping", main)
