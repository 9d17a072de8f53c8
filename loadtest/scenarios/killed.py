#!/usr/bin/env python3
"""killed: one of three backends is SIGKILLed under open-loop load.

Load: open loop, 2000 req/s for 10 s, GET / over b1 b2 b3 (round-robin).
Fault: SIGKILL b2 at t=2 s.
PASS when: no client error (the requests caught on b2 are retried elsewhere:
retry.on connect-failure and reset), b2's breaker opens within 1 s of the kill,
and lb is still running.
Figures: client errors by class, latency, time to breaker open (from lb's log,
to the millisecond), requests lb sent to b2 after the kill (and how they failed).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 2000
SECONDS = 10
FAULT_AT = 2.0
OPEN_WITHIN = 1.0


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3)
    lb = sc.lb([b1, b2, b3], pool={
        "breaker": {"consecutive_failures": 5, "open_for": "2s", "max_open_for": "10s"},
        "retry": {"attempts": 2, "on": ["connect-failure", "reset"]},
        "health": {"interval": "200ms", "timeout": "1s", "fall": 3, "rise": 2},
    })
    poll = sc.poller(lb)
    load = sc.load(lb, "/", rate=RATE, seconds=SECONDS, conns=100)
    sc.sleep_until(load.t_start + FAULT_AT)
    before = lib.backend_of(lb.stats(), "b2")
    t_fault, wall_fault = sc.t(), time.time()
    b2.proc.signal(signal.SIGKILL)
    b2.proc.wait(2)
    v.event(t_fault, "SIGKILL b2 (%d requests sent to it so far)" % before["requests"])
    r = load.wait()
    final = lb.stats()
    poll.stop()
    after = lib.backend_of(final, "b2")

    opened = [w for w, line in lb.log_events(r"breaker open for api/b2") if w and w >= wall_fault - 0.001]
    t_open = opened[0] - wall_fault if opened else None
    if t_open is None:  # the poll, to 100 ms
        s = poll.first(lambda st: lib.backend_of(st, "b2")["breaker"] == "open", after=t_fault)
        t_open = s[0] - t_fault if s else None
    at_open = poll.first(lambda st: lib.backend_of(st, "b2")["breaker"] == "open", after=t_fault)
    sent_after = after["requests"] - before["requests"]
    fk = {k: after["failures_by_kind"][k] - before["failures_by_kind"][k] for k in after["failures_by_kind"]}
    sc.note_events(lb)

    lib.load_figures(v, r)
    v.fig("fault", "SIGKILL b2 at t=%.2f s" % t_fault)
    v.fig("breaker open after", "%s (b2 breaker now %s; transitions %s; reason: %s)" % (
        "%.3f s" % t_open if t_open is not None else "never", after["breaker"],
        after["breaker_transitions"], after["breaker_reason"] or "-"))
    v.fig("sent to b2 after kill", "%d attempts (failures: %s)%s" % (
        sent_after, ", ".join("%s %d" % kv for kv in fk.items() if kv[1]) or "none",
        "; %d of them after the breaker was seen open (poll)" % (
            after["requests"] - lib.backend_of(at_open[1], "b2")["requests"]) if at_open else ""))
    v.fig("b2 health", "%s (checks ok %d, failed %d)" % (
        after["health"], after["health_checks"]["ok"], after["health_checks"]["failed"]))
    errs = lib.client_errors(r)
    v.check("client errors == 0", errs == 0, "%d (%s)" % (errs, lib.fmt_errors(r)))
    v.check("b2 breaker open within %.1f s of the kill" % OPEN_WITHIN,
            t_open is not None and t_open <= OPEN_WITHIN,
            "%.3f s" % t_open if t_open is not None else "never opened")
    v.check("lb-load ran its schedule (nothing dropped)", not r["open_loop"]["dropped"],
            "%d dropped" % r["open_loop"]["dropped"])
    sc.check_alive(lb)
    v.summary = "errors %d, breaker open %s, %d attempts on dead b2" % (
        errs, "%.0f ms" % (t_open * 1000) if t_open is not None else "never", sent_after)


if __name__ == "__main__":
    lib.run("killed", "a backend killed under open-loop load", main)
