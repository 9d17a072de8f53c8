"""
pki.py - certificates for the TLS tests, made at test time with the openssl
command (nothing is committed, nothing expires between runs).

    ca = Pki(t.tmp, "ca")                       # a test CA (ECDSA P-256)
    cert, key = ca.leaf("a.test", dns=["a.test"], ips=["127.0.0.1"])
    cert, key = ca.leaf("a.test", dns=["a.test"], kind="rsa")
    cert, key = ca.leaf("old.test", dns=["old.test"], expired=True)
    key2 = ca.key("other")                      # a key that matches no certificate

Every file lands in the test's own directory. Keys: ECDSA P-256 ("ec") or
RSA 2048 ("rsa"). An expired certificate is signed with `openssl ca`, which
can set both dates in the past (OpenSSL 3.0's req/x509 cannot).
"""

import os
import subprocess


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stdout.decode("utf-8", "replace")))
    return p.stdout.decode("utf-8", "replace")


class Pki:
    def __init__(self, tmp, name="ca"):
        self.dir = os.path.join(tmp, "pki-" + name)
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        self.name = name
        self.serial = 1
        self.ca_key = self.key(name + "-ca")
        self.ca_cert = self._path(name + "-ca.pem")
        openssl("req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca_cert, "-days", "30",
                "-subj", "/CN=lb test CA %s" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        open(os.path.join(self.dir, "db", "index.txt"), "w").close()
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = tca\n[tca]\ndatabase = db/index.txt\nnew_certs_dir = db\n"
                    "serial = db/serial\ndefault_md = sha256\npolicy = pol\nunique_subject = no\n"
                    "copy_extensions = copy\n[pol]\ncommonName = supplied\n")

    def _path(self, name):
        return os.path.join(self.dir, name)

    def key(self, name, kind="ec"):
        path = self._path(name + ".key")
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
        return path

    def leaf(self, cn, dns=(), ips=(), kind="ec", expired=False, tag=None, client=False):
        """A certificate for CN with subjectAltNames DNS and IPS, signed by this CA:
        (cert path, key path)."""
        base = tag or "%s-%s" % (cn.replace("*", "star"), kind)
        key = self.key(base, kind)
        csr = self._path(base + ".csr")
        cert = self._path(base + ".pem")
        args = ["req", "-new", "-key", key, "-out", csr, "-subj", "/CN=%s" % cn]
        sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join(sans)]
        args += ["-addext", "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        openssl(*args)
        self.serial += 1
        if expired:
            with open(os.path.join(self.dir, "db", "serial"), "w") as f:
                f.write("%02X\n" % self.serial)
            openssl("ca", "-batch", "-config", "ca.cnf", "-cert", self.ca_cert, "-keyfile", self.ca_key,
                    "-in", csr, "-out", cert, "-notext",
                    "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", cwd=self.dir)
        else:
            openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                    "-set_serial", str(self.serial), "-days", "30", "-copy_extensions", "copyall",
                    "-out", cert)
        return cert, key


def cert_info(pem_text):
    """Subject and subjectAltName lines of a PEM certificate, as `openssl x509` prints them."""
    p = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
                       input=pem_text.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    return p.stdout.decode("utf-8", "replace")
