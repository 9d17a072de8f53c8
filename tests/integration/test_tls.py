"""TLS from the outside: termination (SNI, RSA and ECDSA, versions, ALPN,
resumption across workers and reloads, handshake counters, reloads of
certificates, `lb -t`, stalled handshakes, plain HTTP on the TLS port,
X-Forwarded-Proto, the access log) and TLS to backends (verification, SNI,
keep-alive reuse, sessions, health checks, client certificates).

Certificates are made per test with the openssl command (pki.py). Clients are
curl, `openssl s_client` and Python's ssl module; TLS backends are Python
servers (pyservers.TlsPyServer) that record what the proxy did.
"""

import copy
import os
import re
import signal
import socket
import ssl
import subprocess
import time

from harness import HttpConn, Raw, check, config_text, eq, fail, timeout, wait_until
from pki import Pki, cert_info
from pyservers import TlsPyServer, h_ok, http_handler, response_bytes

GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


# --------------------------------------------------------------------------
# clients


def client_ctx(ca=None, sigalgs=None):
    """A TLS client context: verifying against CA (names not checked: the
    tests look at the certificate themselves), or verifying nothing."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    if ca:
        c.load_verify_locations(ca)
    else:
        c.verify_mode = ssl.CERT_NONE
    return c


class TlsConn(HttpConn):
    """HttpConn over TLS (the handshake happens here, within the timeout)."""

    def __init__(self, t, port, sslctx, sni=None, timeout=None):
        HttpConn.__init__(self, t, port, timeout=timeout)
        self.sock = sslctx.wrap_socket(self.sock, server_hostname=sni)

    def peer(self):
        return self.sock.getpeercert()

    def subject_cn(self):
        return dict(x[0] for x in self.peer()["subject"])["commonName"]


def s_client(t, port, *args, data=GET_CLOSE, timeout_s=10):
    """openssl s_client against 127.0.0.1:PORT: (exit status, output). With the
    default DATA (a request with Connection: close) and -ign_eof it reads the
    whole answer, session tickets included, and ends when lb closes."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    if data:
        argv.append("-ign_eof")
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout_s * t.slow)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def served_cert(out):
    """(subject line, subjectAltName text, key bits) of the certificate s_client printed."""
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    check(m, "no server certificate in the s_client output: %r" % out[-800:])
    info = cert_info(m.group(0))
    subj = re.search(r"^subject=(.*)$", info, re.M)
    bits = re.search(r"Server public key is (\d+) bit", out)
    return (subj.group(1).strip() if subj else None, info, int(bits.group(1)) if bits else None)


def session_line(out):
    """'New, TLSv1.3, Cipher is ...' or 'Reused, ...' from s_client's output."""
    m = re.search(r"^(New|Reused), (TLSv[\d.]+), Cipher is (\S+)", out, re.M)
    return m.groups() if m else None


def curl(t, port, *args, name="a.test", path="/"):
    argv = ["curl", "-sS", "--max-time", str(int(5 * t.slow)), "--resolve", "%s:%d:127.0.0.1" % (name, port),
            "-o", "-", "-w", "\\n%{http_code} %{ssl_verify_result} %{http_version}"] + list(args) + \
        ["https://%s:%d%s" % (name, port, path)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10 * t.slow)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# lb with TLS


def tls_lb(t, backends, certs, tls=None, workers=1, **kw):
    """lb with one TLS listener serving CERTS [(cert, key), ...] (the first is
    the default)."""
    lt = {"certs": [{"cert": c, "key": k} for c, k in certs]}
    lt.update(tls or {})
    cfg = t.config(backends=backends, workers=workers, listener={"tls": lt}, **kw)
    lb = t.lb(cfg)
    # the harness's readiness probe (one connect and close on the listener) is a
    # handshake that failed as "closed": wait until it is counted, so that the
    # tests' counter deltas start from a settled state
    wait_until(lambda: tls_stats(lb)["failed"]["closed"] == 1, 3 * t.slow, interval=0.02,
               what="the readiness probe's handshake to be counted")
    return lb, cfg


def tls_stats(lb):
    return lb.stats()["listeners"][0]["tls"]


def counters(st):
    """A tls stats object flattened: {"full": n, "resumed": n, "failed.REASON": n}."""
    out = dict(st["handshakes"])
    out.update({"failed." + k: v for k, v in st["failed"].items()})
    return out


def delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def rewrite(lb, cfg):
    with open(lb.conf_path, "w") as f:
        f.write(config_text(cfg))


def wait_reloads(t, lb, ok, failed):
    last = [None]

    def done():
        last[0] = lb.stats()["reloads"]
        return (last[0]["ok"], last[0]["failed"]) == (ok, failed)

    try:
        wait_until(done, 5 * t.slow, interval=0.05, what="reload counters")
    except AssertionError:
        fail("reloads: expected ok=%d failed=%d, got %r" % (ok, failed, last[0]))
    return last[0]


def copy_file(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, dst)


def note(t, text):
    """A figure worth reading after a run (kept with run.py --keep): TEST_DIR/figures.txt."""
    with open(os.path.join(t.tmp, "figures.txt"), "a") as f:
        f.write(text + "\n")


def wait_until_or_false(pred, timeout_s):
    try:
        return wait_until(pred, timeout_s, interval=0.05)
    except AssertionError:
        return False


def client_hello():
    """The bytes of a real TLS ClientHello (Python's, via a memory BIO)."""
    c = client_ctx()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = c.wrap_bio(inc, out, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# --------------------------------------------------------------------------
# termination


def test_tls_curl_and_s_client_through_proxy(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])])
    rc, out = curl(t, lb.port, "--cacert", pki.ca_cert)
    eq(rc, 0, "curl exit status (output %r)" % out)
    eq(out, "b1\n\n200 0 1.1", "curl: body, then status, verify result, HTTP version")
    rc, out = s_client(t, lb.port, "-servername", "a.test", "-CAfile", pki.ca_cert, "-verify_return_error")
    eq(rc, 0, "s_client exit status (output %r)" % out[-600:])
    check("Verify return code: 0 (ok)" in out, "s_client did not verify the chain: %r" % out[-600:])
    check(re.search(r"^HTTP/1\.1 200 OK\r?$", out, re.M) and "\nb1\n" in out.replace("\r", ""),
          "s_client got no 200 from b1: %r" % out[-600:])


def test_tls_sni_picks_certificate_and_default(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    certs = [pki.leaf("a.test", dns=["a.test", "www.a.test"]), pki.leaf("b.test", dns=["b.test"]),
             pki.leaf("*.w.test", dns=["*.w.test"]), pki.leaf("x.w.test", dns=["x.w.test"])]
    lb, _ = tls_lb(t, [b1], certs)
    cases = [("a.test", "CN = a.test"), ("www.a.test", "CN = a.test"), ("b.test", "CN = b.test"),
             ("B.Test", "CN = b.test"),  # names compare case-insensitively
             ("y.w.test", "CN = *.w.test"),  # the wildcard
             ("x.w.test", "CN = x.w.test"),  # an exact name before the wildcard that also matches it
             ("z.y.w.test", "CN = a.test"),  # a wildcard stands for one label only: the default
             ("unknown.test", "CN = a.test"), (None, "CN = a.test")]
    got = []
    for name, _ in cases:
        args = ["-servername", name] if name else ["-noservername"]
        rc, out = s_client(t, lb.port, *(args + ["-CAfile", pki.ca_cert, "-verify_return_error"]))
        eq(rc, 0, "s_client for %r (output %r)" % (name, out[-400:]))
        subj, info, _ = served_cert(out)
        got.append((name, subj))
        if name == "b.test":
            check("DNS:b.test" in info, "b.test's certificate SAN: %r" % info)
    eq(got, [(n, s) for n, s in cases], "certificate subject served per server name")


def test_tls_rsa_and_ecdsa_for_the_same_name(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    ec = pki.leaf("dual.test", dns=["dual.test"], kind="ec")
    rsa = pki.leaf("dual.test", dns=["dual.test"], kind="rsa")
    lb, _ = tls_lb(t, [b1], [ec, rsa])
    seen = {}
    for proto in ("-tls1_2", "-tls1_3"):
        for label, sigalgs in (("rsa", "RSA-PSS+SHA256:RSA+SHA256"), ("ecdsa", "ECDSA+SHA256")):
            rc, out = s_client(t, lb.port, proto, "-servername", "dual.test", "-sigalgs", sigalgs,
                               "-CAfile", pki.ca_cert, "-verify_return_error")
            eq(rc, 0, "s_client %s %s (output %r)" % (proto, label, out[-400:]))
            subj, _, bits = served_cert(out)
            seen[(proto, label)] = (subj, bits)
    eq(seen, {("-tls1_2", "rsa"): ("CN = dual.test", 2048), ("-tls1_2", "ecdsa"): ("CN = dual.test", 256),
              ("-tls1_3", "rsa"): ("CN = dual.test", 2048), ("-tls1_3", "ecdsa"): ("CN = dual.test", 256)},
       "certificate (subject, key bits) per client signature algorithms")


def test_tls_versions_12_13_only(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])])
    before = counters(tls_stats(lb))
    res = {}
    for proto in ("-tls1", "-tls1_1", "-tls1_2", "-tls1_3"):
        # security level 0 on the client, so that it really offers TLS 1.0/1.1
        rc, out = s_client(t, lb.port, proto, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "a.test")
        sl = session_line(out)
        res[proto] = (rc == 0, sl[1] if sl and sl[0] == "New" else None)
        if rc != 0:
            check("alert protocol version" in out, "%s: no protocol_version alert: %r" % (proto, out[-400:]))
    eq(res, {"-tls1": (False, None), "-tls1_1": (False, None), "-tls1_2": (True, "TLSv1.2"),
             "-tls1_3": (True, "TLSv1.3")}, "handshakes by version: (ok, protocol)")
    eq(delta(counters(tls_stats(lb)), before), {"full": 2, "failed.protocol": 2}, "handshake counters")


def test_tls_min_version_13_refuses_12(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])], tls={"min_version": "1.3"})
    rc, out = s_client(t, lb.port, "-tls1_2", "-servername", "a.test")
    check(rc != 0 and session_line(out) is None, "TLS 1.2 accepted with min_version 1.3: %r" % out[-400:])
    rc, out = s_client(t, lb.port, "-tls1_3", "-servername", "a.test")
    eq((rc, session_line(out)[:2]), (0, ("New", "TLSv1.3")), "TLS 1.3 with min_version 1.3")
    eq(tls_stats(lb)["failed"]["protocol"], 1, "failed.protocol")


def test_tls_alpn_http11_selected_h2_refused(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])])
    before = counters(tls_stats(lb))
    rc, out = s_client(t, lb.port, "-alpn", "h2,http/1.1", "-servername", "a.test")
    eq(rc, 0, "s_client -alpn h2,http/1.1 (output %r)" % out[-400:])
    check("ALPN protocol: http/1.1" in out, "http/1.1 not selected: %r" % out[-600:])
    rc, out = s_client(t, lb.port, "-alpn", "h2", "-servername", "a.test")
    check(rc != 0 and "no application protocol" in out,
          "h2 alone: expected a no_application_protocol alert, got %r" % out[-400:])
    # curl offers h2 and http/1.1 with --http2: it gets http/1.1
    rc, out = curl(t, lb.port, "--http2", "--cacert", pki.ca_cert)
    eq((rc, out.splitlines()[-1]), (0, "200 0 1.1"), "curl --http2 (output %r)" % out)
    eq(delta(counters(tls_stats(lb)), before), {"full": 2, "failed.alpn": 1}, "handshake counters")


def _resume_10(t, port, proto, sess):
    rc, out = s_client(t, port, proto, "-servername", "a.test", "-sess_out", sess)
    eq((rc, (session_line(out) or ("?",))[0]), (0, "New"), "the first connection (output %r)" % out[-400:])
    check(os.path.getsize(sess) > 0, "s_client wrote no session")
    got = []
    for _ in range(10):
        rc, out = s_client(t, port, proto, "-servername", "a.test", "-sess_in", sess)
        eq(rc, 0, "s_client -sess_in (output %r)" % out[-400:])
        got.append((session_line(out) or ("?",))[0])
    return got.count("Reused")


def test_tls_resumption_two_workers_tickets_and_cache(t):
    """Tickets (TLS 1.3 and 1.2) and the session cache (TLS 1.2 without tickets)
    resume on either worker: 10 of 10."""
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    cert = pki.leaf("a.test", dns=["a.test"])
    lb, _ = tls_lb(t, [b1], [cert], workers=2)
    before = counters(tls_stats(lb))
    eq(_resume_10(t, lb.port, "-tls1_3", os.path.join(t.tmp, "s13")), 10, "TLS 1.3 tickets: reused of 10")
    eq(_resume_10(t, lb.port, "-tls1_2", os.path.join(t.tmp, "s12")), 10, "TLS 1.2 tickets: reused of 10")
    eq(delta(counters(tls_stats(lb)), before), {"full": 2, "resumed": 20}, "handshake counters")
    lb2, _ = tls_lb(t, [b1], [cert], workers=2, tls={"tickets": False})
    eq(_resume_10(t, lb2.port, "-tls1_2", os.path.join(t.tmp, "c12")), 10,
       "TLS 1.2 session cache, tickets off: reused of 10")


def test_tls_resumption_survives_reload(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, cfg = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])], workers=2)
    sess = {p: os.path.join(t.tmp, "sess" + p) for p in ("-tls1_3", "-tls1_2")}
    for p, path in sess.items():
        rc, out = s_client(t, lb.port, p, "-servername", "a.test", "-sess_out", path)
        eq((rc, session_line(out)[0]), (0, "New"), "first connection %s" % p)
    new = copy.deepcopy(cfg)
    new["pools"][0]["backends"][0]["weight"] = 50
    rewrite(lb, new)
    lb.signal(signal.SIGHUP)
    wait_reloads(t, lb, 1, 0)
    got = {}
    for p, path in sess.items():
        rs = []
        for _ in range(10):
            rc, out = s_client(t, lb.port, p, "-servername", "a.test", "-sess_in", path)
            rs.append((session_line(out) or ("?",))[0])
        got[p] = rs.count("Reused")
    eq(got, {"-tls1_3": 10, "-tls1_2": 10}, "sessions resumed of 10 after the reload")


def test_tls_stats_handshake_counters_exact(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])], timeouts={"client_header": "1s"})
    before = counters(tls_stats(lb))
    ctx = client_ctx(pki.ca_cert)
    for _ in range(2):  # 2 full
        c = TlsConn(t, lb.port, ctx, sni="a.test")
        eq(c.request("GET", "/", headers=[("Connection", "close")]).status, 200, "status")
        c.close()
    sess = os.path.join(t.tmp, "sess")
    s_client(t, lb.port, "-servername", "a.test", "-sess_out", sess)  # 1 full
    for _ in range(3):  # 3 resumed
        s_client(t, lb.port, "-servername", "a.test", "-sess_in", sess)
    s_client(t, lb.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", data=b"")  # protocol
    s_client(t, lb.port, "-alpn", "h2", data=b"")  # alpn
    eq(lb.get("/").status, 400, "plain HTTP")  # http
    c = HttpConn(t, lb.port)  # closed: half a ClientHello, then the client goes away
    c.send(client_hello()[:40])
    time.sleep(0.2)
    c.close()
    c = HttpConn(t, lb.port)  # timeout: nothing within client_header
    check(c.closed_within(3 * t.slow), "stalled handshake not closed")
    want = {"full": 3, "resumed": 3, "failed.protocol": 1, "failed.alpn": 1, "failed.http": 1,
            "failed.closed": 1, "failed.timeout": 1}
    last = [None]

    def settled():
        last[0] = delta(counters(tls_stats(lb)), before)
        return last[0] == want

    if not wait_until_or_false(settled, 2 * t.slow):
        eq(last[0], want, "handshake counters")
    st = tls_stats(lb)
    eq(sorted(st["failed"]), ["alpn", "certificate", "closed", "http", "other", "protocol", "timeout"],
       "failure reasons in /stats.json")
    m = lb.admin_get("/metrics").body.decode()
    for line in ('lb_listener_tls_handshakes_total{listener="web",result="resumed"} %d' % st["handshakes"]["resumed"],
                 'lb_listener_tls_handshakes_total{listener="web",result="failed",reason="alpn"} %d' % st["failed"]["alpn"]):
        check(line in m, "/metrics lacks %r" % line)


def test_tls_reload_swaps_certificate_keeps_open_connection(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    v1 = pki.leaf("a.test", dns=["a.test"], tag="v1")
    v2 = pki.leaf("a.test", dns=["a.test"], tag="v2")
    cert, key = os.path.join(t.tmp, "site.pem"), os.path.join(t.tmp, "site.key")
    copy_file(v1[0], cert)
    copy_file(v1[1], key)
    lb, cfg = tls_lb(t, [b1], [(cert, key)], timeouts={"client_idle": "30s"})
    ctx = client_ctx(pki.ca_cert)
    old = TlsConn(t, lb.port, ctx, sni="a.test")
    serial1 = old.peer()["serialNumber"]
    eq(old.request("GET", "/").status, 200, "first request on the keep-alive connection")
    copy_file(v2[0], cert)
    copy_file(v2[1], key)
    lb.signal(signal.SIGHUP)
    wait_reloads(t, lb, 1, 0)
    for i in range(3):
        r = old.request("GET", "/")
        eq((r.status, r.body), (200, b"b1\n"), "request %d on the connection opened before the reload" % (i + 2))
    new = TlsConn(t, lb.port, ctx, sni="a.test")
    serial2 = new.peer()["serialNumber"]
    check(serial1 != serial2, "a new connection still gets the old certificate (serial %s)" % serial1)
    eq(serial2, subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", v2[0]], stdout=subprocess.PIPE)
       .stdout.decode().strip().split("=")[1], "serial of the certificate served after the reload")
    eq(new.request("GET", "/", headers=[("Connection", "close")]).status, 200, "request on a new connection")


def test_tls_reload_mismatched_key_fails_and_keeps_old_certificate(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    v1 = pki.leaf("a.test", dns=["a.test"])
    cert, key = os.path.join(t.tmp, "site.pem"), os.path.join(t.tmp, "site.key")
    copy_file(v1[0], cert)
    copy_file(v1[1], key)
    lb, cfg = tls_lb(t, [b1], [(cert, key)])
    ctx = client_ctx(pki.ca_cert)
    c = TlsConn(t, lb.port, ctx, sni="a.test")
    serial = c.peer()["serialNumber"]
    copy_file(pki.key("other"), key)
    lb.signal(signal.SIGHUP)
    rl = wait_reloads(t, lb, 0, 1)
    err = rl.get("last_error", "")
    check(err.startswith(lb.conf_path + ":") and "key %s does not match certificate %s" % (key, cert) in err,
          "last_error should name the file, line, key and certificate: %r" % err)
    eq(c.request("GET", "/").status, 200, "the connection open before the failed reload")
    n = TlsConn(t, lb.port, ctx, sni="a.test")
    eq(n.peer()["serialNumber"], serial, "certificate served after the failed reload")
    eq(n.request("GET", "/", headers=[("Connection", "close")]).status, 200, "a new connection")


def _line_of(text, needle, nth=0):
    lines = [i + 1 for i, ln in enumerate(text.split("\n")) if needle in ln]
    check(len(lines) > nth, "no line with %r in the config" % needle)
    return lines[nth]


def test_tls_check_config_rejects_bad_certificates(t):
    pki = Pki(t.tmp)
    good = pki.leaf("a.test", dns=["a.test"])
    old = pki.leaf("old.test", dns=["old.test"], expired=True)
    other = pki.key("other")
    missing = os.path.join(t.tmp, "missing.pem")
    dirpath = os.path.join(t.tmp, "adir.pem")
    os.mkdir(dirpath)
    cases = [
        ("expired", [good, old], 1, "listeners.web.tls: certificate %s has expired" % old[0]),
        ("mismatch", [good, (good[0], other)], 1, "listeners.web.tls: key %s does not match certificate %s" % (other, good[0])),
        ("missing", [good, (missing, good[1])], 1, None),
        ("directory", [good, (dirpath, good[1])], 1, "listeners.web.tls: cannot read a certificate from %s" % dirpath),
    ]
    for name, certs, nth, msg in cases:
        # one certificate entry per line, so that each has a line of its own
        entries = ",\n".join('      { cert = "%s"; key = "%s"; }' % ck for ck in certs)
        cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}],
                       listener={"tls": Raw("{ certs = (\n%s\n    ); }" % entries)})
        text = config_text(cfg)
        path = os.path.join(t.tmp, name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        code, out = t.run_lb(["-t", "-c", name + ".conf"])
        eq(code, 1, "lb -t exit status, %s (output %r)" % (name, out))
        check("configuration OK" not in out, "%s reported OK" % name)
        errs = [ln for ln in out.splitlines() if ln.startswith(name + ".conf:")]
        eq(len(errs), 1, "%s: error lines %r" % (name, out))
        # the second certificate's entry in the certs list
        line = _line_of(text, "{ cert = ", nth)
        m = re.match(r"^%s\.conf:(\d+): (.*)$" % re.escape(name), errs[0])
        check(m and int(m.group(1)) == line, "%s: expected %s.conf:%d (the entry), got %r" % (name, name, line, errs[0]))
        if msg:
            check(msg in m.group(2), "%s: expected %r in %r" % (name, msg, errs[0]))
        else:
            check(missing in m.group(2), "%s: the message should name %s: %r" % (name, missing, errs[0]))
    # a pool's client certificate is checked the same way
    cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}],
                   pool={"tls": Raw('{ ca = "%s";\n      cert = "%s"; key = "%s"; }' % (pki.ca_cert, good[0], other))})
    text = config_text(cfg)
    with open(os.path.join(t.tmp, "pool.conf"), "w") as f:
        f.write(text)
    code, out = t.run_lb(["-t", "-c", "pool.conf"])
    eq(code, 1, "lb -t exit status, pool client key mismatch (output %r)" % out)
    want = "pool.conf:%d: pools.api.tls: key %s does not match certificate %s" % (_line_of(text, "tls = {"), other, good[0])
    check(out.startswith(want), "expected %r, got %r" % (want, out))
    # the good pair alone passes
    cfg = t.config(backends=[{"name": "b1", "address": "127.0.0.1:1"}],
                   listener={"tls": {"cert": good[0], "key": good[1]}})
    with open(os.path.join(t.tmp, "good.conf"), "w") as f:
        f.write(config_text(cfg))
    code, out = t.run_lb(["-t", "-c", "good.conf"])
    eq((code, "configuration OK" in out), (0, True), "lb -t on the good certificate (output %r)" % out)


def test_tls_stalled_handshake_closed_at_client_header(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])], timeouts={"client_header": "1s"})
    before = counters(tls_stats(lb))
    hello = client_hello()
    check(len(hello) > 100 and hello[0] == 0x16, "not a ClientHello: %r" % hello[:10])
    t0 = time.monotonic()
    silent = HttpConn(t, lb.port)
    half = HttpConn(t, lb.port)
    half.send(hello[:len(hello) // 2])
    took = []
    for c in (silent, half):
        check(c.closed_within(1.0 + 2.0 * t.slow), "a stalled handshake was not closed")
        took.append(time.monotonic() - t0)
    note(t, "stalled handshakes (silent, half a ClientHello) closed after %s s" % ", ".join("%.3f" % x for x in took))
    check(all(0.9 <= x <= 1.0 + 1.0 * t.slow for x in took),
          "stalled handshakes closed after %r s, expected about 1 s (client_header)" % took)
    eq(delta(counters(tls_stats(lb)), before), {"failed.timeout": 2}, "handshake counters")


def test_tls_plain_http_on_tls_port_gets_400(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"])])
    c = lb.conn()
    r = c.request("GET", "/echo")
    eq((r.status, r.body), (400, b"plain HTTP request sent to HTTPS port\n"), "answer to plain HTTP")
    check(c.closed_within(2 * t.slow), "connection not closed after the 400")
    eq(tls_stats(lb)["failed"]["http"], 1, "failed.http")


def test_tls_forwarded_proto_and_access_log(t):
    pki = Pki(t.tmp)
    b1 = t.backend("b1")
    logs = {fmt: os.path.join(t.tmp, "access-%s.log" % fmt) for fmt in ("text", "json")}
    for fmt, path in logs.items():
        lb, _ = tls_lb(t, [b1], [pki.leaf("a.test", dns=["a.test"], tag="a" + fmt)],
                       log={"access": path, "format": fmt})
        c = TlsConn(t, lb.port, client_ctx(pki.ca_cert), sni="a.test")
        r = c.request("GET", "/echo", headers=[("X-Forwarded-Proto", "http"), ("Connection", "close")])
        eq(r.status, 200, "status")
        hs = dict((n.lower(), v) for n, v in r.json()["headers"])
        eq(hs.get("x-forwarded-proto"), "https", "X-Forwarded-Proto at the backend (client sent http)")
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        line = wait_until(lambda: open(path).read().strip() if os.path.exists(path) else "", 3 * t.slow,
                          what="an access log line")
        eq(len(line.splitlines()), 1, "access log lines")
        if fmt == "text":
            check(line.endswith(" %s %s a.test" % (version, cipher)),
                  "text access line should end with version, cipher and SNI (%s %s a.test): %r" % (version, cipher, line))
        else:
            import json
            j = json.loads(line)
            eq((j.get("tls_version"), j.get("tls_cipher"), j.get("tls_sni")), (version, cipher, "a.test"),
               "TLS fields of the JSON access line")


# --------------------------------------------------------------------------
# TLS to backends


def tls_backend(t, pki, handler=None, cn="127.0.0.1", dns=(), ips=("127.0.0.1",), client_ca=None, name="tb"):
    cert, key = pki.leaf(cn, dns=dns, ips=ips, tag="be-" + name)
    s = TlsPyServer(t, handler or h_ok(b"tls-backend\n"), t.port(), cert, key, client_ca=client_ca, name=name)
    t._servers.append(s)
    return s


def plain_lb(t, backends, pool_tls, **kw):
    pool = {"tls": pool_tls}
    pool.update(kw.pop("pool", {}))
    cfg = t.config(backends=[{"name": b.name, "address": b.addr} for b in backends], pool=pool, **kw)
    return t.lb(cfg)


def test_tls_backend_verified_against_trusted_ca(t):
    pki = Pki(t.tmp)
    be = tls_backend(t, pki)
    lb = plain_lb(t, [be], {"ca": pki.ca_cert})
    r = lb.get("/")
    eq((r.status, r.body), (200, b"tls-backend\n"), "through a verified TLS backend")
    eq((be.handshakes, be.sni, be.failures), (1, [None], []), "backend: handshakes, SNI seen (none), failures")
    eq(lb.backend_stats("api", "tb")["failures_by_kind"]["connect"], 0, "connect failures")


def test_tls_backend_untrusted_fails_502(t):
    pki, other = Pki(t.tmp, "ca"), Pki(t.tmp, "other")
    be = tls_backend(t, other)
    lb = plain_lb(t, [be], {"ca": pki.ca_cert})
    r = lb.get("/")
    eq(r.status, 502, "status through an untrusted backend")
    st = lb.backend_stats("api", "tb")
    eq(st["failures_by_kind"]["connect"], 1, "failures_by_kind.connect")
    eq(be.handshakes, 0, "handshakes the backend completed")
    want = "TLS handshake failed: certificate verify failed: unable to get local issuer certificate"
    wait_until(lambda: want in lb.stderr_text(), 2 * t.slow, what="the log line %r" % want)
    line = [ln for ln in lb.stderr_text().splitlines() if want in ln][0]
    check("api/tb" in line or "tb" in line, "the log line should name the backend: %r" % line)


def test_tls_backend_sni_sent_and_checked(t):
    pki = Pki(t.tmp)
    be = tls_backend(t, pki, cn="api.internal", dns=("api.internal",), ips=())
    lb = plain_lb(t, [be], {"ca": pki.ca_cert, "sni": "api.internal"})
    eq(lb.get("/").status, 200, "status with sni = api.internal")
    eq(be.sni, ["api.internal"], "SNI the backend saw")
    # the name is checked too: the same certificate under another name fails
    lb2 = plain_lb(t, [be], {"ca": pki.ca_cert, "sni": "other.internal"})
    eq(lb2.get("/").status, 502, "status with sni = other.internal")
    want = "certificate verify failed"
    wait_until(lambda: want in lb2.stderr_text(), 2 * t.slow, what="a log line naming %r" % want)
    eq(be.sni, ["api.internal", "other.internal"], "SNI the backend saw")


def test_tls_backend_keepalive_reuse_and_resumption(t):
    pki = Pki(t.tmp)
    be = tls_backend(t, pki)
    lb = plain_lb(t, [be], {"ca": pki.ca_cert})
    for i in range(3):  # three clients in turn, 10 requests each
        c = lb.conn()
        for _ in range(10):
            eq(c.request("GET", "/").status, 200, "status")
        c.close()
    eq((be.accepted, be.handshakes, be.requests), (1, 1, 30), "backend: connections, handshakes, requests")
    # a backend that closes after each answer: every connection after the first resumes
    closer = tls_backend(t, pki, handler=http_handler(
        lambda req, c: (c.send(response_bytes(200, [("Connection", "close")], b"x")), None)[1]), name="tc")
    lb2 = plain_lb(t, [closer], {"ca": pki.ca_cert})
    for i in range(5):
        eq(lb2.get("/").status, 200, "status %d" % i)
    eq((closer.handshakes, closer.resumed), (5, 4), "closing backend: handshakes, resumed")


@timeout(40)
def test_tls_health_checks(t):
    pki, other = Pki(t.tmp, "ca"), Pki(t.tmp, "other")

    def healthz(req, c):
        return response_bytes(200, [], b"ok\n")

    good = tls_backend(t, pki, handler=http_handler(healthz), name="good")
    bad = tls_backend(t, other, handler=http_handler(healthz), name="bad")
    lb = plain_lb(t, [good, bad], {"ca": pki.ca_cert},
                  pool={"health": {"type": "http", "path": "/healthz", "interval": "200ms", "timeout": "1s",
                                   "rise": 1, "fall": 1, "jitter": 0.0}})

    def states():
        s = {b: lb.backend_stats("api", b) for b in ("good", "bad")}
        return {b: (v["health"], v["health_checks"]["last_failure"]) for b, v in s.items()}

    want = {"good": ("up", "none"), "bad": ("down", "tls error")}
    wait_until(lambda: states() == want, 5 * t.slow, what="good up, bad down with a TLS failure")
    check(good.handshakes >= 1 and good.requests >= 1, "good backend saw no TLS health check")
    check(bad.handshakes == 0 and bad.failures, "bad backend: handshakes %d, failures %r" % (bad.handshakes, bad.failures))
    for _ in range(4):
        r = lb.get("/healthz")
        eq(r.status, 200, "traffic goes to the good backend")


def test_tls_backend_client_certificate(t):
    pki = Pki(t.tmp)
    ccert, ckey = pki.leaf("lb-client", client=True, tag="client")
    be = tls_backend(t, pki, client_ca=pki.ca_cert)
    lb = plain_lb(t, [be], {"ca": pki.ca_cert, "cert": ccert, "key": ckey})
    r = lb.get("/")
    eq((r.status, r.body), (200, b"tls-backend\n"), "with a client certificate")
    eq(be.client_subjects, [{"commonName": "lb-client"}], "client certificate subjects the backend saw")
    lb2 = plain_lb(t, [be], {"ca": pki.ca_cert})
    eq(lb2.get("/").status, 502, "without a client certificate")
    eq(len(be.client_subjects), 1, "client certificates seen after the request without one")
