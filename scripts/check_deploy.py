"""Offline checks of the deployment files, run by scripts/check-deploy.sh inside its venv.

  python scripts/check_deploy.py OUT_DIR KUBECTL K8S_VERSION...

1. docker-compose.yml, interpolated with .env.example as Compose does it, against the Compose
   Specification JSON schema that check-jsonschema ships (vendor.compose-spec).
2. Each kustomize overlay rendered with `KUBECTL kustomize`, every object validated by
   kubernetes-validate (strict: unknown fields fail) against each Kubernetes version given.
3. deploy/helm/atlantis-values-sidecar.yaml: its extraContainers and extraVolumes, placed in a
   Pod next to a stand-in for the chart's Atlantis container as the chart's statefulset places
   them, and each of its extraManifests, validated the same way.

A warning from the validator (an object with no schema: a misspelt apiVersion or kind) fails like
an error. Custom resources are named and left to tests/it/deploy.rs, which checks them against
the Services they select. Exit status 1 on the first failing step, with its output.
"""

import json
import os
import re
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERLAYS = ["standalone", "sidecar", "servicemonitor"]
# Kinds kubernetes-validate has no schema for (custom resources): checked by tests/it/deploy.rs.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class Failed(Exception):
    pass


def env_file(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise Failed(f"{path}: not KEY=value: {line}")
            env[key.strip()] = value.strip()
    return env


def interpolate(text, env, where):
    """Compose's interpolation of one string: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d},
    ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}."""

    def one(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        set_ = name in env
        value = env.get(name, "")
        if op is None:
            if not set_:
                raise Failed(f"{where}: ${{{name}}} is not set in .env.example")
            return value
        empty_counts = op.startswith(":")
        present = set_ and (value != "" or not empty_counts)
        kind = op[-1]
        if kind == "-":
            return value if present else interpolate(arg, env, where)
        if kind == "?":
            if not present:
                raise Failed(f"{where}: {name} is required: {arg}")
            return value
        return interpolate(arg, env, where) if present else ""

    return VAR.sub(one, text)


def interpolate_tree(node, env, where="docker-compose.yml"):
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, where)
    return node


def run(argv, what):
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise Failed(f"{what} failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    return p


def check_compose(out, bindir):
    with open(os.path.join(REPO, "docker-compose.yml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    resolved = interpolate_tree(doc, env_file(os.path.join(REPO, ".env.example")))
    path = os.path.join(out, "compose.interpolated.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(resolved, f, indent=1)
    p = run(
        [os.path.join(bindir, "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path],
        "check-jsonschema vendor.compose-spec on docker-compose.yml (with .env.example)",
    )
    print(p.stdout.strip())
    print(f"docker-compose.yml: {len(resolved.get('services', {}))} services, name: {resolved.get('name')!r}")


def validate(bindir, files, versions, what):
    for version in versions:
        p = subprocess.run(
            [os.path.join(bindir, "kubernetes-validate"), "--strict", "--quiet", "-k", version, *files],
            capture_output=True,
            text=True,
        )
        noise = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
        if p.returncode != 0 or noise:
            raise Failed(f"kubernetes-validate {what} against {version}:\n" + "\n".join(noise))


def split_custom(objects, name, out):
    """Writes the objects that have a schema to one file; returns it and the custom ones."""
    plain, custom = [], []
    for o in objects:
        if not isinstance(o, dict) or "kind" not in o or "apiVersion" not in o:
            raise Failed(f"{name}: not a Kubernetes object: {o!r}")
        (custom if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS else plain).append(o)
    path = os.path.join(out, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(plain, f, sort_keys=False)
    return path, plain, custom


def summary(name, plain, custom, versions):
    if plain:
        kinds = ", ".join(sorted({f"{o['kind']}/{o['metadata']['name']}" for o in plain}))
        print(f"{name}: {len(plain)} objects valid against Kubernetes {', '.join(versions)}: {kinds}")
    for o in custom:
        print(
            f"{name}: {o['kind']}/{o['metadata']['name']} is a custom resource without a bundled"
            " schema: checked by tests/it/deploy.rs (cargo test --test it deploy::)"
        )


def check_overlays(out, bindir, kubectl, versions):
    for overlay in OVERLAYS:
        p = run([kubectl, "kustomize", os.path.join(REPO, "deploy/kubernetes", overlay)], f"kubectl kustomize {overlay}")
        objects = [o for o in yaml.safe_load_all(p.stdout) if o is not None]
        if not objects:
            raise Failed(f"kubectl kustomize {overlay} rendered nothing")
        path, plain, custom = split_custom(objects, overlay, out)
        if plain:
            validate(bindir, [path], versions, overlay)
        summary(overlay, plain, custom, versions)


def check_helm_values(out, bindir, versions):
    rel = "deploy/helm/atlantis-values-sidecar.yaml"
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        values = yaml.safe_load(f)
    # The chart's statefulset appends extraContainers after its own container and extraVolumes
    # to its volumes; the stand-in container only gives the Pod its first entry.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "atlantis-0"},
        "spec": {
            "containers": [{"name": "atlantis", "image": "ghcr.io/runatlantis/atlantis:v0.47.1"}]
            + list(values.get("extraContainers") or []),
            "volumes": list(values.get("extraVolumes") or []),
        },
    }
    if len(pod["spec"]["containers"]) < 2:
        raise Failed(f"{rel}: no extraContainers")
    manifests = list(values.get("extraManifests") or [])
    path, plain, custom = split_custom([pod] + manifests, "helm-sidecar", out)
    validate(bindir, [path], versions, rel)
    summary(rel, plain, custom, versions)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    out, kubectl, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
    bindir = os.path.dirname(sys.executable)
    os.makedirs(out, exist_ok=True)
    steps = [
        ("compose file against the Compose Specification", lambda: check_compose(out, bindir)),
        ("kustomize overlays against the Kubernetes API schemas", lambda: check_overlays(out, bindir, kubectl, versions)),
        ("helm sidecar values against the Kubernetes API schemas", lambda: check_helm_values(out, bindir, versions)),
    ]
    for title, step in steps:
        print(f"-- {title}")
        try:
            step()
        except Failed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
