"""make install into a DESTDIR: what lands where, with which modes, and that the
installed pieces work (the binary runs, the configuration checks, the man page renders,
logrotate reads its file). The build step is skipped (make -o all): the binary under
test is installed, so no second build happens inside the test."""

import os
import re
import shutil
import stat
import subprocess

from harness import ROOT, check, eq, make_env, timeout

MODES = {
    "usr/bin/lb": 0o755,
    "etc/lb/lb.conf": 0o640,
    "lib/systemd/system/lb.service": 0o644,
    "usr/lib/sysusers.d/lb.conf": 0o644,
    "usr/share/man/man8/lb.8": 0o644,
    "etc/logrotate.d/lb": 0o644,
}


def _install(t, dest):
    p = subprocess.run(["make", "--no-print-directory", "-s", "-o", "all", "install",
                        "BIN=" + os.path.dirname(t.lb_bin), "BUILD=" + os.path.join(t.tmp, "build"),
                        "DESTDIR=" + dest, "PREFIX=/usr"],
                       cwd=ROOT, env=make_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60 * t.slow)
    out = p.stdout.decode("utf-8", "replace")
    eq(p.returncode, 0, "make install status (output %r)" % out)
    return out


@timeout(60)
def test_make_install_destdir(t):
    dest = os.path.join(t.tmp, "dest")
    out = _install(t, dest)
    files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
    eq(files, sorted(MODES), "files installed")
    for rel, mode in MODES.items():
        got = stat.S_IMODE(os.stat(os.path.join(dest, rel)).st_mode)
        eq(oct(got), oct(mode), "mode of %s" % rel)
    check("with a new random admin.token" in out, "make install did not say it made a token: %r" % out)

    conf = os.path.join(dest, "etc/lb/lb.conf")
    with open(conf) as f:
        text = f.read()
    tokens = re.findall(r'^\s*token = "([^"]*)";', text, re.M)
    eq(len(tokens), 1, "admin.token settings in the installed file")
    check(re.fullmatch(r"[0-9a-f]{32}", tokens[0]) is not None, "installed token %r is not 32 random hex digits" % tokens[0])
    lb = os.path.join(dest, "usr/bin/lb")
    p = subprocess.run([lb, "-t", "-c", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10 * t.slow)
    eq((p.returncode, p.stdout.decode().strip()), (0, "configuration OK"), "the installed lb checks the installed file")
    ver = subprocess.run([lb, "--version"], stdout=subprocess.PIPE, timeout=10 * t.slow).stdout.decode().strip()
    check(re.fullmatch(r"lb \d+\.\d+\.\d+", ver) is not None, "installed lb --version: %r" % ver)
    with open(os.path.join(dest, "lib/systemd/system/lb.service")) as f:
        unit = f.read()
    check("ExecStart=/usr/bin/lb -c /etc/lb/lb.conf" in unit and "/usr/local/bin" not in unit,
          "the installed unit does not name the PREFIX's binary")

    # a second install keeps the operator's file
    with open(conf, "a") as f:
        f.write("# the operator's edit\n")
    out = _install(t, dest)
    check("exists: kept as it is" in out, "second install output %r" % out)
    with open(conf) as f:
        eq(f.read(), text + "# the operator's edit\n", "the installed file after a second make install")

    # the man page: groff sees no problem, man renders the sections, the version is lb's
    page = os.path.join(dest, "usr/share/man/man8/lb.8")
    with open(page) as f:
        th = f.readline() and next(ln for ln in f if ln.startswith(".TH"))
    check(('"%s"' % ver) in th, "man page .TH %r does not carry %r" % (th, ver))
    if shutil.which("groff"):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20 * t.slow)
        eq((p.returncode, p.stderr.decode()), (0, ""), "groff -ww on the man page")
    else:
        print("note: no groff; the man page's warnings are not checked")
    if shutil.which("man"):
        p = subprocess.run(["man", "-l", page], env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20 * t.slow)
        shown = p.stdout.decode("utf-8", "replace")
        eq(p.returncode, 0, "man -l status (stderr %r)" % p.stderr.decode())
        for section in ("NAME", "SYNOPSIS", "OPTIONS", "SIGNALS", "CONFIGURATION", "ADMIN ENDPOINTS", "FILES"):
            check(re.search(r"^%s$" % section, shown, re.M), "man -l shows no %s section" % section)
        for word in ("--config", "SIGHUP", "shutdown_grace", "watch_config", "/healthz"):
            check(word in shown, "man -l output lacks %r" % word)
    else:
        print("note: no man; the page's rendering is not checked")

    # logrotate reads its file (debug mode: nothing is rotated)
    lr = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if lr:
        p = subprocess.run([lr, "-d", "-s", os.path.join(t.tmp, "lr.state"), os.path.join(dest, "etc/logrotate.d/lb")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20 * t.slow)
        text = p.stdout.decode("utf-8", "replace")
        eq(p.returncode, 0, "logrotate -d status (output %r)" % text)
        check("error" not in text.lower(), "logrotate -d reports an error: %r" % text)
        check("/var/log/lb/*.log" in text, "logrotate -d does not consider /var/log/lb/*.log: %r" % text)
    else:
        print("note: no logrotate; its file is not checked")
