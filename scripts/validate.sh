#!/usr/bin/env bash
# Deployment validations (issue #9), run by scripts/test.sh. No Docker engine needed.
#  1. docker-compose.yml parses (`docker-compose config`, Debian's docker-compose package).
#  2. The Dockerfile's dependency layer: with only Cargo.toml, Cargo.lock and the stubs of
#     scripts/docker-stubs.sh, cargo accepts the manifest and lists the binaries to build.
#  3. The OpenAPI document, dumped from the code (`gateway --print-openapi`), is valid OpenAPI 3.1
#     (openapi-spec-validator).
#  4. The Kubernetes manifests are valid for Kubernetes 1.30 with unknown fields refused
#     (kubernetes-validate --strict: bundled schemas, no cluster).
#  5. scripts/validate_deploy.py cross-checks compose, collector, Prometheus, k8s and Dockerfile
#     against the code: env names, binaries, ports, probe paths, shutdown timing.
# Installs what is missing (as root on Debian): docker-compose and python3-venv from apt, the
# Python tools into a venv under ~/.cache (kept across clones).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "validate: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

venv="${XDG_CACHE_HOME:-$HOME/.cache}/gateway-api/validate-venv"
py_tools=(openapi-spec-validator==0.9.0 PyYAML==6.0.4 kubernetes-validate==1.37.0)
if ! "$venv/bin/python" -c 'import yaml, openapi_spec_validator, kubernetes_validate' >/dev/null 2>&1; then
  echo "validate: installing ${py_tools[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${py_tools[@]}"
fi

echo "validate: docker-compose config"
docker-compose -f docker-compose.yml config -q

echo "validate: Dockerfile dependency layer (stub sources)"
stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
cp Cargo.toml Cargo.lock "$stubs/"
(cd "$stubs" && sh "$OLDPWD/scripts/docker-stubs.sh")
# Asking for a binary that does not exist makes cargo load the manifest, resolve every target
# and list the binaries, without compiling anything.
listing="$(cd "$stubs" && cargo build --locked --bin __validate__ 2>&1 || true)"
if ! grep -q "no bin target named" <<<"$listing"; then
  echo "validate: cargo rejects the stubbed manifest the Dockerfile builds first:" >&2
  echo "$listing" >&2
  exit 1
fi
binaries="$(sed -n 's/^    \([A-Za-z0-9_-]*\)$/\1/p' <<<"$listing" | paste -sd, -)"
echo "validate: binaries: $binaries"

echo "validate: OpenAPI document"
mkdir -p target
cargo run -q --bin gateway -- --print-openapi > target/openapi.json
"$venv/bin/openapi-spec-validator" target/openapi.json

echo "validate: Kubernetes manifests"
manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.30.0 "${manifests[@]}"

"$venv/bin/python" scripts/validate_deploy.py target/openapi.json "$binaries"
