#!/usr/bin/env python3
"""slow-10x: one of three backends becomes 10 times slower (20 ms -> 200 ms).

Backends: b1 b2 b3 answer GET / after 20 ms (lb-backend --latency 20ms).
Load: open loop, 600 req/s, in three back-to-back lb-load runs:
  before  4 s, all backends at 20 ms: the baseline p99;
  during  from 0.5 s before the fault until the breaker is seen open (at most 8 s);
  after   5 s with b2 still slow and its breaker open.
Fault: /__control?latency=200ms on b2.
Config: breaker slow_call 100ms, slow_call_rate 0.5 over a 2 s window
(min_requests 20), open_for 10s (so "after" is one open period).
Control: a second lb-load straight to b1 (50 req/s) during "before" and
"after" shows the machine's own latency noise next to the proxy's figures.
Precondition (else ERROR, not a verdict): "before" is clean, with a p99 under
half of b2's slowed latency.
PASS when: b2's breaker opens on the slow call rate within window + 1 s of the
fault; during "after" no request goes to b2 but half-open probes; p99 of
"after" is back near the baseline (<= 2 x baseline p99 + 10 ms, far below the
200 ms a request to b2 takes); no client errors in any phase; lb still running.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 600
BASE_MS = 20
SLOW_MS = 200
WINDOW_S = 2.0
CONTROL_RATE = 50
PROBES = 3


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3, ["--latency", "%dms" % BASE_MS])
    lb = sc.lb([b1, b2, b3], pool={
        "breaker": {"slow_call": "100ms", "slow_call_rate": 0.5, "window": "%dms" % (WINDOW_S * 1000),
                    "min_requests": 20, "open_for": "10s", "max_open_for": "20s",
                    "half_open_probes": PROBES},
        "health": {"interval": "200ms", "timeout": "1s"},
    })
    poll = sc.poller(lb)
    # control: lb-load straight to b1 (no proxy) alongside "before" and "after", to tell
    # the machine's own latency noise from the proxy's
    ctl_b = lib.Load(sc, "http://%s/" % b1.address, seconds=4, rate=CONTROL_RATE, conns=50, tag="control-before")
    base = sc.load(lb, "/", rate=RATE, seconds=4, conns=200, tag="before").wait()
    ctl_b = ctl_b.wait()
    sc.require(lib.client_errors(base) == 0 and base["latency_us"]["p99"] / 1000.0 < SLOW_MS / 2,
               "the run before the fault was not clean: %d errors (%s), p99 %.1f ms (must be under %d ms "
               "to tell a recovery)" % (lib.client_errors(base), lib.fmt_errors(base),
                                        base["latency_us"]["p99"] / 1000.0, SLOW_MS / 2))

    fault = sc.load(lb, "/", rate=RATE, seconds=10, conns=300, tag="during")
    sc.sleep_until(fault.t_start + 0.5)
    t_fault, wall_fault = sc.t(), time.time()
    b2.control(latency="%dms" % SLOW_MS)
    v.event(t_fault, "b2: latency=%dms" % SLOW_MS)

    def is_open():
        return lib.backend_of(lb.stats(), "b2")["breaker"] == "open"
    try:
        lib.wait_until(is_open, 8, interval=0.05, what="b2's breaker to open")
    except lib.ScenarioError:
        pass  # judged below
    fault.interrupt()
    rf = fault.wait()
    at_after = lib.backend_of(lb.stats(), "b2")
    ctl_a = lib.Load(sc, "http://%s/" % b1.address, seconds=5, rate=CONTROL_RATE, conns=50, tag="control-after")
    ra = sc.load(lb, "/", rate=RATE, seconds=5, conns=200, tag="after").wait()
    ctl_a = ctl_a.wait()
    final = lb.stats()
    poll.stop()
    after = lib.backend_of(final, "b2")

    opened = [w for w, _ in lb.log_events(r"breaker open for api/b2") if w and w >= wall_fault - 0.001]
    t_open = opened[0] - wall_fault if opened else None
    sc.note_events(lb)
    reason = [line for _, line in lb.log_events(r"breaker open for api/b2")][:1]

    lib.load_figures(v, base, "before")
    lib.load_figures(v, rf, "during")
    lib.load_figures(v, ra, "after")
    v.fig("fault", "b2 latency %d ms -> %d ms at t=%.2f s" % (BASE_MS, SLOW_MS, t_fault))
    v.fig("breaker open after", "%s (b2 breaker now %s; transitions %s; reason: %s)" % (
        "%.3f s" % t_open if t_open is not None else "never", after["breaker"],
        after["breaker_transitions"], reason[0].split(": ", 3)[-1] if reason else "-"))
    p99b, p99f, p99a = (r["latency_us"]["p99"] / 1000.0 for r in (base, rf, ra))
    bound = 2 * p99b + 10
    v.fig("p99 ms", "before %.1f, during the fault %.1f, after the trip %.1f" % (p99b, p99f, p99a))
    v.fig("control p99 ms", "lb-load straight to b1 at %d req/s: before %.1f, after %.1f (machine noise)" % (
        CONTROL_RATE, ctl_b["latency_us"]["p99"] / 1000.0, ctl_a["latency_us"]["p99"] / 1000.0))
    leak = after["requests"] - at_after["requests"]
    tr = after["breaker_transitions"]
    v.check("b2 breaker open on the slow call rate within window + 1 s of the fault",
            t_open is not None and t_open <= WINDOW_S + 1 and reason and "slow call rate" in reason[0],
            "%s%s" % ("%.3f s" % t_open if t_open is not None else "never opened",
                      ", " + reason[0].split(": ", 3)[-1] if reason else ""))
    v.check("requests sent to b2 after the trip <= half-open probes (%d per period)" % PROBES,
            leak <= PROBES * tr["half_opened"], "%d (half-open periods %d)" % (leak, tr["half_opened"]))
    v.check("p99 after the trip back near the baseline (<= 2 x p99 before + 10 ms)", p99a <= bound,
            "%.1f ms <= %.1f ms" % (p99a, bound))
    errs = sum(lib.client_errors(r) for r in (base, rf, ra))
    v.check("client errors == 0 (all three runs)", errs == 0, "%d" % errs)
    sc.check_alive(lb)
    v.summary = "breaker open %s, p99 %.0f/%.0f/%.0f ms before/fault/after" % (
        "%.2f s" % t_open if t_open is not None else "never", p99b, p99f, p99a)


if __name__ == "__main__":
    lib.run("slow-10x", "a backend slowed 10x", main)
