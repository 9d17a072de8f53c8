#!/usr/bin/env python3
"""testssl: testssl.sh against a TLS listener of bin/lb, on loopback.

Setup: one lb-backend, bin/lb with a TLS listener serving an ECDSA P-256 and an
RSA 2048 certificate for the same names (a test CA made here with openssl),
default TLS settings.
Run: testssl.sh --protocols --std --fs --vulnerable --cipher-per-proto (no
certificate trust checks: the test CA is not trusted by anyone), JSON output.
PASS when: SSLv2, SSLv3, TLS 1.0 and 1.1 are not offered and TLS 1.2 and 1.3
are; no NULL, anonymous, export, LOW, 3DES/IDEA or obsolete CBC suite is
offered; every suite offered is an ECDHE one with AES-GCM or ChaCha20-Poly1305;
every vulnerability check ran and found nothing (OK or INFO); no finding of
severity LOW or above, and no scan error (WARN); lb still running.
Figures: testssl's protocol, cipher category and vulnerability findings, the
suites offered per protocol, its scan time.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

LIMIT_S = 600  # testssl's own run; about 1-2 minutes on the 2-CPU VM
PROTOCOLS = {"SSLv2": "not offered", "SSLv3": "not offered", "TLS1": "not offered",
             "TLS1_1": "not offered", "TLS1_2": "offered", "TLS1_3": "offered"}
WEAK_CIPHERS = ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]
VULNS = ["heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
         "LOGJAM", "BEAST", "LUCKY13", "RC4"]
BAD_SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise lib.ScenarioError("openssl %s: %s" % (args[0], (p.stdout + p.stderr).strip()[-300:]))


def make_certs(work):
    """A test CA and two leaves for lb.test and 127.0.0.1 (ECDSA P-256, RSA 2048)."""
    d = os.path.join(work, "pki")
    os.makedirs(d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key", cwd=d)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=lb scenario CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    certs = []
    for n, (kind, opt) in enumerate((("ec", "ec_paramgen_curve:P-256"), ("rsa", "rsa_keygen_bits:2048"))):
        openssl("genpkey", "-algorithm", kind.upper(), "-pkeyopt", opt, "-out", kind + ".key", cwd=d)
        openssl("req", "-new", "-key", kind + ".key", "-out", kind + ".csr", "-subj", "/CN=lb.test",
                "-addext", "subjectAltName=DNS:lb.test,IP:127.0.0.1", cwd=d)
        openssl("x509", "-req", "-in", kind + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
                str(n + 2), "-days", "2", "-copy_extensions", "copyall", "-out", kind + ".pem", cwd=d)
        certs.append({"cert": os.path.join(d, kind + ".pem"), "key": os.path.join(d, kind + ".key")})
    return certs


def main(sc):
    v = sc.v
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not exe:
        raise lib.ScenarioError("testssl.sh not found (apt-get install testssl.sh; make scenarios installs it)")
    certs = make_certs(sc.work)
    (b1,) = sc.backends(1)
    lb = sc.lb([b1], tls={"certs": certs})
    jpath = os.path.join(sc.work, "testssl.json")
    out = os.path.join(sc.work, "testssl.out")
    t0 = sc.t()
    proc = sc.spawn("testssl", [exe, "--quiet", "--color", "0", "--warnings", "off", "--connect-timeout", "5",
                                "--openssl-timeout", "10", "-oj", jpath, "--protocols", "--std", "--fs",
                                "--vulnerable", "--cipher-per-proto", "127.0.0.1:%d" % lb.port],
                    cpu=0, stdout=out)
    rc = proc.wait(LIMIT_S)
    if rc is None:
        raise lib.ScenarioError("testssl.sh still running after %d s" % LIMIT_S)
    took = sc.t() - t0
    try:
        with open(jpath) as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise lib.ScenarioError("no JSON from testssl.sh (exit %s): %s; output:\n%s" % (
            rc, e, "\n".join(lib._read(out).splitlines()[-20:])))
    by_id = {}
    for x in found:
        by_id.setdefault(x["id"], x)

    def finding(i):
        x = by_id.get(i)
        return "%s (%s)" % (x["finding"], x["severity"]) if x else "missing"

    for i in PROTOCOLS:
        v.fig("protocol " + i, finding(i))
    for i in WEAK_CIPHERS + ["cipherlist_STRONG"]:
        v.fig(i, finding(i))
    for i in VULNS:
        v.fig("vuln " + i, finding(i))
    suites = [x["finding"].split()[3] + " (" + x["finding"].split()[0] + x["finding"].split()[1] + ")"
              for x in found if x["id"].startswith("cipher-tls")]
    v.fig("suites offered", ", ".join(suites))
    v.fig("testssl.sh", "%s, exit status %s, %.0f s" % (finding("scanTime"), rc, took))

    v.check("SSLv2, SSLv3, TLS 1.0, TLS 1.1 not offered; TLS 1.2 and 1.3 offered",
            all(by_id.get(i, {}).get("finding", "").startswith(w) for i, w in PROTOCOLS.items()),
            ", ".join("%s %s" % (i, by_id.get(i, {}).get("finding", "missing")) for i in PROTOCOLS))
    v.check("no NULL, anonymous, export, LOW, 3DES/IDEA or obsolete CBC suite offered",
            all(by_id.get(i, {}).get("finding") == "not offered" for i in WEAK_CIPHERS),
            ", ".join("%s %s" % (i[11:], by_id.get(i, {}).get("finding", "missing")) for i in WEAK_CIPHERS))
    bad_suites = [x["finding"] for x in found if x["id"].startswith("cipher-tls")
                  and not (" ECDH " in x["finding"] and ("AESGCM" in x["finding"] or "ChaCha20" in x["finding"]))]
    v.check("every suite offered is ECDHE with AES-GCM or ChaCha20-Poly1305",
            suites and not bad_suites, "%d suites, %d others: %s" % (len(suites), len(bad_suites), bad_suites[:3]))
    missing = [i for i in VULNS if i not in by_id]
    vuln = ["%s: %s (%s)" % (i, by_id[i]["finding"], by_id[i]["severity"]) for i in VULNS
            if i in by_id and by_id[i]["severity"] not in ("OK", "INFO")]
    v.check("every vulnerability check ran and found nothing", not missing and not vuln,
            "%d checks, missing %s, vulnerable %s" % (len(VULNS) - len(missing), missing or "none", vuln or "none"))
    worse = ["%s: %s (%s)" % (x["id"], x["finding"][:80], x["severity"]) for x in found
             if x["severity"] in BAD_SEVERITIES]
    v.check("no finding of severity LOW or above, no scan error", not worse,
            "%d findings, %d at LOW or above: %s" % (len(found), len(worse), worse[:5] or "none"))
    st = lb.stats()["listeners"][0]["tls"]
    v.fig("lb handshakes", "full %d, resumed %d, failed %s" % (
        st["handshakes"]["full"], st["handshakes"]["resumed"],
        {k: n for k, n in st["failed"].items() if n}))
    sc.check_alive(lb)
    if worse:
        v.summary = "%d findings at LOW or above: %s" % (len(worse), "; ".join(worse[:3]))
    else:
        v.summary = "%d findings, none above INFO; TLS 1.2+1.3 only, %d AEAD suites; %d/%d vulnerability checks OK" % (
            len(found), len(suites), len(VULNS) - len(missing) - len(vuln), len(VULNS))


if __name__ == "__main__":
    lib.run("testssl", "testssl.sh against a TLS listener", main)
