"""systemd integration: the sd_notify messages lb sends, and the unit file.

NEEDS main.c WIRING: the test_notify_* tests expect lb/main.c to call
lb/notify.h (notify_init before the workers start, notify_ready once listening
and after every reload, notify_reloading on SIGHUP, notify_stopping on SIGTERM,
notify_watchdog from an ev_timer). Until that lands they fail at the first
expected message.

The test_unit_* tests need systemd-analyze (Debian package `systemd`, in
PKGS_TEST) and /bin/kill (package `procps`, which ExecReload= runs). A machine
without them fails these tests with the reason, rather than skipping: CI must
not pass without having checked the unit.

lb is started with NOTIFY_SOCKET naming a datagram socket that the test binds
(as systemd does for Type=notify), and reads what arrives. "State" messages are
those with READY=1, RELOADING=1 or STOPPING=1: their order must be exactly
READY, RELOADING, READY, STOPPING. A STATUS-only message may come at any time.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import ROOT, _port_accepts, check, config_text, eq, fail

UNIT = os.path.join(ROOT, "systemd", "lb.service")
SYSUSERS = os.path.join(ROOT, "systemd", "lb.sysusers")
UNIT_BIN = "/usr/local/bin/lb"  # the unit's path to the binary (make install's default PREFIX)
MAX_EXPOSURE = 2.5
DEFAULT_DRAIN_S = 30  # timeouts.drain default (config/README.md)


# --------------------------------------------------------------------------
# sd_notify


class NotifyReceiver:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, t, abstract=False):
        self.t = t
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.addr = "@lb-itest-notify/%d/%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + self.addr[1:])
        else:
            self.addr = os.path.join(t.tmp, "notify.sock")
            if len(self.addr) >= 100:  # sun_path is 108 bytes; keep clear of it
                self.addr = os.path.join("/tmp", "lb-notify-%d.sock" % os.getpid())
                t.on_cleanup(lambda: os.path.exists(self.addr) and os.unlink(self.addr))
            self.sock.bind(self.addr)
        t.on_cleanup(self.sock.close)
        self.log = []  # every message received, raw, for failure messages

    def next(self, timeout_s, what):
        """The next message as a list of (key, value); fails after timeout_s."""
        self.sock.settimeout(timeout_s * self.t.slow)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            fail("no sd_notify message within %.1fs, expected %s; got so far: %r"
                 % (timeout_s * self.t.slow, what, self.log))
        text = data.decode("utf-8")  # systemd drops messages that are not UTF-8
        self.log.append(text)
        pairs = []
        for line in text.split("\n"):
            if not line:
                continue
            check("=" in line, "sd_notify line without '=': %r in %r" % (line, text))
            k, v = line.split("=", 1)
            pairs.append((k, v))
        return pairs

    def next_state(self, timeout_s, what):
        """The next message with READY, RELOADING or STOPPING, skipping STATUS-only ones."""
        deadline = time.monotonic() + timeout_s * self.t.slow
        for _ in range(1000):  # bounded; each turn waits for a datagram
            left = max(0.01, (deadline - time.monotonic()) / self.t.slow)
            pairs = self.next(left, what)
            keys = [k for k, _ in pairs]
            if "READY" in keys or "RELOADING" in keys or "STOPPING" in keys:
                return pairs
            check(keys and all(k in ("STATUS", "WATCHDOG") for k in keys),
                  "unexpected sd_notify message %r" % self.log[-1])
        fail("no state message among 1000 sd_notify messages")

    def quiet(self, seconds):
        """Messages (raw) arriving within SECONDS."""
        got = []
        deadline = time.monotonic() + seconds
        while True:  # bounded by deadline
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                return got


def _value(pairs, key):
    vals = [v for k, v in pairs if k == key]
    check(len(vals) <= 1, "%s appears %d times in %r" % (key, len(vals), pairs))
    return vals[0] if vals else None


def _expect_ready(pairs, what):
    eq(_value(pairs, "READY"), "1", "READY in %s %r" % (what, pairs))
    status = _value(pairs, "STATUS")
    check(status, "READY=1 without a STATUS= summary (%s): %r" % (what, pairs))
    check(_value(pairs, "RELOADING") is None and _value(pairs, "STOPPING") is None,
          "%s carries more than READY: %r" % (what, pairs))


def _start_lb(t, env_extra, cfg=None):
    """Start lb with NOTIFY_SOCKET and friends set (None: unset) for it alone;
    backends are started before, so they do not inherit them."""
    saved = {k: os.environ.get(k) for k in env_extra}
    for k, v in env_extra.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        return t.lb(cfg, ready=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _expect_reload(t, rx, lb, what):
    before = _monotonic_usec()
    lb.signal(signal.SIGHUP)
    m = rx.next_state(5, "RELOADING=1 after SIGHUP (%s)" % what)
    after = _monotonic_usec()
    eq(_value(m, "RELOADING"), "1", "first state message after SIGHUP (%s): %r" % (what, m))
    usec = _value(m, "MONOTONIC_USEC")
    check(usec is not None and usec.isdigit(), "RELOADING=1 without MONOTONIC_USEC (%s): %r" % (what, m))
    check(before <= int(usec) <= after,
          "MONOTONIC_USEC=%s not between the SIGHUP (%d) and its receipt (%d)" % (usec, before, after))
    m = rx.next_state(5, "READY=1 ending the reload (%s)" % what)
    _expect_ready(m, "the end of the reload (%s)" % what)


def test_notify_lifecycle_in_order(t):
    b1 = t.backend("b1")
    rx = NotifyReceiver(t)
    cfg = t.config(backends=[b1])
    lb = _start_lb(t, {"NOTIFY_SOCKET": rx.addr}, cfg)
    states = []

    m = rx.next_state(5, "READY=1 after start")
    states.append("READY")
    _expect_ready(m, "the start")
    # READY=1 means listening: both ports accept at once, no waiting
    check(_port_accepts(lb.port), "READY=1 sent before the listener on %d accepts" % lb.port)
    check(_port_accepts(lb.admin_port), "READY=1 sent before the admin port %d accepts" % lb.admin_port)
    lb.wait_ready()
    eq(lb.get("/").status, 200, "a request after READY=1")

    with open(lb.conf_path, "w") as f:  # an unchanged, valid file
        f.write(config_text(cfg))
    _expect_reload(t, rx, lb, "valid file")
    states += ["RELOADING", "READY"]
    eq(lb.get("/").status, 200, "a request after the reload")

    lb.signal(signal.SIGTERM)
    m = rx.next_state(5, "STOPPING=1 after SIGTERM")
    eq(_value(m, "STOPPING"), "1", "state message after SIGTERM: %r" % m)
    states.append("STOPPING")
    eq(states, ["READY", "RELOADING", "READY", "STOPPING"], "order of the state messages")
    lb.proc.wait(10 * t.slow)
    eq(lb.proc.returncode, 0, "exit status after SIGTERM")
    extra = [x for x in rx.quiet(0.2) if not x.startswith("STATUS=")]
    eq(extra, [], "state messages after STOPPING=1")


def test_notify_failed_reload_ends_ready(t):
    """A reload that fails still ends with READY=1: the old configuration
    runs on, and systemd must not stay in "reloading"."""
    b1 = t.backend("b1")
    rx = NotifyReceiver(t)
    cfg = t.config(backends=[b1])
    lb = _start_lb(t, {"NOTIFY_SOCKET": rx.addr}, cfg)
    _expect_ready(rx.next_state(5, "READY=1 after start"), "the start")
    lb.wait_ready()
    lines = config_text(cfg).split("\n")
    lines.insert(2, "    no_such_key = 5;")
    with open(lb.conf_path, "w") as f:
        f.write("\n".join(lines))
    _expect_reload(t, rx, lb, "invalid file")
    eq(lb.get("/").status, 200, "a request after the failed reload")


def test_notify_abstract_socket(t):
    b1 = t.backend("b1")
    rx = NotifyReceiver(t, abstract=True)
    lb = _start_lb(t, {"NOTIFY_SOCKET": rx.addr}, t.config(backends=[b1]))
    _expect_ready(rx.next_state(5, "READY=1 on an abstract socket"), "the start")
    lb.wait_ready()
    lb.signal(signal.SIGTERM)
    eq(_value(rx.next_state(5, "STOPPING=1"), "STOPPING"), "1", "after SIGTERM")


def test_notify_watchdog_pings(t):
    b1 = t.backend("b1")
    rx = NotifyReceiver(t)
    # 400 ms: a ping every 200 ms
    lb = _start_lb(t, {"NOTIFY_SOCKET": rx.addr, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": None},
                   t.config(backends=[b1]))
    _expect_ready(rx.next_state(5, "READY=1"), "the start")
    got = rx.quiet(1.0 * t.slow)
    pings = [x for x in got if x == "WATCHDOG=1"]
    check(len(pings) >= 3, "%d WATCHDOG=1 in %.1fs with WATCHDOG_USEC=400000: %r" % (len(pings), 1.0 * t.slow, got))
    lb.wait_ready()


def test_notify_watchdog_for_another_pid(t):
    """WATCHDOG_PID naming another process: the watchdog is not ours, no pings."""
    b1 = t.backend("b1")
    rx = NotifyReceiver(t)
    lb = _start_lb(t, {"NOTIFY_SOCKET": rx.addr, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"},
                   t.config(backends=[b1]))
    _expect_ready(rx.next_state(5, "READY=1"), "the start")
    got = rx.quiet(0.6 * t.slow)
    eq([x for x in got if "WATCHDOG" in x], [], "pings with WATCHDOG_PID=1")
    lb.wait_ready()


# --------------------------------------------------------------------------
# the unit file


def _analyze():
    path = shutil.which("systemd-analyze")
    if not path:
        fail("systemd-analyze is not installed (Debian: apt-get install systemd); "
             "the unit file cannot be checked")
    return path


def _unit_settings():
    """[Service] and [Unit] settings as {key: [values]} (repeated keys keep all)."""
    out = {}
    section = None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, v = line.split("=", 1)
            out.setdefault("%s.%s" % (section, k.strip()), []).append(v.strip())
    return out


def _unit_for(t, lb_bin):
    """The unit as `make install` writes it for a PREFIX whose bin/lb is LB_BIN."""
    with open(UNIT) as f:
        text = f.read()
    check(UNIT_BIN in text, "%s does not name %s" % (UNIT, UNIT_BIN))
    path = os.path.join(t.tmp, "lb.service")
    with open(path, "w") as f:
        f.write(text.replace(UNIT_BIN, lb_bin))
    return path


def test_unit_verifies(t):
    analyze = _analyze()
    check(os.access("/bin/kill", os.X_OK), "/bin/kill (package procps) is missing: ExecReload= needs it")
    path = _unit_for(t, t.lb_bin)
    p = subprocess.run([analyze, "verify", "--man=no", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    eq(p.returncode, 0, "systemd-analyze verify exit status; output:\n%s" % out)
    # verify exits 0 on unknown keys and bad values ("ignoring"): any line about
    # our file is a failure (lines about other units on the host are not ours)
    ours = [ln for ln in out.splitlines() if "lb.service" in ln or path in ln]
    eq(ours, [], "systemd-analyze verify complaints about lb.service")


def test_unit_security_exposure(t):
    analyze = _analyze()
    p = subprocess.run([analyze, "security", "--offline=true", "--threshold=%d" % (MAX_EXPOSURE * 10),
                        "--no-pager", UNIT], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"Overall exposure level for lb\.service: ([0-9.]+)", out)
    check(m, "no overall exposure level in the output:\n%s" % out[-3000:])
    level = float(m.group(1))
    check(level <= MAX_EXPOSURE, "exposure %.1f is above %.1f:\n%s"
          % (level, MAX_EXPOSURE, "\n".join(ln for ln in out.splitlines() if "\u2717" in ln)))
    eq(p.returncode, 0, "systemd-analyze security --threshold exit status (exposure %.1f)" % level)


def test_unit_settings_match_the_contract(t):
    s = _unit_settings()

    def one(key):
        v = s.get("Service." + key)
        check(v and len(v) == 1, "Service.%s: expected one value, got %r" % (key, v))
        return v[0]

    eq(one("Type"), "notify", "Type=")
    eq(one("KillMode"), "mixed", "KillMode=")
    eq(one("KillSignal"), "SIGTERM", "KillSignal=")
    eq(one("Restart"), "on-failure", "Restart=")
    eq(one("NotifyAccess"), "main", "NotifyAccess=")
    conf = "-c /etc/lb/lb.conf"
    eq(one("ExecStart"), "%s %s" % (UNIT_BIN, conf), "ExecStart=")
    eq(one("ExecStartPre"), "%s -t %s" % (UNIT_BIN, conf), "ExecStartPre= checks the file")
    # reload: check first, signal only when the check passed (lines run in order)
    eq(s.get("Service.ExecReload"), ["%s -t %s" % (UNIT_BIN, conf), "/bin/kill -HUP $MAINPID"], "ExecReload=")
    m = re.fullmatch(r"(\d+)s", one("TimeoutStopSec"))
    check(m and int(m.group(1)) > DEFAULT_DRAIN_S,
          "TimeoutStopSec=%s must be above the default drain of %ds" % (one("TimeoutStopSec"), DEFAULT_DRAIN_S))
    check(re.fullmatch(r"\d+s", one("WatchdogSec")), "WatchdogSec=%s" % one("WatchdogSec"))
    eq(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=")
    eq(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE", "AmbientCapabilities=")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        eq(one(key), "yes", key + "=")
    eq(one("ProtectSystem"), "strict", "ProtectSystem=")
    check("Service.DynamicUser" not in s, "DynamicUser= would give logs and keys no stable owner")
    # the user and group come from lb.sysusers
    with open(SYSUSERS) as f:
        users = [ln.split() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    eq([(u[0], u[1]) for u in users], [("u", one("User"))], "lb.sysusers entries")
    eq(one("Group"), one("User"), "Group= (sysusers' u line makes a group of the same name)")
    check(int(one("LimitNOFILE")) >= 65536, "LimitNOFILE=%s" % one("LimitNOFILE"))
    # the installed default config must not drop privileges itself (User= does)
    code, out = t.run_lb(["-t", "-c", os.path.join(ROOT, "config", "lb.conf")])
    eq(code, 0, "lb -t on the config make install installs: %s" % out)
    with open(os.path.join(ROOT, "config", "lb.conf")) as f:
        check(not re.search(r"^\s*user\s*=", f.read(), re.M), "config/lb.conf sets lb.user; under systemd User= does")
