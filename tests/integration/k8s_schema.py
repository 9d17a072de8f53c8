#!/usr/bin/python3
"""k8s_schema.py - read Kubernetes manifests with PyYAML and check every field name
against the API's own models (Debian's python3-yaml and python3-kubernetes, so this
runs under /usr/bin/python3 whatever interpreter runs the tests).

    /usr/bin/python3 tests/integration/k8s_schema.py FILE...

Prints one JSON object: {"docs": [{"file": F, "doc": {...}}...], "errors": ["F: path: why"...]}.
A field is known when the model class of its parent object (V1Deployment,
V1PodSpec, ...) maps a Python attribute to that JSON name; values are checked
against the model's type (str, int, bool, dict(str, T), list[T], object)."""

import json
import re
import sys

import yaml
from kubernetes.client import models

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def model_for(doc):
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    version = api.split("/")[-1]
    name = "%s%s" % (version.capitalize(), kind)
    return getattr(models, name, None)


def check(value, typ, path, errors):
    if typ == "object":  # IntOrString, quantities, raw extensions: anything scalar or mapping
        return
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            errors.append("%s: expected a list, got %r" % (path, value))
            return
        for i, v in enumerate(value):
            check(v, m.group(1), "%s[%d]" % (path, i), errors)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if m:
        if not isinstance(value, dict):
            errors.append("%s: expected a mapping, got %r" % (path, value))
            return
        for k, v in value.items():
            check(v, m.group(1), "%s.%s" % (path, k), errors)
        return
    if typ in PRIMITIVES:
        if isinstance(value, bool) and typ != "bool":
            errors.append("%s: expected %s, got %r" % (path, typ, value))
        elif not isinstance(value, PRIMITIVES[typ]):
            errors.append("%s: expected %s, got %r" % (path, typ, value))
        return
    cls = getattr(models, typ, None)
    if cls is None:
        errors.append("%s: no model %s to check against" % (path, typ))
        return
    if not isinstance(value, dict):
        errors.append("%s: expected an object (%s), got %r" % (path, typ, value))
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for k, v in value.items():
        if k not in by_json:
            errors.append("%s: %s has no field %r" % (path, typ, k))
            continue
        check(v, cls.openapi_types[by_json[k]], "%s.%s" % (path, k), errors)


def main(files):
    out = {"docs": [], "errors": []}
    for f in files:
        with open(f) as fh:
            try:
                docs = [d for d in yaml.safe_load_all(fh) if d is not None]
            except yaml.YAMLError as e:
                out["errors"].append("%s: not YAML: %s" % (f, e))
                continue
        for d in docs:
            out["docs"].append({"file": f, "doc": d})
            cls = model_for(d) if isinstance(d, dict) else None
            if cls is None:
                out["errors"].append("%s: no API model for apiVersion %r kind %r" % (f, d.get("apiVersion"), d.get("kind")))
                continue
            check(d, cls.__name__, "%s: %s" % (f, d.get("kind")), out["errors"])
    json.dump(out, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
