"""deploy/kubernetes/: the manifests parse as YAML (Debian's python3-yaml), name only
fields that exist in the Kubernetes API (checked against python3-kubernetes' models by
k8s_schema.py under /usr/bin/python3), and agree with each other, with the image and
with lb: the ConfigMap's lb.conf passes `lb -t`, the probes and ports point where lb
listens, the grace period covers shutdown_grace and drain, the selectors select."""

import glob
import json
import os
import re
import subprocess

from harness import HERE, ROOT, check, eq, fail

K8S = os.path.join(ROOT, "deploy", "kubernetes")
DEBIAN_PY = "/usr/bin/python3"  # where apt's python3-yaml and python3-kubernetes live


def _load(t):
    if not os.path.exists(DEBIAN_PY):
        fail("%s not found: the manifest check needs Debian's python3 (make deps-test)" % DEBIAN_PY)
    files = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    check(files, "no manifests in %s" % K8S)
    p = subprocess.run([DEBIAN_PY, os.path.join(HERE, "k8s_schema.py")] + files, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60 * t.slow)
    eq(p.returncode, 0, "k8s_schema.py (stderr %r; python3-yaml and python3-kubernetes are in PKGS_TEST)"
       % p.stderr.decode()[-2000:])
    out = json.loads(p.stdout)
    return out["docs"], out["errors"]


def _one(docs, kind, name=None):
    found = [d["doc"] for d in docs if d["doc"].get("kind") == kind and (name is None or d["doc"]["metadata"]["name"] == name)]
    eq(len(found), 1, "%s %s manifests" % (kind, name or ""))
    return found[0]


def _duration_s(text, key):
    m = re.search(r'^\s*%s\s*=\s*"(\d+)(ms|s|m)";' % key, text, re.M)
    check(m is not None, "the ConfigMap's lb.conf sets no %s" % key)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_manifests_name_only_existing_fields(t):
    docs, errors = _load(t)
    eq(errors, [], "fields unknown to the Kubernetes API models, or of the wrong type")
    kinds = sorted((d["doc"]["kind"], d["doc"]["metadata"]["name"]) for d in docs)
    eq(kinds, [("ConfigMap", "lb-config"), ("Deployment", "lb"), ("PodDisruptionBudget", "lb"),
               ("Service", "api-backends"), ("Service", "lb")], "the objects in deploy/kubernetes")


def test_manifests_agree_with_lb_and_each_other(t):
    docs, errors = _load(t)
    eq(errors, [], "schema errors")
    dep = _one(docs, "Deployment")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(spec["replicas"] >= 2, "replicas %r: lb needs at least two" % spec["replicas"])
    check(_selects(spec["selector"]["matchLabels"], labels), "the Deployment's selector misses its pods")
    eq(len(pod["containers"]), 1, "containers in the lb pod")
    c = pod["containers"][0]
    eq(c["args"], ["-c", "/etc/lb/lb.conf"], "lb's arguments")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}

    # the configuration: a ConfigMap mounted as a directory at /etc/lb, checked by lb itself
    cm = _one(docs, "ConfigMap", "lb-config")
    text = cm["data"]["lb.conf"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    check("/etc/lb" in mounts and "subPath" not in mounts["/etc/lb"], "lb.conf is not mounted as the directory /etc/lb")
    eq(vols[mounts["/etc/lb"]["name"]]["configMap"]["name"], "lb-config", "the volume at /etc/lb")
    check(re.search(r"^\s*watch_config = true;", text, re.M), "lb.watch_config is not on: ConfigMap changes would need a restart")
    # the admin token: a Secret mounted where admin.token_file points
    m = re.search(r'^\s*token_file = "([^"]+)";', text, re.M)
    check(m is not None, "the ConfigMap's admin group reads no token_file")
    token_dir, token_name = os.path.split(m.group(1))
    check(token_dir in mounts, "nothing mounted at %s (admin.token_file)" % token_dir)
    secret_vol = vols[mounts[token_dir]["name"]]
    check("secret" in secret_vol, "the volume at %s is not a Secret" % token_dir)
    check(not re.search(r'^\s*token = ', text, re.M), "a literal admin.token in the ConfigMap")
    # lb -t on it, with a stand-in token where the Secret would be
    tok = os.path.join(t.tmp, token_name)
    with open(tok, "w") as f:
        f.write("a-test-token\n")
    conf = os.path.join(t.tmp, "lb.conf")
    with open(conf, "w") as f:
        f.write(text.replace(m.group(1), tok))
    code, out = t.run_lb(["-t", "-c", conf])
    eq((code, out.strip()), (0, "configuration OK"), "lb -t on the ConfigMap's lb.conf")
    # the ports lb listens on are the container's
    listen = re.search(r'listen = "0\.0\.0\.0:(\d+)"; pool', text)
    admin = re.search(r'^\s*listen = "0\.0\.0\.0:(\d+)";\s*$', text, re.M)
    check(listen and admin, "listener or admin address not found in the ConfigMap")
    eq((ports.get("http"), ports.get("admin")), (int(listen.group(1)), int(admin.group(1))), "container ports vs lb.conf")

    # readiness on /healthz, liveness apart from it (a draining lb is not restarted)
    rp, lp = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    eq((rp["path"], ports.get(rp["port"])), ("/healthz", ports["admin"]), "readiness probe")
    eq((lp["path"], ports.get(lp["port"])), ("/livez", ports["admin"]), "liveness probe")
    # the pod outlives lb's own grace and drain
    grace, drain = _duration_s(text, "shutdown_grace"), _duration_s(text, "drain")
    check(grace >= 2 * c["readinessProbe"]["periodSeconds"],
          "shutdown_grace %ss is shorter than two readiness periods" % grace)
    check(pod["terminationGracePeriodSeconds"] > grace + drain,
          "terminationGracePeriodSeconds %s <= shutdown_grace %s + drain %s" % (pod["terminationGracePeriodSeconds"], grace, drain))
    # resources: requested, with a memory limit; workers match the CPU request
    res = c["resources"]
    check("cpu" in res["requests"] and "memory" in res["requests"] and "memory" in res["limits"], "resources %r" % res)
    workers = int(re.search(r"^\s*workers = (\d+);", text, re.M).group(1))
    eq(workers, int(res["requests"]["cpu"]), "lb.workers vs the CPU request")
    # the image's user
    with open(os.path.join(ROOT, "deploy", "Containerfile")) as f:
        user = re.search(r"^USER (\d+):(\d+)$", f.read(), re.M)
    check(user is not None, "deploy/Containerfile has no numeric USER")
    sc = pod["securityContext"]
    eq((sc.get("runAsNonRoot"), sc.get("runAsUser")), (True, int(user.group(1))), "pod user vs the image's")

    # the budget and the services select the right pods
    pdb = _one(docs, "PodDisruptionBudget", "lb")
    check(_selects(pdb["spec"]["selector"]["matchLabels"], labels), "the PodDisruptionBudget misses lb's pods")
    check(pdb["spec"]["minAvailable"] < spec["replicas"], "minAvailable %r blocks every disruption" % pdb["spec"]["minAvailable"])
    svc = _one(docs, "Service", "lb")
    check(_selects(svc["spec"]["selector"], labels), "the Service lb misses lb's pods")
    eq([p["targetPort"] for p in svc["spec"]["ports"]], ["http"], "the Service exposes the proxy port only")
    head = _one(docs, "Service", "api-backends")
    eq(head["spec"].get("clusterIP"), "None", "the backends' Service is headless")
    check(not _selects(head["spec"]["selector"], labels), "the headless Service selects lb's own pods")
