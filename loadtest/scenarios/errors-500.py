#!/usr/bin/env python3
"""errors-500: one of three backends answers every request with 500.

Load: open loop, 2000 req/s for 10 s, GET / over b1 b2 b3 (round-robin).
Fault: /__control?error_rate=1 on b2 at t=2 s (every answer a 500).
Config: retry.on includes "5xx" (a GET that got a 5xx is tried on another
backend), breaker trips on 5 consecutive failures and opens for 2 s (then
doubles on each re-trip).
PASS when: no client error (every 500 was retried elsewhere), b2's breaker
opens within 1 s of the fault, b2 answered no more 500s after it opened than
the requests it had in flight then and its half-open probes (half_open_probes
per half-open period) can account for, and lb is still running.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 2000
SECONDS = 10
FAULT_AT = 2.0
OPEN_WITHIN = 1.0
PROBES = 3


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3)
    lb = sc.lb([b1, b2, b3], pool={
        "breaker": {"consecutive_failures": 5, "open_for": "2s", "max_open_for": "10s",
                    "half_open_probes": PROBES},
        "retry": {"attempts": 2, "on": ["connect-failure", "reset", "5xx"]},
        "health": {"interval": "200ms", "timeout": "1s"},
    })
    poll = sc.poller(lb)
    load = sc.load(lb, "/", rate=RATE, seconds=SECONDS, conns=100)
    sc.sleep_until(load.t_start + FAULT_AT)
    before = lib.backend_of(lb.stats(), "b2")
    t_fault, wall_fault = sc.t(), time.time()
    b2.control(error_rate=1)
    v.event(t_fault, "b2: error_rate=1 (%d requests sent to it so far)" % before["requests"])
    r = load.wait()
    final = lb.stats()
    poll.stop()
    after = lib.backend_of(final, "b2")
    bstats = b2.stats()

    opened = [w for w, _ in lb.log_events(r"breaker open for api/b2") if w and w >= wall_fault - 0.001]
    t_open = opened[0] - wall_fault if opened else None
    at_open = poll.first(lambda st: lib.backend_of(st, "b2")["breaker"] == "open", after=t_fault)
    if t_open is None and at_open:
        t_open = at_open[0] - t_fault
    e500 = after["responses"]["5xx"] - before["responses"]["5xx"]
    e500_after_open = (after["responses"]["5xx"] - lib.backend_of(at_open[1], "b2")["responses"]["5xx"]
                       if at_open else None)
    tr = after["breaker_transitions"]
    probe_allow = PROBES * tr["half_opened"]
    sc.note_events(lb)

    lib.load_figures(v, r)
    v.fig("fault", "b2 error_rate=1 at t=%.2f s" % t_fault)
    v.fig("breaker open after", "%s (b2 breaker now %s; transitions %s; reason: %s)" % (
        "%.3f s" % t_open if t_open is not None else "never", after["breaker"], tr,
        after["breaker_reason"] or "-"))
    v.fig("500s from b2", "%d after the fault, each retried on another backend; %s after the breaker "
          "was seen open (poll); b2 injected %d errors in all" % (
              e500, e500_after_open if e500_after_open is not None else "-", bstats["injected"]["errors"]))
    v.fig("b2 attempts after fault", "%d" % (after["requests"] - before["requests"]))
    errs = lib.client_errors(r)
    v.check("client errors == 0", errs == 0, "%d (%s)" % (errs, lib.fmt_errors(r)))
    v.check("b2 breaker open within %.1f s of the fault" % OPEN_WITHIN,
            t_open is not None and t_open <= OPEN_WITHIN,
            "%.3f s" % t_open if t_open is not None else "never opened")
    # counted from the first poll that saw it open; the requests b2 had in flight then
    # were sent before it opened, and may come back with their 500 after that poll
    inflight_at_open = lib.backend_of(at_open[1], "b2")["inflight"] if at_open else 0
    v.check("500s after the breaker opened <= those in flight when it opened + probes (%d per half-open "
            "period)" % PROBES,
            e500_after_open is not None and e500_after_open <= inflight_at_open + probe_allow,
            "%s <= %d + %d x %d" % (e500_after_open, inflight_at_open, PROBES, tr["half_opened"]))
    sc.check_alive(lb)
    v.summary = "errors %d, breaker open %s, %d 500s retried" % (
        errs, "%.0f ms" % (t_open * 1000) if t_open is not None else "never", e500)


if __name__ == "__main__":
    lib.run("errors-500", "a backend answering 500 to everything", main)
