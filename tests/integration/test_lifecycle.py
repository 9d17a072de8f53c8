"""Command line, signals, access log."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import check, config_text, eq, fail, skip, timeout, wait_until


def _write(t, name, text):
    path = os.path.join(t.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_good_config(t):
    b1 = t.backend("b1")
    _write(t, "good.conf", config_text(t.config(backends=[b1])))
    code, out = t.run_lb(["-t", "-c", "good.conf"])
    eq(code, 0, "exit status of lb -t on a valid file (output %r)" % out)
    check("configuration OK" in out, "lb -t output: %r" % out)


def _bad_text(t):
    good = config_text(t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}]))
    lines = good.split("\n")
    check(lines[0].startswith("lb = {") and lines[1].strip().startswith("workers"), "config layout changed: %r" % lines[:3])
    return lines


def test_check_bad_config_names_file_and_line(t):
    lines = _bad_text(t)
    lines.insert(2, "    no_such_key = 5;")  # line 3
    _write(t, "bad.conf", "\n".join(lines))
    code, out = t.run_lb(["-t", "-c", "bad.conf"])
    eq(code, 1, "exit status of lb -t on an invalid file (output %r)" % out)
    check(any(ln.startswith("bad.conf:3:") for ln in out.splitlines()), "no line starting 'bad.conf:3:' in %r" % out)
    check("configuration OK" not in out, "invalid file reported OK: %r" % out)


def test_check_bad_config_reports_every_error(t):
    lines = _bad_text(t)
    lines.insert(2, "    no_such_key = 5;")  # line 3
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("connect ="))
    lines[i] = '    connect = "soon";'
    _write(t, "bad2.conf", "\n".join(lines))
    code, out = t.run_lb(["-t", "-c", "bad2.conf"])
    eq(code, 1, "exit status (output %r)" % out)
    errs = [ln for ln in out.splitlines() if ln.startswith("bad2.conf:")]
    check(any(ln.startswith("bad2.conf:3:") for ln in errs), "unknown key on line 3 not reported: %r" % out)
    check(any(ln.startswith("bad2.conf:%d:" % (i + 1)) for ln in errs), "bad duration on line %d not reported: %r" % (i + 1, out))


def test_check_syntax_error_line(t):
    lines = _bad_text(t)
    lines[3] = lines[3] + " }}} ;"  # line 4
    _write(t, "syn.conf", "\n".join(lines))
    code, out = t.run_lb(["-t", "-c", "syn.conf"])
    eq(code, 1, "exit status (output %r)" % out)
    check(any(ln.startswith("syn.conf:4:") for ln in out.splitlines()), "no line starting 'syn.conf:4:' in %r" % out)


def test_version(t):
    code, out = t.run_lb(["-v"])
    eq(code, 0, "exit status of lb -v (output %r)" % out)
    check(out.strip() != "" and any(ch.isdigit() for ch in out), "lb -v printed %r" % out)


def test_sigterm_with_idle_keepalive_client_exits_0(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"client_idle": "30s"}))
    c = lb.conn()
    eq(c.request("GET", "/").status, 200, "status")
    t0 = time.monotonic()
    lb.signal(signal.SIGTERM)
    check(c.closed_within(3 * t.slow), "idle keep-alive client not closed within 3s of SIGTERM")
    try:
        lb.proc.wait(3 * t.slow)
    except Exception:
        fail("lb still running %.1fs after SIGTERM" % (time.monotonic() - t0))
    eq(lb.proc.returncode, 0, "exit status after SIGTERM")


def test_sigterm_finishes_inflight_request(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"}))
    c = lb.conn()
    c.send(b"GET /sleep/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: lb.backend_stats("api", "b1")["inflight"] == 1, 2 * t.slow, what="the request in flight at b1")
    lb.signal(signal.SIGTERM)
    r = c.read_response(timeout=5 * t.slow)
    eq((r.status, r.header("X-Backend")), (200, "b1"), "the request in flight during SIGTERM")
    check("close" in (r.header("Connection") or "").lower() or r.version == "HTTP/1.0",
          "response in flight during shutdown without Connection: close (%r)" % r.header("Connection"))
    check(c.closed_within(3 * t.slow), "connection not closed after the last response")
    lb.proc.wait(5 * t.slow)
    eq(lb.proc.returncode, 0, "exit status after SIGTERM")


def _access(t, fmt):
    b1 = t.backend("b1")
    path = os.path.join(t.tmp, "access.log")
    lb = t.lb(t.config(backends=[b1], log={"access": path, "format": fmt}))
    c = lb.conn()
    rs = [c.request("GET", "/"), c.request("GET", "/status/404", headers=[("X-Request-Id", "rid-404")]),
          c.request("POST", "/echo?q=1", body=b"x" * 100)]
    eq([r.status for r in rs], [200, 404, 200], "statuses")

    def lines():
        try:
            with open(path) as f:
                ls = [ln for ln in f.read().splitlines() if ln.strip()]
        except OSError:
            return None
        return ls if len(ls) >= 3 else None

    try:
        got = wait_until(lines, 3 * t.slow, what="3 access log lines")
    except AssertionError:
        fail("access log %s has %r after 3 requests (3s)" % (path, open(path).read() if os.path.exists(path) else "no file"))
    eq(len(got), 3, "access log lines after 3 requests")
    return lb, rs, got


def test_access_log_json(t):
    lb, rs, got = _access(t, "json")
    recs = []
    for ln in got:
        try:
            recs.append(json.loads(ln))
        except ValueError:
            fail("access log line is not JSON: %r" % ln)
    for rec, r, (m, p) in zip(recs, rs, [("GET", "/"), ("GET", "/status/404"), ("POST", "/echo?q=1")]):
        for k in ("time", "client", "method", "path", "status", "bytes", "backend", "request_id"):
            check(k in rec, "access log record without %r: %r" % (k, rec))
        check(any("upstream" in k for k in rec), "no upstream time field: %r" % rec)
        check(any(k.startswith("total") or k in ("duration_ms", "request_ms") for k in rec), "no total time field: %r" % rec)
        eq((rec["method"], rec["status"], rec["backend"]), (m, r.status, "b1"), "method/status/backend in %r" % rec)
        check(rec["path"] in (p, p.split("?")[0]), "path %r for %s" % (rec["path"], p))
        check("127.0.0.1" in str(rec["client"]), "client %r" % rec["client"])
        eq(rec["request_id"], r.header("X-Request-Id"), "request_id vs the response's X-Request-Id")
    eq(recs[1]["request_id"], "rid-404", "request_id sent by the client")


def test_access_log_text(t):
    lb, rs, got = _access(t, "text")
    for ln, (p, st) in zip(got, [("/", 200), ("/status/404", 404), ("/echo", 200)]):
        check(p in ln and str(st) in ln, "access log line %r lacks path %s or status %d" % (ln, p, st))
    check("rid-404" in got[1], "text line lacks the request id: %r" % got[1])


def test_healthz_503_while_shutting_down(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"backend": "5s"}))
    eq(lb.admin_get("/healthz").status, 200, "/healthz while serving")
    c = lb.conn()
    c.send(b"GET /sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: lb.backend_stats("api", "b1")["inflight"] == 1, 2 * t.slow, what="the request in flight at b1")
    lb.signal(signal.SIGTERM)
    # the request in flight keeps the process up for about 1.5 s; the admin answers 503 meanwhile
    wait_until(lambda: _healthz_status(lb) == 503, 1.0, interval=0.05, what="/healthz to answer 503 after SIGTERM")
    r = c.read_response(timeout=5 * t.slow)
    eq(r.status, 200, "the request in flight")


def _healthz_status(lb):
    try:
        return lb.admin_get("/healthz").status
    except Exception:
        return None


def test_sigterm_as_soon_as_listening_exits_0(t):
    """Once the listener accepts, SIGTERM must already be handled (graceful exit
    0), not kill the process with the default action."""
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1])
    codes = []
    for i in range(10):
        lb = t.lb(cfg, ready=False)
        deadline = time.monotonic() + 5 * t.slow
        while not _accepts(lb.port):  # a tight bounded poll: SIGTERM at the first moment it accepts
            check(time.monotonic() < deadline and lb.proc.poll() is None, "lb did not start listening (round %d)" % i)
            time.sleep(0.002)
        lb.signal(signal.SIGTERM)
        try:
            lb.proc.wait(3 * t.slow)
        except Exception:
            fail("lb still running 3s after SIGTERM (round %d)" % i)
        codes.append(lb.proc.returncode)
    eq(codes, [0] * 10, "exit statuses of 10 lb started and sent SIGTERM as soon as the listener accepted")


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_check_refuses_what_lb_would_not_start(t):
    """`lb -t` passes exactly the files lb starts with (systemd's ExecStartPre relies on
    it): a tls listener whose certificate file holds no certificate fails the check with
    its line, and lb itself refuses the same file at start."""
    for name in ("site.pem", "site.key"):
        _write(t, name, "placeholder\n")
    cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}],
                   listener={"tls": {"cert": os.path.join(t.tmp, "site.pem"), "key": os.path.join(t.tmp, "site.key")}})
    text = config_text(cfg)
    _write(t, "tls.conf", text)
    line = next(i + 1 for i, ln in enumerate(text.split("\n")) if ln.strip().startswith("tls ="))
    code, out = t.run_lb(["-t", "-c", "tls.conf"])
    eq(code, 1, "exit status of lb -t with a tls listener (output %r)" % out)
    check("configuration OK" not in out, "lb -t said OK: %r" % out)
    check(any(ln.startswith("tls.conf:%d:" % line) and "tls" in ln for ln in out.splitlines()),
          "no 'tls.conf:%d: ... tls ...' line in %r" % (line, out))
    code, out = t.run_lb(["-c", "tls.conf"])
    eq(code, 1, "exit status of lb started with the same file (output %r)" % out)


def test_long_options_help_and_version(t):
    """--help and --version as well as -h and -v; -V and --version --verbose print the build."""
    outs = {}
    for args in (["-h"], ["--help"], ["-v"], ["--version"], ["-V"], ["--version", "--verbose"]):
        code, out = t.run_lb(args)
        eq(code, 0, "exit status of lb %s (output %r)" % (" ".join(args), out))
        outs[" ".join(args)] = out
    eq(outs["-h"], outs["--help"], "-h and --help")
    for opt in ("--config", "--check", "--version", "--help", "/etc/lb/lb.conf"):
        check(opt in outs["--help"], "lb --help does not mention %s: %r" % (opt, outs["--help"]))
    eq(outs["-v"], outs["--version"], "-v and --version")
    check(re.fullmatch(r"lb \d+\.\d+\.\d+\n", outs["-v"]) is not None, "lb -v printed %r" % outs["-v"])
    eq(outs["-V"], outs["--version --verbose"], "-V and --version --verbose")
    build = outs["-V"]
    check(build.startswith(outs["-v"]), "lb -V does not start with the version line: %r" % build)
    fields = dict(ln.split(":", 1) for ln in build.splitlines()[1:] if ":" in ln)
    for k in ("compiler", "flags", "linked", "libev", "OpenSSL", "libconfig", "features"):
        check(k in fields, "lb -V has no %s line: %r" % (k, build))
    check(re.search(r"(gcc|clang) \d", fields["compiler"]), "compiler line %r" % fields["compiler"])
    check(re.search(r"\b4\.\d+ \(running 4\.\d+\)", fields["libev"]), "libev line %r" % fields["libev"])
    check("OpenSSL 3." in fields["OpenSSL"], "OpenSSL line %r" % fields["OpenSSL"])
    check(re.search(r"\b1\.\d+\.\d+", fields["libconfig"]), "libconfig line %r" % fields["libconfig"])
    eq(fields["linked"].strip(), "dynamic", "how the test binary is linked")
    if t.asan:
        check("-fsanitize=address" in fields["flags"], "ASan build's flags line %r" % fields["flags"])
        check("asan" in fields["features"].split(), "ASan build's features %r" % fields["features"])
    code, out = t.run_lb(["--no-such-option"])
    eq(code, 2, "exit status of an unknown option (output %r)" % out)
    check("usage:" in out, "unknown option without usage: %r" % out)


def _unshare_ok():
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def test_default_config_path(t):
    """Without -c, lb reads /etc/lb/lb.conf; when that does not exist it falls back to
    config/lb.conf of the working directory and says so; with neither it says how to
    name one. /etc is replaced by an empty tmpfs in a mount namespace of the test's own
    (root only), so the machine's /etc/lb is neither read nor touched."""
    if not _unshare_ok():
        skip("needs root and unshare(1) for a private /etc")
    b1 = t.backend("b1")
    good = config_text(t.config(backends=[b1]))
    etc_conf = good.replace("workers = 1;", "workers = 1; zone = \"from-etc\";")
    check(etc_conf != good, "config layout changed")
    tree = os.path.join(t.tmp, "tree")
    os.makedirs(os.path.join(tree, "config"))
    _write(t, "tree/config/lb.conf", good)
    _write(t, "etc.conf", etc_conf)
    bare = os.path.join(t.tmp, "bare")
    os.makedirs(bare)

    def run(setup, cwd):
        script = "mount -t tmpfs tmpfs /etc && %s && exec \"$0\" -t" % setup
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, t.lb_bin],
                           cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10 * t.slow)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    # /etc/lb/lb.conf exists: it is read, even from a directory with config/lb.conf
    code, out, err = run("mkdir /etc/lb && cp %s /etc/lb/lb.conf" % os.path.join(t.tmp, "etc.conf"), tree)
    eq((code, out.strip()), (0, "configuration OK"), "lb -t with /etc/lb/lb.conf (stderr %r)" % err)
    check("using config/lb.conf" not in err, "fell back although /etc/lb/lb.conf exists: %r" % err)
    code, out, err = run("mkdir /etc/lb && printf 'lb = {\\n workers = x;\\n};\\n' > /etc/lb/lb.conf", tree)
    eq(code, 1, "lb -t with a broken /etc/lb/lb.conf (stdout %r)" % out)
    check(err.startswith("/etc/lb/lb.conf:2:"), "error not about /etc/lb/lb.conf line 2: %r" % err)
    # no /etc/lb/lb.conf: the tree's file, said on stderr
    code, out, err = run("true", tree)
    eq((code, out.strip()), (0, "configuration OK"), "lb -t from the tree (stderr %r)" % err)
    check("no /etc/lb/lb.conf; using config/lb.conf" in err, "fallback not said: %r" % err)
    # neither: the error names /etc/lb/lb.conf and tells how to give one
    code, out, err = run("true", bare)
    eq(code, 1, "lb -t without any configuration (stdout %r)" % out)
    check(err.startswith("/etc/lb/lb.conf: cannot open: No such file or directory"), "stderr %r" % err)
    check("-c FILE" in err, "no hint to use -c: %r" % err)


@timeout(40)
def test_shutdown_grace_keeps_accepting_then_drains(t):
    """timeouts.shutdown_grace: after SIGTERM /healthz answers 503 at once, but new
    connections are still accepted and served for the grace; then the listener closes
    and a request that started during the grace finishes in the drain."""
    grace = 3.0
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"shutdown_grace": "3s", "drain": "10s", "backend": "10s",
                                                "client_idle": "30s"}))
    keep = lb.conn()
    eq(keep.request("GET", "/").status, 200, "keep-alive request before SIGTERM")
    t0 = time.monotonic()
    lb.signal(signal.SIGTERM)
    wait_until(lambda: _healthz_status(lb) == 503, 1.0, interval=0.02, what="/healthz 503 right after SIGTERM")
    live = lb.admin_get("/livez")
    eq((live.status, live.body), (200, b"alive\n"), "/livez during the grace (a liveness probe must pass)")
    s = lb.stats()
    eq((s["stopping"], s["draining"]), (True, False), "stopping/draining during the grace")
    # a connection opened during the grace is accepted and served
    fresh = lb.conn()
    r = fresh.request("GET", "/")
    eq((r.status, r.header("X-Backend")), (200, "b1"), "a new connection during the grace")
    eq(keep.request("GET", "/").status, 200, "the keep-alive connection during the grace")
    # a slow request started in the grace runs past its end
    slow = lb.conn()
    slow.send(b"GET /sleep/4500 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: lb.backend_stats("api", "b1")["inflight"] == 1, 2 * t.slow, what="the slow request at b1")
    late = [0]

    def refused():
        if time.monotonic() - t0 < grace - 0.2:
            late[0] += _accepts(lb.port)  # still accepting, as it should: count the proofs
            return False
        return not _accepts(lb.port)

    wait_until(refused, grace + 2 * t.slow, interval=0.05, what="the listener to close after the grace")
    closed_at = time.monotonic() - t0
    check(closed_at >= grace - 0.2, "listener closed %.2fs after SIGTERM, before the %.1fs grace" % (closed_at, grace))
    check(late[0] > 0, "no connection was tried while the grace ran")
    check(lb.stats()["draining"] is True, "stats do not say draining after the grace")
    r = slow.read_response(timeout=10 * t.slow)
    eq((r.status, r.header("X-Backend")), (200, "b1"), "the request that started during the grace")
    check("close" in (r.header("Connection") or "").lower(), "response finished in the drain without Connection: close")
    try:
        lb.proc.wait(5 * t.slow)
    except Exception:
        fail("lb still running %.1fs after SIGTERM" % (time.monotonic() - t0))
    eq(lb.proc.returncode, 0, "exit status after the grace and drain")
    check("still accepting for 3000ms" in lb.stderr_text(), "the grace is not logged")


def test_check_syntax_errors_name_the_line_of_the_mistake(t):
    """The three common slips, each at the line where it is (libconfig itself reports
    the end of the file for a missing brace), with a hint saying what it is."""
    cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}, {"name": "b2", "address": "127.0.0.1:2"}])
    lines = config_text(cfg).split("\n")

    def at(pred, what):
        for i, ln in enumerate(lines):
            if pred(ln):
                return i
        fail("config layout changed: no line with %s" % what)

    def check_file(name, text, want):
        _write(t, name, text)
        code, out = t.run_lb(["-t", "-c", name])
        eq(code, 1, "exit status of lb -t on %s (output %r)" % (name, out))
        eq(out.strip(), want, "lb -t on %s" % name)

    # 1. an address without quotes
    bad = list(lines)
    i = at(lambda ln: '"127.0.0.1:1"' in ln, "b1's address")
    bad[i] = bad[i].replace('"127.0.0.1:1"', "127.0.0.1:1")
    check_file("unquoted.conf", "\n".join(bad),
               'unquoted.conf:%d: syntax error: 127.0.0.1:1 needs double quotes: address = "127.0.0.1:1"' % (i + 1))

    # 2. the separator between two backends left out
    bad = list(lines)
    i = at(lambda ln: '"127.0.0.1:1"' in ln, "b1's address") + 1
    eq(bad[i].strip(), "},", "the line closing b1")
    bad[i] = bad[i].replace("},", "}")
    check_file("separator.conf", "\n".join(bad),
               "separator.conf:%d: syntax error: ',' missing between two elements of a list" % (i + 2))

    # 3. a group's closing brace left out: libconfig alone says the last line
    bad = list(lines)
    eq((bad[0], bad[2]), ("lb = {", "};"), "the lb group's first and last lines")
    del bad[2]
    check_file("brace.conf", "\n".join(bad),
               "brace.conf:3: syntax error: '}' missing before this line: the '{' of line 1 is not closed")
