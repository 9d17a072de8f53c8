"""The admin listener: /healthz, /stats.json, the API, and what keeps the port usable."""

import json
import os
import re
import signal
import socket
import time

from harness import (ConnClosed, HttpConn, assert_proxy_error, build_request, check, config_text, eq, fail,
                     timeout, wait_until)


def _two(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    return t.lb(t.config(backends=[b1, b2], workers=1)), b1, b2


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_admin_healthz(t):
    lb, _, _ = _two(t)
    r = lb.admin_get("/healthz")
    eq(r.status, 200, "GET /healthz")


def test_stats_json_schema(t):
    lb, b1, b2 = _two(t)
    c = lb.conn()
    eq(c.request("GET", "/").status, 200, "one request first")
    s = lb.stats()
    check(isinstance(s.get("version"), str) and s["version"], "version: %r" % s.get("version"))
    check(_num(s.get("uptime_s")) and s["uptime_s"] >= 0, "uptime_s: %r" % s.get("uptime_s"))
    rl = s.get("reloads")
    check(isinstance(rl, dict), "reloads: %r" % rl)
    eq((rl.get("ok"), rl.get("failed")), (0, 0), "reloads ok/failed before any reload")
    check("last_error" in rl, "reloads.last_error missing: %r" % rl)
    cn = s.get("connections")
    check(isinstance(cn, dict) and _num(cn.get("current")) and _num(cn.get("total")), "connections: %r" % cn)
    check(cn["current"] >= 1 and cn["total"] >= cn["current"], "connections with one client open: %r" % cn)
    pools = s.get("pools")
    check(isinstance(pools, list), "pools: %r" % pools)
    eq([p.get("name") for p in pools], ["api"], "pool names")
    bs = pools[0].get("backends")
    check(isinstance(bs, list), "backends: %r" % bs)
    eq([b.get("name") for b in bs], ["b1", "b2"], "backend names")
    for b, real in zip(bs, (b1, b2)):
        eq(b.get("address"), real.addr, "address of %s" % b["name"])
        check("zone" in b and isinstance(b["zone"], str), "zone of %s: %r" % (b["name"], b.get("zone")))
        check(_num(b.get("weight")), "weight of %s: %r" % (b["name"], b.get("weight")))
        eq(b.get("admin_state"), "active", "admin_state of %s" % b["name"])
        eq(b.get("health"), "up", "health of %s (health type off)" % b["name"])
        eq(b.get("breaker"), "closed", "breaker of %s" % b["name"])
        for k in ("inflight", "requests", "failures"):
            check(_num(b.get(k)), "%s of %s: %r" % (k, b["name"], b.get(k)))
        resp = b.get("responses")
        check(isinstance(resp, dict) and all(_num(resp.get(k)) for k in ("2xx", "3xx", "4xx", "5xx")),
              "responses of %s: %r" % (b["name"], resp))
        lat = b.get("latency_ms")
        check(isinstance(lat, dict) and _num(lat.get("p50")) and _num(lat.get("p99")),
              "latency_ms of %s: %r" % (b["name"], lat))
        check(0 <= lat["p50"] <= lat["p99"], "latency_ms of %s: %r" % (b["name"], lat))
    eq(sum(b["requests"] for b in bs), 1, "requests over both backends after one request")


def _counts(lb):
    bs = lb.stats()["pools"][0]["backends"]
    return {b["name"]: (b["requests"], b["responses"]["2xx"], b["responses"]["5xx"], b["inflight"]) for b in bs}


def test_stats_counts_20_requests(t):
    lb, _, _ = _two(t)
    c = lb.conn()
    for i in range(20):
        eq(c.request("GET", "/").status, 200, "request %d" % i)
    want = {"b1": (10, 10, 0, 0), "b2": (10, 10, 0, 0)}
    last = [None]

    def done():
        last[0] = _counts(lb)
        return last[0] == want

    try:
        wait_until(done, 2 * t.slow, interval=0.05, what="stats")
    except AssertionError:
        fail("per backend (requests, 2xx, 5xx, inflight): expected %r, got %r" % (want, last[0]))


def test_stats_counts_5xx(t):
    lb, _, _ = _two(t)
    c = lb.conn()
    for i in range(3):
        eq(c.request("GET", "/status/500").status, 500, "request %d" % i)
    last = [None]

    def done():
        last[0] = _counts(lb)
        v = list(last[0].values())
        return sum(x[0] for x in v) == 3 and sum(x[2] for x in v) == 3

    try:
        wait_until(done, 2 * t.slow, interval=0.05, what="stats")
    except AssertionError:
        fail("expected 3 requests and 3 5xx over both backends, got (requests, 2xx, 5xx, inflight) %r" % last[0])
    eq(sum(x[1] for x in last[0].values()), 0, "2xx count")


# --- admin API ---------------------------------------------------------------

TOKEN = "s3cret-token"


def _api(lb, pool, name, action, body, token=TOKEN, auth=None):
    c = HttpConn(lb.ctx, lb.admin_port)
    hs = [("Connection", "close")]
    if auth is not None:
        hs.append(("Authorization", auth))
    elif token is not None:
        hs.append(("Authorization", "Bearer " + token))
    try:
        return c.request("POST", "/api/pools/%s/backends/%s/%s" % (pool, name, action), headers=hs,
                         body=body.encode(), host="127.0.0.1")
    finally:
        c.close()


def _api_lb(t, token=TOKEN):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    admin = {"token": token} if token else {}
    cfg = t.config(backends=[{"name": "b1", "address": b1.addr, "weight": 100},
                             {"name": "b2", "address": b2.addr, "weight": 100}], workers=1)
    cfg["admin"].update(admin)
    return t.lb(cfg)


def _states(lb):
    return {b["name"]: (b["admin_state"], b["weight"]) for b in lb.stats()["pools"][0]["backends"]}


def test_admin_api_auth(t):
    lb = _api_lb(t)
    before = _states(lb)
    eq(_api(lb, "api", "b2", "state", "drain", token=None).status, 401, "POST without Authorization")
    eq(_api(lb, "api", "b2", "state", "drain", token="wrong").status, 403, "POST with a wrong token")
    eq(_api(lb, "api", "b2", "state", "drain", auth="Basic " + TOKEN).status, 403, "POST with Basic auth")
    eq(_states(lb), before, "backend states after refused POSTs")
    r = _api(lb, "api", "b2", "state", "drain")
    eq(r.status, 200, "POST with the token")
    eq(_states(lb)["b2"][0], "drain", "b2 admin_state after the POST")


def test_admin_api_without_configured_token_is_read_only(t):
    lb = _api_lb(t, token=None)
    eq(_api(lb, "api", "b2", "state", "drain", token="anything").status, 403, "POST when no token is configured")
    eq(_states(lb)["b2"][0], "active", "b2 admin_state")


def test_admin_api_errors(t):
    lb = _api_lb(t)
    before = _states(lb)
    cases = [
        (("nopool", "b1", "state", "drain"), 404),
        (("api", "nobackend", "state", "drain"), 404),
        (("api", "b1", "state", "sleepy"), 400),
        (("api", "b1", "weight", "abc"), 400),
        (("api", "b1", "weight", "1001"), 400),
        (("api", "b1", "weight", "-1"), 400),
        (("api", "b1", "weight", ""), 400),
    ]
    got = []
    for args, want in cases:
        r = _api(lb, *args)
        got.append((args, r.status))
        if want == 400:
            check(len(r.body.strip()) > 0, "400 for %r without a message" % (args,))
    eq(got, [(a, w) for a, w in cases], "statuses")
    eq(_states(lb), before, "states after bad requests")


def test_admin_api_drain_moves_traffic(t):
    lb = _api_lb(t)
    r = _api(lb, "api", "b2", "state", "drain")
    eq(r.status, 200, "drain b2")
    j = r.json()
    eq((j.get("name"), j.get("admin_state")), ("b2", "drain"), "backend JSON in the answer")
    c = lb.conn()
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(seen, ["b1"] * 10, "backends while b2 drains")
    eq(_api(lb, "api", "b2", "state", "active").status, 200, "activate b2")
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(20)]
    check(seen.count("b1") + seen.count("b2") == 20 and 8 <= seen.count("b2") <= 12,
          "20 requests after b2 is active again: %r" % seen)


def test_admin_api_weight(t):
    lb = _api_lb(t)
    eq(_api(lb, "api", "b1", "weight", "300").status, 200, "set b1 weight")
    eq(_states(lb)["b1"], ("active", 300), "b1 after the change")
    c = lb.conn()
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(100)]
    b1 = seen.count("b1")
    # weights 300:100: 75 of 100, give or take the one
    # pick the balancer had made under the old weights
    check(74 <= b1 <= 76 and b1 + seen.count("b2") == 100, "b1 got %d of 100 with weights 300:100" % b1)


# --- admin.token length --------------------------------------------------------


def test_admin_token_long(t):
    # tokens beyond 256 characters used to pass `lb -t` and then fail every POST
    for n in (300, 4096):
        tok = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] for i in range(n))
        lb = _api_lb(t, token=tok)
        wrong = tok[:-1] + "X"
        eq(_api(lb, "api", "b2", "state", "drain", token=wrong).status, 403,
           "POST with a wrong token of the same length (%d characters)" % n)
        eq(_api(lb, "api", "b2", "state", "drain", token=tok[:-1]).status, 403,
           "POST with the token's first %d characters" % (n - 1))
        eq(_states(lb)["b2"][0], "active", "b2 after refused POSTs (%d-character token)" % n)
        eq(_api(lb, "api", "b2", "state", "drain", token=tok).status, 200,
           "POST with the right %d-character token" % n)
        eq(_states(lb)["b2"][0], "drain", "b2 after the POST (%d-character token)" % n)


def test_admin_token_too_long_fails_check(t):
    cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}])
    cfg["admin"]["token"] = "x" * 5000
    text = config_text(cfg)
    line = next(i + 1 for i, ln in enumerate(text.split("\n")) if ln.strip().startswith("token ="))
    with open(os.path.join(t.tmp, "long.conf"), "w") as f:
        f.write(text)
    code, out = t.run_lb(["-t", "-c", "long.conf"])
    eq(code, 1, "exit status of lb -t with a 5000-character admin.token (output %r)" % out[:300])
    want = "long.conf:%d: admin.token: 5000 characters is too long" % line
    check(any(ln.startswith(want) for ln in out.splitlines()), "no line starting %r in %r" % (want, out[:500]))
    check("x" * 64 not in out, "the token is echoed in the error: %r" % out[:300])


# --- keeping the admin port usable -------------------------------------------------

HEAD_TIMEOUT = 3.0  # the admin's fixed time from accept to a complete request


def _idle(t, lb, n):
    """N connections to the admin port that send nothing."""
    return [HttpConn(t, lb.admin_port) for _ in range(n)]


def _healthz_status(t, lb):
    c = HttpConn(t, lb.admin_port)
    try:
        return c.request("GET", "/healthz", headers=[("Connection", "close")], host="127.0.0.1",
                         timeout=2.0 * t.slow).status
    except ConnClosed as e:
        return "closed: %s" % e
    finally:
        c.close()


@timeout(40)
def test_admin_healthz_with_300_idle_connections(t):
    lb, _, _ = _two(t)
    idle = _idle(t, lb, 300)
    got = [_healthz_status(t, lb) for _ in range(5)]
    eq(got, [200] * 5, "/healthz five times in a row with 300 idle admin connections open")
    # room was made by closing the oldest idle connections, not the newest
    for i, c in enumerate(idle[-5:]):
        r = c.request("GET", "/healthz", headers=[("Connection", "close")], host="127.0.0.1")
        eq(r.status, 200, "/healthz on idle connection %d of 300, opened among the last" % (295 + i))
    check(idle[0].closed_within(1.0), "the oldest idle connection is still open")


def _unix(t, path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5.0 * t.slow)
    s.connect(path)
    t.on_cleanup(s.close)
    return s


def _read_to_eof(s, timeout_s):
    data = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded
        chunk = s.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk
    fail("no end of the answer within %.1fs (have %d bytes)" % (timeout_s, len(data)))


def _unix_get(t, path, target, host="127.0.0.1"):
    """(status, body) of one request on a unix-socket admin; (None, reason) if closed."""
    s = _unix(t, path)
    try:
        s.sendall(build_request("GET", target, [("Connection", "close")], host=host))
        data = _read_to_eof(s, 5.0 * t.slow)
    except OSError as e:
        return None, repr(e)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    if not m:
        return None, "no answer: %r" % data[:100]
    cl = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    eq(len(body), int(cl.group(1)), "body bytes of %s (Content-Length)" % target)
    return int(m.group(1)), body


def _unix_admin_lb(t, nbackends):
    path = os.path.join(t.tmp, "a.sock")
    bs = [{"name": "b%d" % i, "address": "127.0.0.1:%d" % (1000 + i)} for i in range(nbackends)]
    cfg = t.config(backends=bs)
    cfg["admin"] = {"listen": "unix:" + path}
    lb = t.lb(cfg, ready=False)
    lb.wait_ready([lb.port])
    def up():
        try:
            return _unix_get(t, path, "/healthz")[0] == 200
        except OSError:  # not there or not listening yet
            return False

    wait_until(up, 5.0 * t.slow, what="/healthz on the unix admin socket")
    return lb, path


@timeout(40)
def test_admin_full_table_keeps_a_slow_reader(t):
    # A unix socket holds a fixed send buffer (TCP on loopback would grow it
    # to take the whole answer at once): a client that does not read leaves
    # lb writing its answer while the table fills with idle connections.
    lb, path = _unix_admin_lb(t, 800)
    w = _unix(t, path)
    w.sendall(build_request("GET", "/stats.json", [("Connection", "close")], host="127.0.0.1"))
    wait_until(lambda: len(w.recv(1, socket.MSG_PEEK)) == 1, 2.0 * t.slow, what="the answer to start")
    for _ in range(300):
        _unix(t, path)
    got = [_unix_get(t, path, "/healthz")[0] for _ in range(3)]
    eq(got, [200] * 3, "/healthz with 300 idle connections and a slow reader")
    data = _read_to_eof(w, 5.0 * t.slow)
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200 "), "slow reader's answer: %r" % head[:100])
    cl = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    eq(len(body), cl, "body bytes the slow reader got (Content-Length %d)" % cl)
    with open("/proc/sys/net/core/wmem_default") as f:
        wmem = int(f.read())
    check(cl > wmem, "/stats.json is %d bytes, within one socket buffer (%d): lb was not still writing" % (cl, wmem))
    eq(len(json.loads(body)["pools"][0]["backends"]), 800, "backends in the slow reader's JSON")


def test_admin_idle_connections_time_out(t):
    lb, _, _ = _two(t)
    t0 = time.monotonic()
    idle = _idle(t, lb, 20)
    part = HttpConn(t, lb.admin_port)
    part.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    check(idle[0].quiet_for(HEAD_TIMEOUT / 2), "an idle connection closed long before the head timeout")
    limit = HEAD_TIMEOUT + 1.5  # the server's own clock: not scaled for slow builds
    for i, c in enumerate(idle):
        left = max(0.0, t0 + limit - time.monotonic())
        check(c.closed_within(left), "idle connection %d still open %.1fs after it was opened" % (i, limit))
    r = part.read_response(timeout=max(0.1, t0 + limit - time.monotonic()))
    assert_proxy_error(r, 408, "for a head not complete within %.0fs" % HEAD_TIMEOUT)
    check(part.closed_within(1.0), "connection open after the 408")


def _big_head(n):
    return build_request("GET", "/healthz", [("X-Pad", "p" * n), ("Connection", "close")], host="127.0.0.1")


def _answer_waiting(c):
    c.sock.settimeout(0.05)
    try:
        return len(c.sock.recv(1, socket.MSG_PEEK)) == 1
    except socket.timeout:
        return False


def _early_answer(t, port, first, rest, what):
    """Send FIRST, which lb answers before reading it all; once the answer is
    there, send REST (as a client still writing its request does), then read
    the answer. Closing with unread input would reset the connection: the
    client's send fails and the answer is lost."""
    c = HttpConn(t, port)
    c.send(first)
    wait_until(lambda: _answer_waiting(c), 5.0 * t.slow, what="the answer to %s" % what)
    check(c.try_send(rest), "%s: the connection was reset after the answer" % what)
    try:
        r = c.read_response()
    except ConnClosed as e:
        fail("%s: no answer read (%s)" % (what, e))
    check(c.closed_within(2.0 * t.slow), "%s: connection open after the answer" % what)
    return r


def test_admin_431_is_read_not_reset(t):
    lb, _, _ = _two(t)
    c = HttpConn(t, lb.admin_port)
    c.send(_big_head(12000))
    eq(c.read_response().status, 200, "/healthz with a 12 KB head (within the limit)")
    head = _big_head(20000)
    for i in range(5):
        r = _early_answer(t, lb.admin_port, head[:17000], head[17000:], "a 20 KB head (try %d)" % i)
        assert_proxy_error(r, 431, "for a 20 KB head")


def test_admin_400_is_read_not_reset(t):
    lb, _, _ = _two(t)
    bad = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n"
    for i in range(5):
        r = _early_answer(t, lb.admin_port, bad + b"z" * 20000, b"z" * 4000,
                          "a malformed head and 24 KB after it (try %d)" % i)
        assert_proxy_error(r, 400, "for a malformed head")


# --- Host check (DNS rebinding) ------------------------------------------------------


def _host_req(t, port, host, method="GET", path="/healthz", version="HTTP/1.1", headers=(), body=None):
    c = HttpConn(t, port)
    try:
        return c.request(method, path, headers=[("Connection", "close")] + list(headers), host=host,
                         version=version, body=body)
    finally:
        c.close()


def test_admin_host_check_on_loopback(t):
    lb = _api_lb(t)
    p = lb.admin_port
    allowed = ["127.0.0.1:%d" % p, "127.0.0.1", "localhost", "localhost:%d" % p, "LOCALHOST:%d" % p,
               "[::1]:%d" % p, "api.localhost:%d" % p, "127.1.2.3:%d" % p]
    got = [(h, _host_req(t, p, h).status) for h in allowed]
    eq(got, [(h, 200) for h in allowed], "(Host, status) of /healthz")
    refused = ["evil.example", "evil.example:%d" % p, "127.0.0.1.evil.example", "127.0.0.1.evil.example:%d" % p,
               "localhost.evil.example", "10.1.2.3:%d" % p]
    for h in refused:
        for path in ("/healthz", "/stats.json"):
            r = _host_req(t, p, h, path=path)
            assert_proxy_error(r, 403, "for GET %s with Host %s" % (path, h))
            check(b"host not allowed" in r.body, "403 body for Host %s: %r" % (h, r.body))
    r = _host_req(t, p, "evil.example", method="POST", path="/api/pools/api/backends/b2/state",
                  headers=[("Authorization", "Bearer " + TOKEN)], body=b"drain")
    assert_proxy_error(r, 403, "for a POST with the token and Host evil.example")
    eq(_states(lb)["b2"][0], "active", "b2 after a POST with a foreign Host")
    eq(_host_req(t, p, None, version="HTTP/1.0").status, 200, "/healthz over HTTP/1.0 without Host")
    eq(_host_req(t, p, "evil.example", version="HTTP/1.0", headers=[("Host", "evil.example")]).status, 403,
       "/healthz over HTTP/1.0 with Host evil.example")
    check("Host \"evil.example\" is not local" in lb.stderr_text(), "no log line for the refused Host")


def test_admin_host_not_checked_on_unix_socket(t):
    # no browser reaches a unix socket, and clients name anything there
    _, path = _unix_admin_lb(t, 1)
    eq(_unix_get(t, path, "/healthz", host="evil.example")[0], 200, "/healthz with Host evil.example")


def test_admin_sigterm_with_open_admin_connections_exits_0(t):
    # they are freed at exit: a sanitizer build would report them otherwise
    lb, _, _ = _two(t)
    _idle(t, lb, 10)
    part = HttpConn(t, lb.admin_port)
    part.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    eq(_healthz_status(t, lb), 200, "/healthz before SIGTERM")
    t0 = time.monotonic()
    lb.signal(signal.SIGTERM)
    try:
        lb.proc.wait(3 * t.slow)
    except Exception:
        fail("lb still running %.1fs after SIGTERM" % (time.monotonic() - t0))
    eq(lb.proc.returncode, 0, "exit status after SIGTERM")
