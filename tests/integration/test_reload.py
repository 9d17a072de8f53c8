"""SIGHUP: validate fully, keep the old config when invalid, apply a valid one
without dropping a connection or a request."""

import copy
import os
import shutil
import signal
import threading
import time

from harness import HttpConn, check, config_text, eq, fail, timeout, wait_until


def _rewrite(lb, cfg):
    with open(lb.conf_path, "w") as f:
        f.write(config_text(cfg))


def _reloads(lb):
    return lb.stats()["reloads"]


def _wait_reloads(t, lb, ok, failed):
    last = [None]

    def done():
        last[0] = _reloads(lb)
        return (last[0]["ok"], last[0]["failed"]) == (ok, failed)

    try:
        wait_until(done, 3 * t.slow, interval=0.05, what="reload counters")
    except AssertionError:
        fail("reloads: expected ok=%d failed=%d, got %r" % (ok, failed, last[0]))
    return last[0]


def test_reload_invalid_file_keeps_old_config(t):
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1])
    lb = t.lb(cfg)
    c = lb.conn()
    eq(c.request("GET", "/").status, 200, "before the reload")
    lines = config_text(cfg).split("\n")
    lines.insert(2, "    no_such_key = 5;")  # line 3
    with open(lb.conf_path, "w") as f:
        f.write("\n".join(lines))
    lb.signal(signal.SIGHUP)
    rl = _wait_reloads(t, lb, 0, 1)
    check(str(rl.get("last_error", "")).startswith(lb.conf_path + ":3:"),
          "last_error should name %s:3: %r" % (lb.conf_path, rl.get("last_error")))
    r = c.request("GET", "/")
    eq((r.status, r.header("X-Backend")), (200, "b1"), "the same connection after a failed reload")
    eq(lb.get("/").status, 200, "a new connection after a failed reload")
    check(lb.proc.poll() is None, "lb exited after a failed reload")


def test_reload_applies_new_backend_and_keeps_connections(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cfg = t.config(backends=[b1], pool={"slow_start": "0s"})  # the ramp is tested below
    lb = t.lb(cfg)
    c = lb.conn()
    eq(c.request("GET", "/").header("X-Backend"), "b1", "before the reload")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"].append({"name": "b2", "address": b2.addr})
    _rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    names = [b["name"] for b in lb.stats()["pools"][0]["backends"]]
    eq(names, ["b1", "b2"], "backends in /stats.json after the reload")
    # the connection opened before the reload still works, and b2 gets traffic
    seen = [c.request("GET", "/").header("X-Backend") for _ in range(10)]
    eq(sorted(set(seen)), ["b1", "b2"], "backends answering after the reload: %r" % seen)
    check(4 <= seen.count("b2") <= 6, "b2 got %d of 10 after the reload" % seen.count("b2"))


def test_reload_added_backend_slow_start(t):
    """A backend added by a reload ramps up over slow_start: right after the
    reload it gets a small share (its weight grows linearly from ~0), once
    slow_start has passed it gets exactly its share (10 of 20)."""
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cfg = t.config(backends=[b1], pool={"slow_start": "3s"})
    lb = t.lb(cfg)
    c = lb.conn()
    eq(c.request("GET", "/").header("X-Backend"), "b1", "before the reload")
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"].append({"name": "b2", "address": b2.addr})
    _rewrite(lb, new)
    t0 = time.monotonic()
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    early = [c.request("GET", "/").header("X-Backend") for _ in range(20)]
    spent = time.monotonic() - t0
    # at most `spent` of 3 s into the ramp: b2's weight <= 100 * spent / 3 against b1's 100
    bound = int(20 * (spent / 3.0) / (1 + spent / 3.0)) + 1
    check(early.count("b2") <= bound,
          "b2 got %d of 20 within %.2fs of being added (bound %d)" % (early.count("b2"), spent, bound))
    wait_until(lambda: time.monotonic() - t0 > 3.1, 4, interval=0.05, what="slow_start to pass")
    late = [c.request("GET", "/").header("X-Backend") for _ in range(20)]
    eq(late.count("b2"), 10, "b2's share of 20 once slow_start has passed")


def test_reload_restores_admin_api_change(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cfg = t.config(backends=[b1, b2])
    cfg["admin"]["token"] = "tok"
    lb = t.lb(cfg)
    ac = HttpConn(t, lb.admin_port)
    r = ac.request("POST", "/api/pools/api/backends/b2/state", headers=[("Authorization", "Bearer tok")], body=b"maint")
    eq(r.status, 200, "set b2 to maint")
    eq(lb.backend_stats("api", "b2")["admin_state"], "maint", "b2 after the API call")
    lb.signal(signal.SIGHUP)
    _wait_reloads(t, lb, 1, 0)
    eq(lb.backend_stats("api", "b2")["admin_state"], "active", "b2 after a reload of the unchanged file")


def test_reload_under_traffic_drops_nothing(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cfg = t.config(backends=[b1, b2], workers=2)
    lb = t.lb(cfg)
    errors = []
    counts = [0] * 4
    stop = threading.Event()

    def client(k):
        try:
            c = lb.conn()
            for i in range(400):  # bounded; stopped early once the reloads are done
                if stop.is_set():
                    break
                if k % 2 and i % 10 == 0:  # half the clients also open new connections
                    c.close()
                    c = lb.conn()
                r = c.request("GET", "/")
                if r.status != 200:
                    errors.append("client %d request %d: status %d" % (k, i, r.status))
                counts[k] += 1
        except Exception as e:
            errors.append("client %d: %s" % (k, e))

    ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for th in ts:
        th.start()
    try:
        for n in range(1, 6):
            # traffic between every two reloads, however fast reloads are
            want = 8 * n
            wait_until(lambda: errors or sum(counts) >= want, 5 * t.slow,
                       what="%d requests before reload %d" % (want, n))
            new = copy.deepcopy(cfg)
            new["pools"][0]["backends"][1]["weight"] = 10 * n
            _rewrite(lb, new)
            lb.signal(signal.SIGHUP)
            _wait_reloads(t, lb, n, 0)
    finally:
        stop.set()
    for th in ts:
        th.join(20 * t.slow)
        check(not th.is_alive(), "a client is still running")
    eq(errors, [], "errors during 5 reloads")
    check(sum(counts) >= 40, "only %d requests ran during the reloads" % sum(counts))
    eq(lb.backend_stats("api", "b2")["weight"], 50, "b2 weight after the last reload")


def _healthz(t, port):
    try:
        c = HttpConn(t, port)
    except ConnectionRefusedError:
        return "refused"
    try:
        return c.request("GET", "/healthz", headers=[("Connection", "close")], host="127.0.0.1").status
    except Exception as e:
        return repr(e)
    finally:
        c.close()


def test_reload_moves_admin_port(t):
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1])
    lb = t.lb(cfg)
    old_port = lb.admin_port
    pending = HttpConn(t, old_port)  # a request under way on the old socket
    pending.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    new_port = t.port()
    cfg = copy.deepcopy(cfg)
    cfg["admin"]["listen"] = "127.0.0.1:%d" % new_port
    _rewrite(lb, cfg)
    lb.signal(signal.SIGHUP)
    lb.admin_port = new_port
    wait_until(lambda: _healthz(t, new_port) == 200, 3 * t.slow, what="/healthz on the new admin port")
    eq(_reloads(lb)["ok"], 1, "reloads.ok")
    eq(_healthz(t, old_port), "refused", "/healthz on the old admin port")
    pending.send("Connection: close\r\n\r\n")
    eq(pending.read_response().status, 200, "the request begun on the old admin socket")



def _quiet_reloads(t, lb, ok, failed, seconds=1.0):
    """The counters stay at (ok, failed) for SECONDS: no second reload from one change."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded by deadline
        r = _reloads(lb)
        eq((r["ok"], r["failed"]), (ok, failed), "reload counters while nothing changes")
        time.sleep(0.1)


def _weight(lb, name="b1"):
    return lb.backend_stats("api", name)["weight"]


@timeout(40)
def test_watch_config_reloads_once_per_change(t):
    """lb.watch_config: a change to the file is one reload; a broken edit is one failed
    reload and the old configuration keeps serving; rewriting the same bytes is none."""
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1], lb={"watch_config": True})
    lb = t.lb(cfg)
    eq((_reloads(lb)["ok"], _reloads(lb)["failed"]), (0, 0), "reloads at start")

    # an edit in place (truncate and write, as `echo > file` does)
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][0]["weight"] = 50
    _rewrite(lb, new)
    _wait_reloads(t, lb, 1, 0)
    eq(_weight(lb), 50, "b1's weight after the watched change")
    _quiet_reloads(t, lb, 1, 0)

    # an editor's save: a new file renamed over the old one
    new["pools"][0]["backends"][0]["weight"] = 70
    tmp = lb.conf_path + ".swp"
    with open(tmp, "w") as f:
        f.write(config_text(new))
    os.rename(tmp, lb.conf_path)
    _wait_reloads(t, lb, 2, 0)
    eq(_weight(lb), 70, "b1's weight after a rename over the file")
    _quiet_reloads(t, lb, 2, 0)

    # a broken edit: one failed reload, the running configuration stays and serves
    with open(lb.conf_path, "w") as f:
        f.write(config_text(new).replace('"127.0.0.1:%d"' % b1.port, "127.0.0.1:%d" % b1.port))
    r = _wait_reloads(t, lb, 2, 1)
    check(r["last_error"].startswith(lb.conf_path + ":"), "last_error without the file: %r" % r["last_error"])
    check("needs double quotes" in r["last_error"], "last_error without the hint: %r" % r["last_error"])
    _quiet_reloads(t, lb, 2, 1)
    c = lb.conn()
    eq((c.request("GET", "/").status, _weight(lb)), (200, 70), "serving after the broken edit")

    # the fix: applied; the same bytes written again: nothing
    new["pools"][0]["backends"][0]["weight"] = 90
    _rewrite(lb, new)
    _wait_reloads(t, lb, 3, 1)
    _rewrite(lb, new)
    os.utime(lb.conf_path)
    _quiet_reloads(t, lb, 3, 1)
    eq(_weight(lb), 90, "b1's weight after the fix")
    eq(c.request("GET", "/").status, 200, "the keep-alive connection across three reloads")


@timeout(40)
def test_watch_config_follows_a_configmap_update(t):
    """A Kubernetes ConfigMap volume: lb.conf -> ..data/lb.conf, ..data -> ..v1; an
    update writes ..v2 and renames a new ..data symlink over the old one. One reload."""
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1], lb={"watch_config": True})
    mount = os.path.join(t.tmp, "mount")
    os.makedirs(os.path.join(mount, "..v1"))
    with open(os.path.join(mount, "..v1", "lb.conf"), "w") as f:
        f.write(config_text(cfg))
    os.symlink("..v1", os.path.join(mount, "..data"))
    os.symlink("..data/lb.conf", os.path.join(mount, "lb.conf"))
    lb = t.lb(cfg, args=["-c", os.path.join(mount, "lb.conf")])  # the last -c wins
    eq(_weight(lb), 100, "b1's weight at start")

    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][0]["weight"] = 40
    os.makedirs(os.path.join(mount, "..v2"))
    with open(os.path.join(mount, "..v2", "lb.conf"), "w") as f:
        f.write(config_text(new))
    os.symlink("..v2", os.path.join(mount, "..data_tmp"))
    os.rename(os.path.join(mount, "..data_tmp"), os.path.join(mount, "..data"))
    shutil.rmtree(os.path.join(mount, "..v1"))
    _wait_reloads(t, lb, 1, 0)
    eq(_weight(lb), 40, "b1's weight after the ConfigMap update")
    _quiet_reloads(t, lb, 1, 0)
    check("changed: reloading (lb.watch_config)" in lb.stderr_text(), "the watched reload is not logged")


def test_watch_config_off_ignores_changes(t):
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1])
    lb = t.lb(cfg)
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][0]["weight"] = 50
    _rewrite(lb, new)
    _quiet_reloads(t, lb, 0, 0, seconds=1.0)
    eq(_weight(lb), 100, "weight without lb.watch_config (no SIGHUP)")
