#!/usr/bin/env python3
"""backend-drain: one of three backends drained through the admin API under load.

Backends: b1 b2 b3 answer after 50 ms (lb-backend --latency 50ms), so that
each has about 25 requests in flight when the drain comes.
Load: open loop, 1500 req/s for 10 s, GET / (round-robin), up to 300 connections.
Fault: at t=3 s, POST /api/pools/api/backends/b2/state with body "drain" and
the admin token (admin.token is set).
PASS when: no client error; the API answers 200 with admin_state "drain";
b2's inflight reaches 0 and drained turns true within 1 s (its requests take
50 ms); no request is sent to b2 after the call (lb's b2 request count at the
end equals the one in the API's answer); b2's connections from lb all close
within 1 s of drained (lb keeps none idle to a drained backend); lb still
running.
Figures: time to drained (polled every 10 ms), b2's in-flight count at the
call, requests by backend.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

RATE = 1500
SECONDS = 10
FAULT_AT = 3.0
TOKEN = "scenario-drain-token"


def main(sc):
    v = sc.v
    b1, b2, b3 = sc.backends(3, ["--latency", "50ms"])
    lb = sc.lb([b1, b2, b3], token=TOKEN, pool={"health": {"interval": "200ms", "timeout": "1s"}})
    poll = sc.poller(lb)
    load = sc.load(lb, "/", rate=RATE, seconds=SECONDS, conns=300)
    sc.sleep_until(load.t_start + FAULT_AT)
    t_call = sc.t()
    st, _, body = lb.post("/api/pools/api/backends/b2/state", "drain", TOKEN)
    t_answer = sc.t()
    try:
        at_call = json.loads(body)
    except ValueError:
        at_call = {}
    v.event(t_call, "POST .../b2/state drain -> %d (inflight %s, requests %s)" % (
        st, at_call.get("inflight"), at_call.get("requests")))

    def drained():
        b = lib.backend_of(lb.stats(), "b2")
        return (sc.t(), b) if b["drained"] and b["inflight"] == 0 else None
    t_drained = None
    try:
        t_drained, b_drained = lib.wait_until(drained, 5, interval=0.01, what="b2 to be drained")
        v.event(t_drained, "b2 drained (inflight 0)")
    except lib.ScenarioError:
        pass  # judged below

    conns_closed = None
    if t_drained is not None:
        try:
            # active_connections counts the /__stats connection itself
            lib.wait_until(lambda: b2.stats()["active_connections"] <= 1, 1.0, interval=0.01,
                           what="b2's connections to close")
            conns_closed = sc.t() - t_drained
            v.event(sc.t(), "b2 has no connection left")
        except lib.ScenarioError:
            pass
    r = load.wait()
    final = lb.stats()
    poll.stop()
    after = lib.backend_of(final, "b2")
    bst = b2.stats()
    sc.note_events(lb, r"admin:")

    lib.load_figures(v, r)
    v.fig("fault", "POST drain for b2 at t=%.3f s, answered in %.1f ms: %d, admin_state %s, inflight %s" % (
        t_call, (t_answer - t_call) * 1000, st, at_call.get("admin_state"), at_call.get("inflight")))
    v.fig("drained after", "%s after the call" % ("%.3f s" % (t_drained - t_call) if t_drained else "never"))
    v.fig("b2 requests", "%s at the call, %d at the end (lb); b2 answered %d, has %d connections open "
          "besides the one asking" % (at_call.get("requests"), after["requests"], bst["requests"],
                                      bst["active_connections"] - 1))
    v.fig("b2 state at end", "admin_state %s, drained %s, inflight %d" % (
        after["admin_state"], after["drained"], after["inflight"]))
    errs = lib.client_errors(r)
    v.check("client errors == 0", errs == 0, "%d (%s)" % (errs, lib.fmt_errors(r)))
    v.check("API answers 200 with admin_state drain", st == 200 and at_call.get("admin_state") == "drain",
            "%d %s" % (st, at_call.get("admin_state")))
    v.check("b2 drained (inflight 0, drained true) within 1 s", t_drained is not None and t_drained - t_call <= 1,
            "%.3f s" % (t_drained - t_call) if t_drained else "never")
    v.check("no request sent to b2 after the drain call", after["requests"] == at_call.get("requests"),
            "%d new" % (after["requests"] - at_call.get("requests", 0)))
    v.check("b2's connections from lb closed within 1 s of drained",
            conns_closed is not None, "%.3f s" % conns_closed if conns_closed is not None else
            "%d still open at the end" % (bst["active_connections"] - 1))
    sc.check_alive(lb)
    v.summary = "errors %d, drained %s, %d requests to b2 after the call" % (
        errs, "%.0f ms" % ((t_drained - t_call) * 1000) if t_drained else "never",
        after["requests"] - at_call.get("requests", 0))


if __name__ == "__main__":
    lib.run("backend-drain", "backend drained through the admin API under load", main)
