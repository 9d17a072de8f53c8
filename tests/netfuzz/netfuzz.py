#!/usr/bin/env python3
"""
netfuzz.py - network-level fuzzer for lb (Python 3 standard library only).

It starts the sanitizer build of lb with a generated loopback config, one
listener and pool per lane, each pool holding the two sockets of that lane's
scripted backend. Every lane plays cases one after the other (cases.py: a
mutated client script and a mutated backend script), all lanes at once. After
every case lb must still run with no sanitizer report on its stderr; every
few seconds its admin /healthz must answer; at the end it must exit 0 on
SIGTERM with a clean stderr.

On a finding, the last cases of each lane are replayed one lane at a time
against a fresh lb to find the lane that reproduces it; a JSON reproducer
goes to --out, and the run exits 1.

    netfuzz.py --seconds 60               fuzz for a minute with a random seed
    netfuzz.py --seed 7 --cases 500       500 cases of seed 7
    netfuzz.py --short                    the fixed pass of `make test`
    netfuzz.py --replay FILE...           replay reproducers; exit 1 if lb fails
    netfuzz.py --seed 7 --dump 20         print cases 0-19 of seed 7 as JSON

Exit status: 0 clean, 1 finding (or a replay that fails), 2 usage, lb
would not start, or the fuzzer itself failed.
"""

import argparse
import collections
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import cases
import players

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SANITIZER = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
PORT_RANGE = (32000, 33000)  # lb's listeners; the black-box tests use 20000-31999
HISTORY = 4  # cases per lane kept for a reproducer: lb state can carry over
HEALTHZ_EVERY_S = 2.0
HEALTHZ_MISSES = 3  # /healthz failing this many times in a row is a finding
START_S = 10.0  # lb must listen and answer /healthz within this
STOP_S = 15.0  # and exit within this after SIGTERM (timeouts.drain is 1s)
LANE_END_S = 30.0  # lanes must wind down within this once told to stop

# The fixed pass of `make test`: fixed inputs, about 20 s on a small machine.
SHORT_SEED = 1
SHORT_CASES = 600
SHORT_LANES = 8
SHORT_CAP_S = 60

# Short timeouts so that a case that hangs resolves in well under a second;
# breakers off so that failures do not end in 503s that hide the backends.
CONFIG = """\
lb = { workers = 2; };
log = { level = "warn"; };
admin = { listen = "127.0.0.1:%(admin)d"; };
timeouts = { connect = "300ms"; client_header = "400ms"; client_idle = "300ms";
             backend = "400ms"; backend_idle = "1s"; tunnel = "500ms"; drain = "1s"; };
listeners = (
%(listeners)s
);
pools = (
%(pools)s
);
"""

LISTENER = '  { name = "l%(i)d"; listen = "127.0.0.1:%(port)d"; pool = "p%(i)d"; }'

POOL = """\
  { name = "p%(i)d"; slow_start = "0s"; health = { type = "off"; };
    breaker = { consecutive_failures = 0; failure_rate = 0; slow_call_rate = 0; };
    retry = { attempts = 1; budget = 1;
              on = [ "connect-failure", "reset", "timeout", "invalid-response", "5xx" ]; };
    backends = ( { name = "a"; address = "127.0.0.1:%(a)d"; },
                 { name = "b"; address = "127.0.0.1:%(b)d"; } ); }"""


def lb_config(listen_ports, admin_port, backend_ports):
    return CONFIG % {
        "admin": admin_port,
        "listeners": ",\n".join(LISTENER % {"i": i, "port": p} for i, p in enumerate(listen_ports)),
        "pools": ",\n".join(POOL % {"i": i, "a": a, "b": b} for i, (a, b) in enumerate(backend_ports)),
    }


def free_ports(n, rng):
    """n ports of PORT_RANGE that nothing holds now, from a random start so
    that two runs at once are unlikely to race for the same ones."""
    lo, hi = PORT_RANGE
    start = rng.randrange(lo, hi)
    out = []
    for k in range(hi - lo):  # bounded by the range
        p = lo + (start - lo + k) % (hi - lo)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
            s.listen(1)
            out.append(p)
        except OSError:
            continue
        finally:
            s.close()
        if len(out) == n:
            return out
    raise Abort("no %d free ports in %d-%d" % (n, lo, hi - 1))


def healthz(port, timeout_s):
    """Status of GET /healthz on lb's admin port, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            deadline = time.monotonic() + timeout_s
            while b"\r\n" not in data and time.monotonic() < deadline:  # bounded
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        return int(m.group(1)) if m else None
    except OSError:
        return None


class Abort(Exception):
    """The run cannot go on: lb would not start, or the fuzzer itself failed."""


class Lb:
    """The lb under test. Its stderr goes to a file that check() scans as it
    grows; the first problem seen sticks."""

    def __init__(self, binary, workdir, backend_ports, rng):
        self.stderr_path = os.path.join(workdir, "lb.stderr")
        self.lock = threading.Lock()
        self.scanned = 0
        self.tail = ""
        self.problem = None
        self.proc = None
        for attempt in range(3):  # another process may take a probed port first
            ports = free_ports(len(backend_ports) + 1, rng)
            self.admin_port, self.ports = ports[0], ports[1:]
            conf = os.path.join(workdir, "lb.conf")
            with open(conf, "w") as f:
                f.write(lb_config(self.ports, self.admin_port, backend_ports))
            with open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err, cwd=workdir)
            if self._wait_ready():
                return
            self.kill()
            text = self.stderr_text()
            if "in use" not in text or attempt == 2:
                raise Abort("lb did not start (status %s); stderr:\n%s" % (self.proc.returncode, text[-3000:]))

    def _wait_ready(self):
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:  # bounded
            if self.proc.poll() is not None:
                return False
            if healthz(self.admin_port, 1.0) == 200:
                return True
            time.sleep(0.05)
        return False

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check(self):
        """None while lb runs with a clean stderr, else what went wrong."""
        with self.lock:
            if self.problem:
                return self.problem
            with open(self.stderr_path, "rb") as f:
                f.seek(self.scanned)
                new = f.read()
            self.scanned += len(new)
            # the tail of the last scan in front, so a pattern cut in two is seen whole
            text = self.tail + new.decode("utf-8", "replace")
            self.tail = text[-64:]
            if any(p in text for p in SANITIZER):
                self.problem = "sanitizer report on lb's stderr"
            elif self.proc.poll() is not None:
                self.problem = "lb exited with status %s during the run" % self.proc.returncode
            return self.problem

    def set_problem(self, what):
        with self.lock:
            self.problem = self.problem or what

    def stop(self):
        """SIGTERM, then require exit 0 and a clean stderr; returns the problem or None."""
        problem = self.check()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return problem or "lb did not exit within %.0fs of SIGTERM" % STOP_S
        return problem or self.check_exit()

    def check_exit(self):
        if any(p in self.stderr_text() for p in SANITIZER):
            return "sanitizer report on lb's stderr"
        if self.proc.returncode != 0:
            return "lb exited with status %s after SIGTERM" % self.proc.returncode
        return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def sanitizer_excerpt(text, max_lines=200):
    """The sanitizer report in lb's stderr (from its ERROR or runtime error
    line to its SUMMARY), or lb's last lines when there is none."""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if any(p in ln for p in SANITIZER):
            out = []
            for l2 in lines[i:i + max_lines]:
                out.append(l2)
                if l2.startswith("SUMMARY:"):
                    break
            return out
    return lines[-10:]


def print_excerpt(excerpt, head=24):
    """The report's first lines (the faulting stack) and its SUMMARY."""
    shown = excerpt if len(excerpt) <= head + 2 else excerpt[:head] + ["...", excerpt[-1]]
    for ln in shown:
        print("    " + ln)


def show_path(path):
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def signature(excerpt):
    """A finding's kind, to tell one bug from another: the sanitizer's bug
    type ("heap-use-after-free"), "runtime-error", or "failure"."""
    for ln in excerpt:
        m = re.search(r"ERROR: (?:Address|Leak)Sanitizer: ([\w-]+)", ln)
        if m:
            return m.group(1)
        if "runtime error:" in ln:
            return "runtime-error"
    return "failure"


# --------------------------------------------------------------------------
# counting what lb did


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.cases = 0
        self.client_bytes = 0
        self.statuses = collections.Counter()
        self.no_answer = collections.Counter()

    def count(self, script, res):
        sts = players.response_statuses(res.received)
        with self.lock:
            self.cases += 1
            self.client_bytes += res.sent
            self.statuses.update(sts)
            if sts:
                return
            if res.refused:
                self.no_answer["refused"] += 1
            elif res.received:
                self.no_answer["not HTTP"] += 1
            elif script["end"] in ("close", "reset") and not res.closed:
                self.no_answer["client left first"] += 1
            elif res.closed:
                self.no_answer["lb closed"] += 1
            else:
                self.no_answer["still open after %.0fs" % players.READ_S] += 1

    def lines(self, elapsed, backend_bytes):
        classes = collections.Counter()
        for st, n in self.statuses.items():
            classes["%dxx" % (st // 100)] += n
        rate = self.cases / elapsed if elapsed > 0 else 0.0
        return [
            "%d cases in %.1fs (%.1f/s)" % (self.cases, elapsed, rate),
            "bytes sent: client %d, backend %d" % (self.client_bytes, backend_bytes),
            "lb answered: " + (", ".join("%s %d" % kv for kv in sorted(classes.items())) or "nothing"),
            "statuses: " + ", ".join("%d %d" % kv for kv in sorted(self.statuses.items())),
            "no answer: " + (", ".join("%s %d" % kv for kv in sorted(self.no_answer.items())) or "none"),
        ]


# --------------------------------------------------------------------------
# a session: one lb, a lane per stream of cases


class Lane:
    def __init__(self, n, stream):
        self.n = n
        self.stream = stream
        self.backend = players.ScriptedBackend()
        self.history = collections.deque(maxlen=HISTORY)
        self.started = 0.0  # when its current case began
        self.error = None  # traceback of a fuzzer bug that stopped the lane


class Outcome:
    def __init__(self):
        self.problem = None
        self.excerpt = []
        self.histories = []
        self.last_started = []
        self.elapsed = 0.0
        self.backend_bytes = 0
        self.workdir = None
        self.errors = []  # fuzzer bugs met in lanes


def run_lane(lane, lb, stats, stop):
    try:
        for case in lane.stream:  # bounded by the stream's length or by stop
            if stop.is_set():
                return
            lane.history.append(case)
            lane.started = time.monotonic()
            lane.backend.begin(case["backend"])
            stats.count(case["client"], players.play_client(lb.ports[lane.n], case["client"]))
            if lb.check():
                stop.set()
                return
    except Exception:
        # a bug of the fuzzer, not of lb: stop everything and say so
        lane.error = traceback.format_exc()
        stop.set()


def session(binary, streams, stats, seconds, rng):
    """Play the streams of cases (one lane each) against a fresh lb for at most
    `seconds`. Raises Abort if lb does not come up or a lane fails."""
    out = Outcome()
    work_root = os.path.join(ROOT, "build", "netfuzz")
    os.makedirs(work_root, exist_ok=True)
    out.workdir = tempfile.mkdtemp(prefix="run-", dir=work_root)
    lanes = [Lane(i, s) for i, s in enumerate(streams)]
    lb = None
    t0 = time.monotonic()
    try:
        lb = Lb(binary, out.workdir, [ln.backend.ports for ln in lanes], rng)
        t0 = time.monotonic()
        stop = threading.Event()
        threads = [threading.Thread(target=run_lane, args=(ln, lb, stats, stop), daemon=True) for ln in lanes]
        for t in threads:
            t.start()
        deadline = t0 + seconds
        next_healthz = t0 + HEALTHZ_EVERY_S
        misses = 0
        stopped_at = None
        while any(t.is_alive() for t in threads):  # bounded: stop is set at the deadline
            time.sleep(0.1)
            now = time.monotonic()
            if now >= deadline or lb.check():
                stop.set()
            if stop.is_set() and stopped_at is None:
                stopped_at = now
            if not stop.is_set() and now >= next_healthz:
                misses = 0 if healthz(lb.admin_port, 3.0) == 200 else misses + 1
                if misses >= HEALTHZ_MISSES:
                    lb.set_problem("admin /healthz did not answer %d times in a row" % misses)
                next_healthz = time.monotonic() + HEALTHZ_EVERY_S
            if stopped_at is not None and now >= stopped_at + LANE_END_S:
                lb.set_problem("lanes did not end within %.0fs of being stopped" % LANE_END_S)
                break
        out.elapsed = time.monotonic() - t0
        out.problem = lb.stop()
        if out.problem:
            out.excerpt = sanitizer_excerpt(lb.stderr_text())
    finally:
        if lb:
            lb.kill()
        for ln in lanes:
            ln.backend.stop()
            out.backend_bytes += ln.backend.sent
        out.errors = [ln.error for ln in lanes if ln.error]
        out.histories = [list(ln.history) for ln in lanes]
        out.last_started = [ln.started for ln in lanes]
        if not out.problem:
            shutil.rmtree(out.workdir, ignore_errors=True)
    if out.errors:
        raise Abort("fuzzer error in a lane:\n" + out.errors[0])
    return out


# --------------------------------------------------------------------------
# findings


def triage(binary, outcome, rng):
    """Replay each lane's last case, then its last HISTORY cases, alone
    against a fresh lb, latest lanes first. Returns (lanes, lane, excerpt):
    the first set of cases that reproduces a finding of the same kind, or
    every lane's history (lane None) when none does alone."""
    want = signature(outcome.excerpt)
    order = sorted(range(len(outcome.histories)), key=lambda i: -outcome.last_started[i])
    tried = []
    for i in order:
        hist = outcome.histories[i]
        for cand in ([hist[-1:]] + ([hist] if len(hist) > 1 else [])) if hist else []:
            if cand in tried:
                continue
            tried.append(cand)
            o = session(binary, [iter(cand)], Stats(), 60, rng)
            shutil.rmtree(o.workdir, ignore_errors=True)  # the run's own files tell the story
            if o.problem and signature(o.excerpt) == want:
                return [cand], i, o.excerpt
    return outcome.histories, None, outcome.excerpt


def write_finding(out_dir, seed, outcome, lanes, lane, excerpt):
    os.makedirs(out_dir, exist_ok=True)
    which = "case%d" % lanes[0][-1]["index"] if lane is not None else "unconfirmed"
    path = os.path.join(out_dir, "%s-seed%s-%s.json" % (signature(excerpt), seed, which))
    summary = [ln for ln in excerpt if ln.startswith("SUMMARY:")] or excerpt[:1]
    repro = {
        "about": "lb network fuzzer reproducer; replay: tests/netfuzz/netfuzz.py --replay FILE",
        "found": outcome.problem,
        "summary": summary[0] if summary else "",
        "seed": seed,
        "lane": lane,
        "confirmed": lane is not None,
        "lanes": [[cases.to_json(c) for c in ln] for ln in lanes],
    }
    with open(path, "w") as f:
        json.dump(repro, f, indent=1)
        f.write("\n")
    return path


def load_repro(path):
    with open(path) as f:
        obj = json.load(f)
    try:
        return [[cases.from_json(c) for c in ln] for ln in obj["lanes"]]
    except (KeyError, TypeError) as e:
        raise ValueError("%s: not a reproducer (%r)" % (path, e))


# --------------------------------------------------------------------------
# modes


def stream(mut, lane, lanes, limit):
    """Cases lane, lane+lanes, ... of the mutator, below limit if one is set."""
    i = lane
    while limit is None or i < limit:  # bounded by limit, or by the session's stop
        yield mut.case(i)
        i += lanes


def fuzz(binary, seed, lanes, limit, seconds, out_dir, rng):
    """Cases 0, 1, ... (below limit if set) of seed for at most `seconds`;
    returns (0 or 1 finding, stats)."""
    mut = cases.Mutator(cases.Corpus(), seed)
    stats = Stats()
    print("netfuzz: seed %d, %d lanes, %s, against %s" % (
        seed, lanes, "%d cases" % limit if limit else "%.0fs" % seconds, show_path(binary)), flush=True)
    outcome = session(binary, [stream(mut, i, lanes, limit) for i in range(lanes)], stats, seconds, rng)
    for ln in stats.lines(outcome.elapsed, outcome.backend_bytes):
        print("  " + ln)
    if not outcome.problem:
        if limit and stats.cases < limit:
            print("  time limit of %.0fs reached before case %d" % (seconds, limit))
        print("  findings: 0")
        return 0, stats
    print("  FINDING after %.1fs, %d cases: %s" % (outcome.elapsed, stats.cases, outcome.problem))
    print("  lb's config and stderr: %s" % show_path(outcome.workdir))
    lanes, lane, excerpt = triage(binary, outcome, rng)
    path = write_finding(out_dir, seed, outcome, lanes, lane, excerpt)
    how = "lane %d alone reproduces it" % lane if lane is not None else \
        "no single lane reproduces it: the reproducer holds every lane's last cases"
    print("  reproducer: %s (%s)" % (show_path(path), how))
    print_excerpt(excerpt)
    print("  findings: 1")
    return 1, stats


def replay(binary, paths, rng):
    failed = 0
    for path in paths:
        try:
            lanes = load_repro(path)
        except (OSError, ValueError) as e:
            print("FAIL %s: %s" % (show_path(path), e))
            failed += 1
            continue
        o = session(binary, [iter(ln) for ln in lanes], Stats(), 120, rng)
        if not o.problem:
            print("ok   %s (%d cases)" % (show_path(path), sum(len(ln) for ln in lanes)))
            continue
        failed += 1
        print("FAIL %s: %s (lb's config and stderr: %s)" % (show_path(path), o.problem, show_path(o.workdir)))
        print_excerpt(o.excerpt)
    return failed


def main():
    ap = argparse.ArgumentParser(description="network-level fuzzer for lb")
    ap.add_argument("--lb", default="build/asan/bin/lb", help="lb binary (default build/asan/bin/lb)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="run for this long (default 60; with --cases, at most an hour)")
    ap.add_argument("--cases", type=int, default=None, help="run this many cases, then stop")
    ap.add_argument("--seed", type=int, default=None, help="PRNG seed (default: random, printed)")
    ap.add_argument("--lanes", type=int, default=8, help="lanes played at once (default 8)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "netfuzz", "findings"),
                    help="where reproducers go (default build/netfuzz/findings)")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="replay reproducer files")
    ap.add_argument("--short", action="store_true",
                    help="the fixed pass of make test: seed %d, %d cases, then replay tests/netfuzz/repro/"
                    % (SHORT_SEED, SHORT_CASES))
    ap.add_argument("--dump", type=int, metavar="N", help="print the first N cases as JSON and exit")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if args.dump is not None:
        mut = cases.Mutator(cases.Corpus(), seed)
        for i in range(args.dump):
            print(json.dumps(cases.to_json(mut.case(i))))
        return 0
    if not 1 <= args.lanes <= 32:
        ap.error("--lanes must be 1-32")
    # relative to where we run, else to the tree (lb itself runs in a scratch directory)
    binary = os.path.abspath(args.lb if os.path.exists(args.lb) else os.path.join(ROOT, args.lb))
    if not os.access(binary, os.X_OK):
        print("netfuzz: no lb binary at %s (make asan builds build/asan/bin/lb)" % args.lb)
        return 2
    # the PRNG for ports only: cases come from their own seeded PRNGs
    rng = random.Random()
    try:
        if args.replay:
            return 1 if replay(binary, args.replay, rng) else 0
        if args.short:
            rc, stats = fuzz(binary, SHORT_SEED, SHORT_LANES, SHORT_CASES, SHORT_CAP_S, args.out, rng)
            repros = sorted(glob.glob(os.path.join(HERE, "repro", "*.json")))
            bad = replay(binary, repros, rng) if repros else 0
            # the last line: tests/run.sh shows it as the suite's result
            print("short pass: %d cases, %d finding%s; %d of %d reproducers replayed clean" % (
                stats.cases, rc, "" if rc == 1 else "s", len(repros) - bad, len(repros)))
            return 1 if rc or bad else 0
        seconds = args.seconds if args.seconds is not None else 60.0 if args.cases is None else 3600.0
        return fuzz(binary, seed, args.lanes, args.cases, seconds, args.out, rng)[0]
    except Abort as e:
        print("netfuzz: %s" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
