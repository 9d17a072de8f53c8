"""The demo configuration (config/lb.conf, what `make run` starts) does what its
comments say: the admin token it prints allows a drain, the three backends share the
load equally without lb.zone, and with lb.zone = "zone-a" the local tier keeps
min(1, 1.4 x its healthy share). The file is run as shipped, but for its ports (moved
to the test's own) and workers = 1 (so round-robin counts are exact)."""

import os
import re
import time
from collections import Counter

from harness import ROOT, HttpConn, check, eq

DEMO = os.path.join(ROOT, "config", "lb.conf")


def _demo_lb(t, zone=None):
    with open(DEMO) as f:
        text = f.read()
    token = re.search(r'^\s*token = "([^"]+)";', text, re.M)
    check(token is not None, "config/lb.conf sets no admin.token")
    bs = {name: t.backend(name) for name in ("b1", "b2", "b3")}
    port, admin = t.port(), t.port()
    for old, new in [("127.0.0.1:8080", "127.0.0.1:%d" % port), ("127.0.0.1:9900", "127.0.0.1:%d" % admin)] + \
            [("127.0.0.1:%d" % (9000 + i), bs["b%d" % i].addr) for i in (1, 2, 3)]:
        check(old in text, "config/lb.conf no longer has %s" % old)
        text = text.replace(old, new)
    text, n = re.subn(r"workers = 0;", "workers = 1;", text)
    eq(n, 1, "workers settings replaced in the demo")
    if zone:
        text, n = re.subn(r'# zone = "zone-a";', 'zone = "%s";' % zone, text)
        eq(n, 1, "the commented-out lb.zone of the demo")
    lb = t.lb(text, ready=False)  # a text config: the harness cannot see its ports
    lb.port, lb.admin_port = port, admin
    return lb.wait_ready(), token.group(1)


def _counts(lb, n):
    c = lb.conn()
    seen = Counter()
    for _ in range(n):
        r = c.request("GET", "/echo")
        eq(r.status, 200, "status through the demo")
        seen[r.header("X-Backend")] += 1
    c.close()
    return seen


def _post_state(lb, admin_port, token, name, state):
    c = HttpConn(lb.ctx, admin_port)
    try:
        return c.request("POST", "/api/pools/api/backends/%s/state" % name, body=state.encode(),
                         headers=[("Authorization", "Bearer " + token), ("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()


def test_demo_without_zone_shares_equally(t):
    lb, _ = _demo_lb(t)
    eq(dict(_counts(lb, 30)), {"b1": 10, "b2": 10, "b3": 10}, "30 requests over the demo's pool api")


def test_demo_with_zone_keeps_the_local_tier_and_spills_by_its_health(t):
    lb, token = _demo_lb(t, zone="zone-a")
    eq(dict(_counts(lb, 30)), {"b1": 15, "b2": 15}, "zone-a with b1 and b2 up: b3 takes none")
    # the token that make run prints allows the drain the demo suggests
    r = _post_state(lb, lb.admin_port, token, "b2", "drain")
    eq(r.status, 200, "drain b2 with the demo's token (%r)" % r.body)
    eq(_post_state(lb, lb.admin_port, "wrong", "b2", "active").status, 403, "a wrong token")
    time.sleep(0.2)  # a worker looks at the tiers' health every 100 ms (PICK_REFRESH_MS)
    n = 1000
    seen = _counts(lb, n)
    eq(seen.get("b2", 0), 0, "requests to the drained b2")
    share = seen["b1"] / n
    # 1.4 x 1/2 = 70% stays in zone-a; binomial spread over 1000 draws is about 1.5%
    check(0.62 <= share <= 0.78, "b1 took %.1f%% with b2 drained, the demo says 70%% (%r)" % (share * 100, dict(seen)))
    eq(seen["b1"] + seen["b3"], n, "every request answered by b1 or b3")
