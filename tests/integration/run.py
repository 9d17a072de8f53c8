#!/usr/bin/env python3
"""
run.py - run the black-box integration tests of bin/lb.

    tests/integration/run.py [--lb PATH] [--backend PATH] [-k SUBSTRING]... [-j N] [--list] [--keep]

Each test function test_* in tests/integration/test_*.py runs in a process of
its own (a new session, so a time-out kills it and everything it started),
with its own range of ports and its own temporary directory. Output: one line
per test, `ok   NAME (0.3s)`, `skip NAME: why` (a tool this machine lacks) or
`FAIL NAME: reason` (followed by the tail of lb's stderr), then
`N passed, N failed` (and `, N skipped` when any were). Exit status 0 only when none failed.

Environment: LB_BIN and BACKEND_BIN override the binaries (the options win),
LB_SLOW multiplies every time limit (default 2.5 for a sanitizer build, else 1),
LB_TEST_PORT_BASE moves the port ranges (default: one of five blocks from
20000 to 31999, picked by process id, below the kernel's ephemeral range, so
two runs at once rarely meet; a port is used only after a probe finds it free).
"""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_TIMEOUT = 30.0


def discover():
    sys.path.insert(0, HERE)
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if fn.startswith("test_") and fn.endswith(".py"):
            mod = importlib.import_module(fn[:-3])
            for name, obj in list(vars(mod).items()):
                if name.startswith("test_") and callable(obj):
                    tests.append((fn[:-3], name, getattr(obj, "timeout", DEFAULT_TIMEOUT)))
    return tests


def is_asan(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"AddressSanitizer" in data


def child(args):
    sys.path.insert(0, HERE)
    import harness

    modname, fname = args.child.split(":")
    ctx = harness.Ctx(int(args.slot), args.tmp, os.environ["LB_BIN"], os.environ.get("BACKEND_BIN", ""),
                      slow=float(os.environ.get("LB_SLOW", "1")), asan=os.environ.get("LB_ASAN") == "1",
                      port_base=int(os.environ.get("LB_TEST_PORT_BASE", "20000")))
    result = {"ok": True, "reason": "", "details": ""}
    t0 = time.monotonic()
    try:
        mod = importlib.import_module(modname)
        getattr(mod, fname)(ctx)
    except harness.TestSkipped as e:
        result = {"ok": True, "skipped": str(e), "reason": "", "details": ""}
    except harness.TestFailure as e:
        result = {"ok": False, "reason": str(e), "details": _where(e)}
    except Exception as e:
        result = {"ok": False, "reason": "%s: %s" % (type(e).__name__, e), "details": traceback.format_exc()}
    problems = []
    try:
        problems = ctx.cleanup()
    except Exception as e:
        problems = ["cleanup failed: %r" % e]
    if problems:
        if result["ok"]:
            result = {"ok": False, "reason": "; ".join(problems), "details": ""}
        else:
            result["reason"] += " [also: %s]" % "; ".join(problems)
    if not result["ok"]:
        result["details"] = (result["details"] + "\n" + ctx.lb_tails()).strip()
    result["elapsed"] = time.monotonic() - t0
    with open(args.result, "w") as f:
        json.dump(result, f)
    return 0


def _where(e):
    tb = traceback.extract_tb(e.__traceback__)
    frames = [f for f in tb if os.path.basename(f.filename).startswith("test_")]
    if frames:
        f = frames[-1]
        return "at %s:%d: %s" % (os.path.basename(f.filename), f.lineno, f.line)
    return ""


def tails_of(dirpath, n=25):
    out = []
    try:
        names = sorted(os.listdir(dirpath))
    except OSError:
        return ""
    for name in names:
        if name.startswith("lb") and name.endswith(".stderr"):
            with open(os.path.join(dirpath, name), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            out.append("--- %s (tail) ---\n%s" % (name, "\n".join(lines[-n:])))
    return "\n".join(out)


def indent(text):
    return "\n".join("    " + ln for ln in text.splitlines())


def main():
    ap = argparse.ArgumentParser(description="black-box integration tests for bin/lb")
    ap.add_argument("--lb", default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("-k", action="append", default=[], help="run tests whose name contains this (repeatable)")
    ap.add_argument("-j", type=int, default=2, help="tests in parallel (default 2)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep every test's temporary directory")
    ap.add_argument("--child")
    ap.add_argument("--slot")
    ap.add_argument("--tmp")
    ap.add_argument("--result")
    args = ap.parse_args()
    if args.child:
        return child(args)

    lb = args.lb or os.environ.get("LB_BIN") or os.path.join(ROOT, "bin/lb")
    backend = args.backend or os.environ.get("BACKEND_BIN") or os.path.join(ROOT, "bin/lb-backend")
    lb = os.path.abspath(lb)
    if backend != "py":
        backend = os.path.abspath(backend)
    tests = discover()
    slots = {(m, f): i for i, (m, f, _) in enumerate(tests)}
    if args.k:
        tests = [t for t in tests if any(k in t[1] or k in "%s.%s" % (t[0], t[1]) for k in args.k)]
    if args.list:
        for m, f, _ in tests:
            print("%s.%s" % (m, f))
        return 0
    if not os.access(lb, os.X_OK):
        print("FAIL setup: %s is not an executable (build it with make)" % lb)
        print("0 passed, %d failed" % len(tests))
        return 1
    asan = is_asan(lb)
    slow = float(os.environ.get("LB_SLOW") or (2.5 if asan else 1.0))
    if backend != "py" and not os.access(backend, os.X_OK):
        print("note: %s not built; using the Python stand-in for lb-backend" % backend)
        backend = "py"
    env = dict(os.environ, LB_BIN=lb, BACKEND_BIN=backend, LB_SLOW=str(slow), LB_ASAN="1" if asan else "0")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("LB_TEST_PORT_BASE", str(20000 + (os.getpid() % 5) * 2400))
    if asan:
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    root_tmp = tempfile.mkdtemp(prefix="lb-itest-")
    print("lb: %s%s; backend: %s; %d tests; -j %d" % (lb, " (sanitizer build)" if asan else "", backend, len(tests), args.j))
    # run copies, so a rebuild during the run does not pull binaries from under it
    snap = os.path.join(root_tmp, "bin")
    os.makedirs(snap)
    beside = os.path.join(os.path.dirname(lb), "lb-load")
    for src in [lb, backend, beside]:
        if src != "py" and os.access(src, os.X_OK):
            shutil.copy2(src, os.path.join(snap, os.path.basename(src)))
    env["LB_BIN"] = os.path.join(snap, os.path.basename(lb))
    if backend != "py":
        env["BACKEND_BIN"] = os.path.join(snap, os.path.basename(backend))
    sys.stdout.flush()

    # the long ones (a time limit above the default) first, so the short ones fill in around them
    pending = sorted(tests, key=lambda x: -x[2]) if args.j > 1 else list(tests)
    running = {}  # Popen -> (name, tmpdir, resultfile, start, limit)
    passed = failed = skipped = 0
    failures = []
    t_start = time.monotonic()

    def finish(p, name, d, resf, start, timed_out):
        nonlocal passed, failed, skipped
        el = time.monotonic() - start
        res = None
        if not timed_out:
            try:
                with open(resf) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                res = None
        if timed_out:
            res = {"ok": False, "reason": "timed out after %.0fs (killed)" % el, "details": tails_of(d)}
        elif res is None:
            try:
                with open(os.path.join(d, "child.out"), "rb") as f:
                    out = f.read().decode("utf-8", "replace")
            except OSError as e:
                out = "(its output is gone: %s)" % e
            res = {"ok": False, "reason": "test process died (status %s)" % p.returncode,
                   "details": out[-3000:] + "\n" + tails_of(d)}
        if res["ok"] and res.get("skipped"):
            skipped += 1
            print("skip %s: %s (%.1fs)" % (name, res["skipped"], el))
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
        elif res["ok"]:
            passed += 1
            print("ok   %s (%.1fs)" % (name, el))
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
        else:
            failed += 1
            failures.append(name)
            print("FAIL %s: %s (%.1fs)" % (name, res["reason"], el))
            if res.get("details"):
                print(indent(res["details"]))
            print("    (files kept in %s)" % d)
        sys.stdout.flush()

    for _ in range(100000):  # bounded: every turn either starts or waits on a test
        while pending and len(running) < max(1, args.j):
            m, f, limit = pending.pop(0)
            name = "%s.%s" % (m, f)
            d = os.path.join(root_tmp, name)
            os.makedirs(d)
            resf = os.path.join(d, "result.json")
            out = open(os.path.join(d, "child.out"), "wb")
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", "%s:%s" % (m, f),
                                  "--slot", str(slots[(m, f)]), "--tmp", d, "--result", resf],
                                 cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            out.close()
            running[p] = (name, d, resf, time.monotonic(), limit * slow + 15)
        if not running:
            break
        time.sleep(0.02)
        for p in list(running):
            name, d, resf, start, limit = running[p]
            if p.poll() is not None:
                del running[p]
                finish(p, name, d, resf, start, False)
            elif time.monotonic() - start > limit:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
                del running[p]
                finish(p, name, d, resf, start, True)

    if not failures and not args.keep:
        shutil.rmtree(root_tmp, ignore_errors=True)
    else:
        shutil.rmtree(snap, ignore_errors=True)
    print("# total %.1fs" % (time.monotonic() - t_start))
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
