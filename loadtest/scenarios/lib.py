"""
lib.py - what the failure scenarios share (Python 3 standard library only).

A scenario is a script NAME.py in this directory that calls run(NAME, TITLE,
fn). fn(sc) gets a Scenario: it starts lb-backend processes, writes an lb
config and starts bin/lb, runs bin/lb-load in the background, injects one
fault, collects figures and ends with sc.verdict(...), which prints the
verdict block and gives the exit status (0 PASS, 1 FAIL, 2 the scenario
could not run).

Rules kept here: only 127.0.0.1; every process started is stopped on exit
(by PID, SIGTERM then SIGKILL); every wait is a bounded poll with a deadline;
every loop is bounded in count and time.

Knobs (environment):
  SCENARIO_SECONDS=30   length of the reload storm (reload-storm.py)
  SCENARIO_WORKERS=N    lb.workers in every scenario (default: 1, reload-storm 2)
  SCENARIO_PIN=1        bin/lb on CPU 1, backends and lb-load on CPU 0 (0: no pinning)
  SCENARIO_NICE=-10     nice value of everything started, when allowed (0: unchanged)
  SCENARIO_KEEP=0       1: keep the work directory (configs, logs, raw lb-load output)
  SCENARIO_BIN=DIR      where lb, lb-backend and lb-load are (default: bin/ of the repo)
  SCENARIO_RESULTS=DIR  also write the verdict as DIR/NAME.json (run-all.sh sets it)
"""

import calendar
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HOST = "127.0.0.1"
BUSY_PCT = 50  # above this share of runnable time spent waiting for a CPU, a failure gets a note
SANITIZER = r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:"


class ScenarioError(Exception):
    """The scenario could not run (not a verdict on the proxy)."""


class ProxyDied(Exception):
    """bin/lb exited when it should not have: a FAIL, with its exit status and log tail."""


def exit_desc(rc):
    if rc is None:
        return "running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exited with status %d" % rc


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise ScenarioError("%s must be an integer (is %r)" % (name, v))
    if not lo <= n <= hi:
        raise ScenarioError("%s must be within %d..%d (is %d)" % (name, lo, hi, n))
    return n


def wait_until(pred, timeout_s, interval=0.02, what="condition"):
    """Bounded poll: pred() until it returns a true value; ScenarioError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / interval) + 2):
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise ScenarioError("timed out after %.1f s waiting for %s" % (timeout_s, what))


def free_ports(n):
    """n ports free right now on 127.0.0.1 (the kernel's choice; another process may
    take one before we bind it: callers retry)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_request(port, method, path, body=None, headers=None, timeout=2.0):
    """One request on a new connection: (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def rss_kb(pid):
    """VmRSS of pid in KiB, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sched_ns(pid):
    """(ns on CPU, ns runnable but waiting for a CPU) summed over pid's threads, or None."""
    run = wait = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                a = f.read().split()
            run += int(a[0])
            wait += int(a[1])
        except (OSError, ValueError, IndexError):
            continue
    return run, wait


def parse_log_time(line):
    """Wall-clock time of an lb log line ("2026-11-21T21:36:38.365Z lb[..]: ..."), or None."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z ", line)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000


# --- config ------------------------------------------------------------------


def _cfg_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[ " + ", ".join(_cfg_value(x, indent) for x in v) + " ]"
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, _cfg_value(x, indent + 1)) for k, x in v.items())
        return "{\n" + inner + pad + "}"
    raise TypeError("config value %r" % (v,))


def lb_config(port, admin_port, backends, workers=1, token=None, timeouts=None, pool=None,
              access_log=None, zone=None, tls=None):
    """libconfig text: one listener on port, one pool "api" over backends
    (list of {"name", "address", ...}), pool settings from the dict pool; zone:
    lb.zone; with tls (the listener's tls group as a dict: {"certs": [{"cert",
    "key"}, ...]}), the listener terminates TLS."""
    admin = {"listen": "%s:%d" % (HOST, admin_port)}
    if token:
        admin["token"] = token
    log = {"level": "info"}
    if access_log:
        log.update({"access": access_log, "format": "json"})
    lbs = {"workers": workers}
    if zone:
        lbs["zone"] = zone
    parts = [
        "lb = %s;" % _cfg_value(lbs, 0),
        "log = %s;" % _cfg_value(log, 0),
        "admin = %s;" % _cfg_value(admin, 0),
    ]
    if timeouts:
        parts.append("timeouts = %s;" % _cfg_value(timeouts, 0))
    ltls = ""
    if tls:
        t = dict(tls)
        certs = t.pop("certs", [])
        ltls = " tls = { certs = ( %s );%s };" % (
            ", ".join("{ cert = %s; key = %s; }" % (json.dumps(c["cert"]), json.dumps(c["key"])) for c in certs),
            "".join(" %s = %s;" % (k, _cfg_value(v, 0)) for k, v in t.items()))
    parts.append('listeners = ( { name = "web"; listen = "%s:%d"; pool = "api";%s } );' % (HOST, port, ltls))
    p = {"name": "api"}
    p.update(pool or {})
    body = "".join("    %s = %s;\n" % (k, _cfg_value(v, 2)) for k, v in p.items())
    bes = ",\n".join("      " + _cfg_value(b, 3).replace("\n", " ") for b in backends)
    parts.append("pools = (\n  {\n%s    backends = (\n%s\n    );\n  }\n);" % (body, bes))
    return "\n".join(parts) + "\n"


# --- processes -----------------------------------------------------------------


class Proc:
    def __init__(self, name, popen, log):
        self.name, self.popen, self.log = name, popen, log
        self.pid = popen.pid
        self.sched0 = sched_ns(self.pid)
        self.sched_last = self.sched0

    def sample_sched(self):
        """Remember its CPU and run-queue time now (while it runs)."""
        v = sched_ns(self.pid) if self.alive() else None
        if v is not None:
            self.sched_last = v

    def sched_delta(self):
        """(s on CPU, s waiting for a CPU) since it started, up to the last sample."""
        self.sample_sched()
        if not self.sched0 or not self.sched_last:
            return 0.0, 0.0
        return ((self.sched_last[0] - self.sched0[0]) / 1e9, (self.sched_last[1] - self.sched0[1]) / 1e9)

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s):
        """Exit status, or None if still running after timeout_s."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        return "\n".join(self.log_text().splitlines()[-n:])


class Backend:
    """bin/lb-backend on a free port, with a control listener."""

    def __init__(self, sc, name, args=()):
        self.sc, self.name = sc, name
        self.proc = sc.spawn(name, [sc.bin("lb-backend"), "--listen", "%s:0" % HOST, "--control",
                                    "%s:0" % HOST, "--name", name] + list(args), cpu=0)
        lines = {}

        def bound():
            for line in self.proc.log_text().splitlines():
                m = re.match(r"lb-backend \S+ (listening|control) on 127\.0\.0\.1:(\d+)$", line)
                if m:
                    lines[m.group(1)] = int(m.group(2))
            if not self.proc.alive():
                raise ScenarioError("lb-backend %s exited: %s" % (name, self.proc.log_tail()))
            return len(lines) == 2

        wait_until(bound, 5, what="lb-backend %s to listen" % name)
        self.port, self.cport = lines["listening"], lines["control"]
        self.address = "%s:%d" % (HOST, self.port)

    def control(self, **kw):
        q = "&".join("%s=%s" % (k, v) for k, v in kw.items())
        st, _, body = http_request(self.cport, "GET", "/__control?" + q)
        if st != 200:
            raise ScenarioError("%s /__control?%s: %d %s" % (self.name, q, st, body[:200]))
        return json.loads(body)

    def stats(self):
        st, _, body = http_request(self.cport, "GET", "/__stats")
        if st != 200:
            raise ScenarioError("%s /__stats: %d" % (self.name, st))
        return json.loads(body)


class Lb:
    """bin/lb with a config written by lb_config(); ready once admin /healthz answers 200
    and the listener accepts."""

    def __init__(self, sc, backends, **cfg):
        self.sc = sc
        self.conf = os.path.join(sc.work, "lb.conf")
        if sc.workers:
            cfg["workers"] = sc.workers
        self.cfg = cfg
        self.backends = backends
        for attempt in range(3):  # a port taken by someone else between free_ports() and bind
            self.port, self.admin_port = free_ports(2)
            self.write_config()
            chk = subprocess.run([sc.bin("lb"), "-t", "-c", self.conf], capture_output=True,
                                 text=True, timeout=10)
            if chk.returncode != 0:
                raise ScenarioError("bin/lb rejects the scenario config:\n" + chk.stdout + chk.stderr)
            self.proc = sc.spawn("lb", [sc.bin("lb"), "-c", self.conf], cpu=1)
            self.pid = self.proc.pid
            try:
                wait_until(self._ready, 5, what="bin/lb to be ready")
                return
            except ScenarioError:
                text = self.proc.log_text()
                self.sc.stop(self.proc)
                if "Address already in use" not in text or attempt == 2:
                    raise ScenarioError("bin/lb did not start:\n" + "\n".join(text.splitlines()[-15:]))

    def write_config(self, **override):
        """(Re)write the config file atomically (rename), so a reload never reads half a file."""
        cfg = dict(self.cfg)
        cfg.update(override)
        bes = cfg.pop("backend_entries", None) or [{"name": b.name, "address": b.address}
                                                   for b in self.backends]
        text = lb_config(self.port, self.admin_port, bes, **cfg)
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)

    def _ready(self):
        if not self.proc.alive():
            raise ScenarioError("bin/lb exited")
        try:
            st, _, _ = http_request(self.admin_port, "GET", "/healthz", timeout=0.5)
            if st != 200:
                return False
            socket.create_connection((HOST, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def stats(self, timeout=2.0):
        """/stats.json as a dict; ProxyDied when lb is gone."""
        try:
            st, _, body = http_request(self.admin_port, "GET", "/stats.json", timeout=timeout)
        except OSError:
            if self.proc.wait(0.2) is not None:
                raise ProxyDied("bin/lb %s; last log lines:\n%s" % (
                    exit_desc(self.proc.popen.returncode), self.proc.log_tail(8)))
            raise
        if st != 200:
            raise ScenarioError("/stats.json: %d" % st)
        return json.loads(body)

    def post(self, path, body, token):
        return http_request(self.admin_port, "POST", path, body=body,
                            headers={"Authorization": "Bearer " + token})

    def rss_kb(self):
        return rss_kb(self.pid)

    def sample_sched(self):
        self.proc.sample_sched()

    def log_events(self, pattern):
        """[(wall time, line)] of log lines matching the regex pattern."""
        out = []
        for line in self.proc.log_text().splitlines():
            if re.search(pattern, line):
                out.append((parse_log_time(line), line))
        return out


def backend_of(stats, name, pool="api"):
    for p in stats["pools"]:
        if p["name"] == pool:
            for b in p["backends"]:
                if b["name"] == name:
                    return b
    raise ScenarioError("backend %s/%s not in /stats.json" % (pool, name))


class Poller(threading.Thread):
    """Polls /stats.json every interval seconds until stopped (at most max_s):
    samples are (t since the scenario's t0, stats dict or None when the fetch failed)."""

    def __init__(self, sc, lb, interval=0.1, max_s=600):
        super().__init__(daemon=True)
        self.sc, self.lb, self.interval, self.max_s = sc, lb, interval, max_s
        self.samples = []
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        end = time.monotonic() + self.max_s
        for _ in range(int(self.max_s / self.interval) + 1):
            if self.halt.is_set() or time.monotonic() >= end:
                break
            t = self.sc.t()
            self.lb.sample_sched()
            try:
                s = self.lb.stats(timeout=1.0)
            except ProxyDied:
                break
            except (OSError, ValueError, ScenarioError, http.client.HTTPException):
                s = None
            with self.lock:
                self.samples.append((t, s))
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(5)

    def snapshot(self):
        with self.lock:
            return list(self.samples)

    def first(self, pred, after=0.0):
        """The first sample at or after t=after whose stats satisfy pred: (t, stats) or None."""
        for t, s in self.snapshot():
            if t >= after and s is not None and pred(s):
                return t, s
        return None


class Load:
    """bin/lb-load in the background, JSON report to a file."""

    def __init__(self, sc, url, seconds, rate=None, conns=100, timeout=None, threads=1, tag="load",
                 extra=()):
        self.sc, self.seconds = sc, seconds
        self.out = os.path.join(sc.work, "%s.json" % tag)
        argv = [sc.bin("lb-load"), url, "-c", str(conns), "-d", "%gs" % seconds, "--json",
                "-t", str(threads)] + list(extra)
        if rate:
            argv += ["--rate", "%g" % rate]
        self.timeout_s = timeout or 5.0
        argv += ["--timeout", "%gs" % self.timeout_s]
        self.t_start = sc.t()
        self.proc = sc.spawn(tag, argv, cpu=0, stdout=self.out)

    def interrupt(self):
        """SIGINT: no new request starts, those under way finish, the report is printed."""
        self.proc.signal(signal.SIGINT)

    def wait(self):
        rc = self.proc.wait(self.seconds + self.timeout_s + 15)
        if rc is None:
            self.sc.stop(self.proc)
            raise ScenarioError("lb-load did not finish in time")
        self.t_end = self.sc.t()
        try:
            with open(self.out) as f:
                return json.load(f)
        except (OSError, ValueError):
            raise ScenarioError("lb-load exited %d without a report: %s" % (rc, self.proc.log_tail()))


# --- figures -------------------------------------------------------------------------


def client_errors(r):
    """Requests the client did not get a 2xx/3xx for: errors of every class, 4xx and 5xx."""
    return sum(r["errors"].values()) + r["status"]["4xx"] + r["status"]["5xx"] + r["status"]["1xx"]


def fmt_errors(r):
    parts = ["%s %d" % (k, v) for k, v in r["errors"].items() if v]
    parts += ["status %s %d" % (k, v) for k, v in r["status"].items() if v and k != "2xx"]
    return ", ".join(parts) if parts else "none"


def ms(us):
    return "%.2f" % (us / 1000.0)


def load_figures(v, r, label="load"):
    """Add the usual figures of one lb-load report to verdict v."""
    ol = r.get("open_loop") or {}
    mode = "open loop %g req/s" % ol["rate"] if ol else "closed loop, %d connections" % r["connections_max"]
    v.fig(label, "%s, %.1f s: %d responses (%.0f req/s), %d connections%s" % (
        mode, r["duration_s"], r["requests"], r["rps"], r["connections"],
        ", %d scheduled, %d dropped" % (ol["scheduled"], ol["dropped"]) if ol else ""))
    lat = r["latency_us"]
    v.fig(label + " latency ms", "p50 %s  p99 %s  p99.9 %s  max %s" % (
        ms(lat["p50"]), ms(lat["p99"]), ms(lat["p999"]), ms(lat["max"])))
    v.fig(label + " errors", "%d (%s)" % (client_errors(r), fmt_errors(r)))
    if r.get("backends"):
        v.fig(label + " by backend", "  ".join("%s %d" % kv for kv in sorted(r["backends"].items())))


class Verdict:
    def __init__(self, sc):
        self.sc = sc
        self.figs = []
        self.crit = []
        self.events = []

    def fig(self, label, value):
        self.figs.append((label, str(value)))

    def event(self, t, what):
        self.events.append((t, what))

    def check(self, desc, ok, actual):
        self.crit.append((desc, bool(ok), str(actual)))
        return ok

    def passed(self):
        return bool(self.crit) and all(ok for _, ok, _ in self.crit)


# --- the scenario --------------------------------------------------------------------


class Scenario:
    def __init__(self, name, title):
        self.name, self.title = name, title
        self.t0 = time.monotonic()
        self.wall0 = time.time()  # the same instant on the wall clock, for lb's log times
        self.load0 = _read("/proc/loadavg").split(" ")[0]
        self.started = time.strftime("%Y-%m-%d %H:%M:%S %z")
        self.procs = []
        self.gone = []  # stopped by stop(): their last scheduling sample still counts
        self.pollers = []
        self.lbs = []
        self.keep = os.environ.get("SCENARIO_KEEP", "0") == "1"
        self.work = tempfile.mkdtemp(prefix="lb-scenario-%s." % name)
        self.seconds = env_int("SCENARIO_SECONDS", 30, 1, 600)
        self.workers = env_int("SCENARIO_WORKERS", 0, 0, 64)  # 0: each scenario's own choice
        pin = env_int("SCENARIO_PIN", 1, 0, 1)
        self.pin = pin == 1 and os.cpu_count() >= 2 and shutil.which("taskset") is not None
        self.nice = env_int("SCENARIO_NICE", -10, -20, 19)
        if self.nice and not self._can_nice():
            self.nice = 0
        self.autogroup = self.nice != 0 and _read("/proc/sys/kernel/sched_autogroup_enabled") == "1"
        bindir = os.environ.get("SCENARIO_BIN") or os.path.join(ROOT, "bin")
        os.makedirs(os.path.join(self.work, "bin"))
        for b in ("lb", "lb-backend", "lb-load"):
            src = os.path.join(bindir, b)
            if not os.access(src, os.X_OK):
                raise ScenarioError("%s missing: run make" % src)
            # a copy: a rebuild during the run does not mix two versions
            shutil.copy2(src, os.path.join(self.work, "bin", b))
        self.v = Verdict(self)

    def _can_nice(self):
        try:
            out = subprocess.run(["nice", "-n", str(self.nice), "nice"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            return out == str(self.nice + os.nice(0))
        except (OSError, subprocess.SubprocessError):
            return False

    def bin(self, name):
        return os.path.join(self.work, "bin", name)

    def t(self):
        """Seconds since the scenario began (monotonic)."""
        return time.monotonic() - self.t0

    def wall_to_t(self, wall):
        """A wall-clock time (lb's log) as seconds since the scenario began."""
        return wall - self.wall0

    def lb_events(self, lb, pattern=r"breaker (open|half-open|closed)|health (up|down)|in panic|out of panic"):
        """[(t, message)] of lb's log lines matching pattern, t in scenario seconds."""
        out = []
        for wall, line in lb.log_events(pattern):
            if wall is not None:
                out.append((self.wall_to_t(wall), re.sub(r"^\S+ lb\[\d+\]: ", "", line)))
        return out

    def note_events(self, lb, pattern=None, limit=40):
        """Add lb's breaker/health/panic log lines to the verdict's events (at most limit)."""
        ev = self.lb_events(lb, pattern) if pattern else self.lb_events(lb)
        for t, what in ev[:limit]:
            self.v.event(t, "lb: " + what)
        if len(ev) > limit:
            self.v.event(ev[limit][0], "lb: ... %d more log events" % (len(ev) - limit))

    def check_alive(self, lb):
        self.v.check("bin/lb still running at the end", lb.proc.alive(), exit_desc(lb.proc.popen.poll()))

    def sleep_until(self, t):
        """Wait until t seconds after the scenario began (a scheduled moment, e.g. the fault)."""
        d = t - self.t()
        if d > 0:
            time.sleep(d)

    def spawn(self, name, argv, cpu=0, stdout=None):
        """Start argv in a session of its own (pinned and niced as configured); stopped by cleanup()."""
        pre = []
        if self.nice:
            pre += ["nice", "-n", str(self.nice)]
        if self.pin:
            pre += ["taskset", "-c", str(cpu)]
        log = os.path.join(self.work, "%s.log" % name)
        errf = open(log, "ab")
        outf = open(stdout, "wb") if stdout else errf
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)  # lb logs timestamps, which the scenarios read
        try:
            p = subprocess.Popen(pre + argv, stdin=subprocess.DEVNULL, stdout=outf, stderr=errf,
                                 start_new_session=True, env=env)
        finally:
            errf.close()
            if stdout:
                outf.close()
        proc = Proc(name, p, log)
        self.procs.append(proc)
        if self.autogroup:
            try:  # the session's autogroup gets the nice value too (see bench.sh)
                with open("/proc/%d/autogroup" % p.pid, "w") as f:
                    f.write(str(self.nice))
            except OSError:
                pass
        return proc

    def stop(self, proc, grace=3.0):
        """SIGTERM, then SIGKILL after grace seconds; waits for it."""
        if proc.alive():
            proc.signal(signal.SIGTERM)
            if proc.wait(grace) is None:
                proc.signal(signal.SIGKILL)
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)
            self.gone.append(proc)

    def backends(self, n, args=()):
        return [Backend(self, "b%d" % i, args) for i in range(1, n + 1)]

    def lb(self, backends, **cfg):
        lb = Lb(self, backends, **cfg)
        self.lbs.append(lb)
        return lb

    def require(self, ok, what):
        """A precondition of the measurement (e.g. a clean baseline): without it the
        scenario cannot judge the proxy, and says so (ERROR) rather than PASS or FAIL."""
        if not ok:
            raise ScenarioError("precondition failed: %s" % what)

    def poller(self, lb, interval=0.1):
        p = Poller(self, lb, interval)
        self.pollers.append(p)
        p.start()
        return p

    def load(self, lb, path="/", **kw):
        return Load(self, lb.url(path), **kw)

    def machine(self):
        load1 = _read("/proc/loadavg").split(" ")[0]
        desc = "%d CPUs, load average %s at the start, %s at the end" % (os.cpu_count(), self.load0, load1)
        desc += ", lb on CPU 1, the rest on CPU 0" if self.pin else ", no pinning"
        if self.nice:
            desc += ", nice %d" % self.nice
        return desc

    def stop_lbs(self):
        """Stop every lb still running with SIGTERM, as an operator would, and judge it: it
        must exit 0 within its drain (a few seconds here), and its log must hold no
        sanitizer report (with SCENARIO_BIN pointing at a sanitizer build)."""
        for lb in self.lbs:
            if not lb.proc.alive():
                continue
            lb.sample_sched()
            lb.proc.signal(signal.SIGTERM)
            rc = lb.proc.wait(15)
            if rc is None:
                self.v.check("bin/lb exits 0 on SIGTERM at the end", False, "still running 15 s after SIGTERM")
                continue
            self.v.check("bin/lb exits 0 on SIGTERM at the end", rc == 0, exit_desc(rc))
        for lb in self.lbs:
            text = lb.proc.log_text()
            bad = [line for line in text.splitlines() if re.search(SANITIZER, line)]
            if bad:
                self.v.check("no sanitizer report in lb's log", False, bad[0][:200])

    def sched_figure(self):
        """How much lb and the backends waited for a CPU while runnable: on a shared
        machine, the first thing to look at when a timing criterion fails."""
        groups = {}
        for p in self.procs + self.gone:
            kind = "lb" if p.name == "lb" else "backends" if re.match(r"b\d+$", p.name) else None
            if kind:
                run, wait = p.sched_delta()
                g = groups.setdefault(kind, [0.0, 0.0])
                g[0] += run
                g[1] += wait
        pct = {k: 100 * w / (r + w) if r + w > 0 else 0.0 for k, (r, w) in groups.items()}
        parts = ["%s %.0f%% of its runnable time (%.2f s on CPU, %.2f s waiting)" % (
            k, pct[k], r, w) for k, (r, w) in sorted(groups.items(), reverse=True)]
        return ("; ".join(parts) if parts else None), max(pct.values() or [0.0])

    def cleanup(self, ok):
        for p in self.pollers:
            p.stop()
        for p in list(self.procs):
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in list(self.procs):
            p.wait(max(0.0, deadline - time.monotonic()))
        for p in list(self.procs):
            if p.alive():
                p.signal(signal.SIGKILL)
                p.wait(5)
        self.procs = []
        if ok and not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print("scenario %s: work directory kept: %s" % (self.name, self.work), file=sys.stderr)

    def report(self, error=None):
        """Print the verdict block; returns the exit status."""
        v = self.v
        if error:
            verdict, rc = "ERROR", 2
        else:
            verdict, rc = ("PASS", 0) if v.passed() else ("FAIL", 1)
        f, busiest = self.sched_figure()
        if f:
            v.figs.insert(0, ("waiting for a CPU", f))
        w = max([len(l) for l, _ in v.figs] + [10])
        print("== scenario %s: %s" % (self.name, self.title))
        print("  %-*s  %s" % (w, "started", self.started))
        print("  %-*s  %s" % (w, "machine", self.machine()))
        for label, value in v.figs:
            print("  %-*s  %s" % (w, label, value))
        if v.events:
            print("  events (t = seconds since the start):")
            for t, what in sorted(v.events, key=lambda e: e[0]):
                print("    t=%7.3f  %s" % (t, what))
        print("  criteria:")
        for desc, ok, actual in v.crit:
            print("    [%s] %s: %s" % ("PASS" if ok else "FAIL", desc, actual))
        if error:
            print("    [ERROR] %s" % error)
        if (error or not v.passed()) and busiest > BUSY_PCT:
            print("  note: the processes of this run waited for a CPU up to %.0f%% of the time they could have "
                  "run: other work on the machine competed with them (see \"waiting for a CPU\"). Rerun on a "
                  "quieter machine before blaming the proxy for a timing criterion." % busiest)
        print("verdict %s: %s (%.1f s)" % (self.name, verdict, self.t()))
        sys.stdout.flush()
        out = os.environ.get("SCENARIO_RESULTS")
        if out:
            try:
                with open(os.path.join(out, self.name + ".json"), "w") as f:
                    json.dump({"name": self.name, "title": self.title, "verdict": verdict,
                               "seconds": round(self.t(), 1), "error": error,
                               "criteria": [{"what": d, "ok": o, "actual": a} for d, o, a in v.crit],
                               "figures": dict(v.figs), "summary": getattr(v, "summary", "")}, f,
                              indent=1)
            except OSError as e:
                print("scenario %s: cannot write the result: %s" % (self.name, e), file=sys.stderr)
        return rc


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def run(name, title, fn):
    """Run scenario fn(sc) and exit with its status; whatever happens, every process it
    started is stopped."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    sc = None
    rc = 2
    try:
        sc = Scenario(name, title)
        fn(sc)
        sc.stop_lbs()
        rc = sc.report()
    except ProxyDied as e:
        sc.v.check("bin/lb kept running", False, str(e))
        sc.stop_lbs()
        rc = sc.report()
    except ScenarioError as e:
        if sc:
            rc = sc.report(error=str(e))
        else:
            print("scenario %s: %s" % (name, e), file=sys.stderr)
    except KeyboardInterrupt:
        print("scenario %s: interrupted" % name, file=sys.stderr)
        rc = 130
    except SystemExit as e:
        print("scenario %s: stopped by a signal" % name, file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        if sc:
            sc.cleanup(rc == 0)
    sys.exit(rc)
