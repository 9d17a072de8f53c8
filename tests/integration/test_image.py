"""make image: the OCI image podman builds FROM scratch holds exactly the static lb,
the CA certificates and the passwd/group files, runs as a non-root numeric user, and
reads /etc/lb/lb.conf. Running a container needs a working runtime, which this kind
of machine may not have, so the image is checked from outside: podman image inspect,
podman export of a created (never started) container, and its lb run outside podman,
directly and in a chroot of the exported file system as uid 65532.

Skipped, with a message, where podman is not installed (make deps-image installs it)."""

import json
import os
import re
import shutil
import subprocess
import tarfile

from harness import ROOT, check, eq, make_env, skip, timeout

EXPECTED = {"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "usr/bin/lb"}
MAX_BYTES = 12 * 1024 * 1024


def _run(t, args, limit_s=60, **kw):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=limit_s * t.slow, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


@timeout(150)
def test_make_image_builds_a_minimal_image(t):
    if not shutil.which("podman"):
        skip("podman is not installed (apt-get install podman, or make deps-image)")
    image = "localhost/lb-itest-%d:test" % os.getpid()
    cid = None

    def cleanup():
        if cid:
            _run(t, ["podman", "rm", "-f", cid])
        _run(t, ["podman", "rmi", "-f", image])

    t.on_cleanup(cleanup)
    code, out, err = _run(t, ["make", "--no-print-directory", "image", "IMAGE=" + image], limit_s=120, cwd=ROOT,
                          env=make_env())
    eq(code, 0, "make image status (stdout %r, stderr %r)" % (out[-2000:], err[-2000:]))
    check(("built %s" % image) in out, "make image did not report the image: %r" % out[-500:])

    code, out, err = _run(t, ["podman", "image", "inspect", image])
    eq(code, 0, "podman image inspect (stderr %r)" % err)
    info = json.loads(out)[0]
    cfg = info["Config"]
    eq(cfg.get("User"), "65532:65532", "the image's user")
    eq(cfg.get("Entrypoint"), ["/usr/bin/lb"], "entrypoint")
    eq(cfg.get("Cmd"), ["-c", "/etc/lb/lb.conf"], "command: the mounted configuration")
    check("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg.get("Env", []), "env %r" % cfg.get("Env"))
    ver = _run(t, [t.lb_bin, "--version"])[1].strip().split()[-1]
    eq(cfg.get("Labels", {}).get("org.opencontainers.image.version"), ver, "version label")
    check(info["Size"] < MAX_BYTES, "image is %d bytes, more than %d" % (info["Size"], MAX_BYTES))
    eq(len(info["RootFS"]["Layers"]), 3, "layers (passwd+group, certificates, lb)")

    code, out, err = _run(t, ["podman", "create", image])
    eq(code, 0, "podman create (stderr %r)" % err)
    cid = out.strip()
    tar_path = os.path.join(t.tmp, "rootfs.tar")
    code, out, err = _run(t, ["podman", "export", "-o", tar_path, cid])
    eq(code, 0, "podman export (stderr %r)" % err)
    root = os.path.join(t.tmp, "rootfs")
    with tarfile.open(tar_path) as tf:
        members = tf.getmembers()
        files = {m.name.lstrip("./") for m in members if not m.isdir()}
        eq(files, EXPECTED, "files in the image")
        tf.extractall(root)
    lb = os.path.join(root, "usr/bin/lb")
    check(os.stat(lb).st_mode & 0o111, "usr/bin/lb is not executable")
    with open(os.path.join(root, "etc/passwd")) as f:
        eq(f.read(), "lb:x:65532:65532:lb:/nonexistent:/sbin/nologin\n", "the image's /etc/passwd")

    # the binary, outside podman: static, the same version
    code, out, err = _run(t, [lb, "--version"])
    eq((code, out.strip()), (0, "lb " + ver), "the image's lb --version")
    code, out, err = _run(t, [lb, "-V"])
    check(re.search(r"^linked:\s+static$", out, re.M), "the image's lb is not static: %r" % out)
    code, out, err = _run(t, ["file", "-b", lb]) if shutil.which("file") else (0, "statically linked", "")
    check("statically linked" in out or "static-pie" in out, "file(1) on the image's lb: %r" % out)

    # in a chroot of the image's files, as its user, with a configuration at the mounted path
    if os.geteuid() == 0:
        os.makedirs(os.path.join(root, "etc/lb"))
        with open(os.path.join(root, "etc/lb/lb.conf"), "w") as f:
            f.write('listeners = ( { name = "web"; listen = "0.0.0.0:8080"; pool = "api"; } );\n'
                    'pools = ( { name = "api"; backends = ( { name = "b1"; address = "[::1]:9001"; } ); } );\n')
        code, out, err = _run(t, ["chroot", "--userspec=65532:65532", root, "/usr/bin/lb", "-t"])
        eq((code, out.strip(), err), (0, "configuration OK", ""), "lb -t inside the image's file system as uid 65532")
