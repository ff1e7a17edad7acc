#!/usr/bin/env bash
# Offline checks of the deployment files (scripts/check_deploy.py says what each one checks):
# docker-compose.yml against the Compose Specification schema, both kustomize overlays rendered
# by `kubectl kustomize` and the Helm sidecar values against the Kubernetes API schemas.
#
#   scripts/check-deploy.sh
#
# Needs kubectl (kustomize built in; .ci/run installs Debian's kubernetes-client when none is
# there) and Python 3 with venv. The validators come from PyPI, pinned, into a venv under the
# target dir ($CARGO_TARGET_DIR/deploy-venv, else target/deploy-venv): Debian's Python is
# externally managed, so nothing is installed into it. About 50 s cold (the venv, from PyPI), under 10 s warm, on 2 shared cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

CHECK_JSONSCHEMA=0.39.0    # ships the Compose Specification schema (vendor.compose-spec)
KUBERNETES_VALIDATE=1.37.0 # ships the Kubernetes API schemas, 1.25 to 1.37
# The oldest Kubernetes still supported upstream as these manifests were written, and the newest
# the validator knows.
K8S_VERSIONS=(1.32.0 1.37.0)

kubectl="${KUBECTL:-kubectl}"
if ! command -v "$kubectl" >/dev/null 2>&1; then
  echo "check-deploy: $kubectl not found (Debian: apt-get install kubernetes-client)" >&2
  exit 1
fi

venv="${CARGO_TARGET_DIR:-$repo/target}/deploy-venv"
want="check-jsonschema==$CHECK_JSONSCHEMA kubernetes-validate==$KUBERNETES_VALIDATE"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # $want is two requirement words
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$venv/.installed"
fi

"$venv/bin/python" scripts/check_deploy.py "${CARGO_TARGET_DIR:-$repo/target}/tmp/deploy-check" \
  "$kubectl" "${K8S_VERSIONS[@]}"
