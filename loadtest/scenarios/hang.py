#!/usr/bin/env python3
"""hang: one of three backends stops answering (reads requests, never replies).

Load: open loop, 600 req/s for 10 s, GET / over b1 b2 b3 (round-robin), up to
400 connections (the hung requests hold theirs for timeouts.backend).
Fault: /__control?hang=1 on b2 at t=2 s.
Config: timeouts.backend = 1s (then 504); timeouts are not in retry.on, so
each hung request costs its client a 504; the breaker trips on 5 consecutive
failures and opens for 2 s.
PASS when: b2's breaker opens within timeouts.backend + 1 s of the fault; every
client error is one of those 504s (client 5xx == lb's timeouts on b2, no other
error class); the 504s are bounded by the requests that went to b2 before its
breaker opened plus the half-open probes (half_open_probes per period); lb is
still running.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 600
SECONDS = 10
FAULT_AT = 2.0
BACKEND_TIMEOUT = 1.0
PROBES = 3


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3)
    lb = sc.lb([b1, b2, b3], timeouts={"backend": "%dms" % (BACKEND_TIMEOUT * 1000)}, pool={
        "breaker": {"consecutive_failures": 5, "open_for": "2s", "max_open_for": "10s",
                    "half_open_probes": PROBES},
        "retry": {"attempts": 2, "on": ["connect-failure", "reset"]},
        "health": {"interval": "200ms", "timeout": "1s"},
    })
    poll = sc.poller(lb)
    load = sc.load(lb, "/", rate=RATE, seconds=SECONDS, conns=400)
    sc.sleep_until(load.t_start + FAULT_AT)
    before = lib.backend_of(lb.stats(), "b2")
    t_fault, wall_fault = sc.t(), time.time()
    b2.control(hang=1)
    v.event(t_fault, "b2: hang=1 (%d requests sent to it so far)" % before["requests"])
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
    # requests admitted to b2 from the fault to the first poll that saw the breaker open:
    # an upper bound of those in flight when it opened (the poll can only be late)
    sent_before_open = (lib.backend_of(at_open[1], "b2")["requests"] - before["requests"]) if at_open else None
    peak_inflight = max([lib.backend_of(s, "b2")["inflight"] for t, s in poll.snapshot()
                         if s is not None and t >= t_fault] or [0])
    timeouts = after["failures_by_kind"]["timeout"] - before["failures_by_kind"]["timeout"]
    tr = after["breaker_transitions"]
    bound = (sent_before_open or 0) + PROBES * tr["half_opened"]
    sc.note_events(lb)

    lib.load_figures(v, r)
    v.fig("fault", "b2 hang=1 at t=%.2f s; timeouts.backend %.1f s" % (t_fault, BACKEND_TIMEOUT))
    v.fig("breaker open after", "%s (b2 breaker now %s; transitions %s; reason: %s)" % (
        "%.3f s" % t_open if t_open is not None else "never", after["breaker"], tr,
        after["breaker_reason"] or "-"))
    v.fig("b2 before the breaker", "%s requests sent to b2 between the fault and the breaker opening "
          "(poll, upper bound); peak in flight seen %d" % (sent_before_open, peak_inflight))
    v.fig("b2 timeouts", "%d (504 to the client); b2 left %d requests hanging; %d attempts on b2 "
          "after the fault" % (timeouts, bstats["injected"]["hangs"], after["requests"] - before["requests"]))
    s5 = r["status"]["5xx"]
    other = lib.client_errors(r) - s5
    v.check("b2 breaker open within timeouts.backend + 1 s of the fault",
            t_open is not None and t_open <= BACKEND_TIMEOUT + 1.0,
            "%.3f s" % t_open if t_open is not None else "never opened")
    v.check("client errors are only the 504s of b2's timeouts (5xx == timeouts, nothing else)",
            other == 0 and s5 == timeouts, "5xx %d, lb timeouts on b2 %d, other errors %d (%s)" % (
                s5, timeouts, other, lib.fmt_errors(r)))
    v.check("504s <= requests sent to b2 before its breaker opened + %d per half-open period" % PROBES,
            at_open is not None and s5 <= bound,
            "%d <= %s + %d x %d = %d" % (s5, sent_before_open, PROBES, tr["half_opened"], bound))
    sc.check_alive(lb)
    v.summary = "504s %d (bound %d), breaker open %s" % (
        s5, bound, "%.2f s" % t_open if t_open is not None else "never")


if __name__ == "__main__":
    lib.run("hang", "a backend that stops answering", main)
