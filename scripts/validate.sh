#!/usr/bin/env bash
# Deployment and operations validations (issues #9, #18), run by scripts/test.sh. No Docker
# engine needed.
#  1. docker-compose.yml parses (`docker-compose config`, Debian's docker-compose package).
#  2. The Dockerfile's dependency layer: `cargo chef prepare` (the same cargo-chef version the
#     Dockerfile installs) computes the recipe from this tree, `cargo chef cook --check` builds
#     the skeleton from the recipe alone, and the recipe names the binaries the image builds.
#  3. The OpenAPI document, dumped from the code (`gateway --print-openapi`), is valid OpenAPI 3.1
#     (openapi-spec-validator).
#  4. The Kubernetes manifests, as `kubectl apply -k` renders them (`kubectl kustomize`, base and
#     the monitoring overlay), are valid for Kubernetes 1.30 with unknown fields refused
#     (kubernetes-validate --strict: bundled schemas, no cluster; the Prometheus Operator's
#     ServiceMonitor and PrometheusRule are checked by scripts/alerts.py and step 6 instead).
#  5. scripts/validate_deploy.py cross-checks compose, collector, Prometheus, k8s and Dockerfile
#     against the code: env names, binaries and image stages, ports, probe paths, shutdown timing.
#  6. Alert rules: `promtool check rules`, `promtool test rules` (each alert fires on the series
#     of deploy/prometheus/alerts.test.yml meant to fire it, and only on those), `promtool check
#     config` of the compose Prometheus; the README's alert table and the PrometheusRule are the
#     ones generated from alerts.yml.
#  7. `cargo test --test ops`: /docs in a real headless Chromium, and every Grafana panel query
#     through a real Prometheus scraping a real gateway.
# Installs what is missing (as root on Debian): docker-compose, python3-venv, prometheus (with
# promtool) and chromium from apt, cargo-chef with cargo, the Python tools into a venv under
# ~/.cache (kept across clones). Needs kubectl ≥ 1.21 (for kustomize components).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "validate: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The packaged Prometheus must not hold port 9090 for nothing; the test starts its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi

venv="${XDG_CACHE_HOME:-$HOME/.cache}/gateway-api/validate-venv"
py_tools=(openapi-spec-validator==0.9.0 PyYAML==6.0.4 kubernetes-validate==1.37.0)
if ! "$venv/bin/python" -c 'import yaml, openapi_spec_validator, kubernetes_validate' >/dev/null 2>&1; then
  echo "validate: installing ${py_tools[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${py_tools[@]}"
fi
mkdir -p target

echo "validate: docker-compose config"
docker-compose -f docker-compose.yml config -q

echo "validate: Dockerfile dependency layer (cargo chef prepare)"
chef_version="$(sed -n 's/^ARG CARGO_CHEF_VERSION=//p' Dockerfile)"
if [ "$(cargo chef --version 2>/dev/null | awk '{print $2}')" != "$chef_version" ]; then
  echo "validate: installing cargo-chef $chef_version"
  cargo install -q cargo-chef --locked --version "$chef_version"
fi
cargo chef prepare --recipe-path target/recipe.json
# The Dockerfile's `cargo chef cook`, in check mode, on the recipe alone (a directory with nothing
# else, as in the builder stage): the skeleton it makes from the recipe must build.
cook="$(mktemp -d)"
trap 'rm -rf "$cook"' EXIT
cp target/recipe.json "$cook/"
(cd "$cook" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OLDPWD/target}" \
  cargo chef cook --check --locked --recipe-path recipe.json --bin gateway --bin mock-upstream 2>&1 | tail -1)
binaries="$(python3 -c '
import json
targets = json.load(open("target/recipe.json"))["skeleton"]["manifests"][0]["targets"]
print(",".join(sorted(t["name"] for t in targets if t["kind"] == "Bin")))')"
for bin in gateway mock-upstream; do
  grep -q "\--bin $bin" Dockerfile || { echo "validate: the Dockerfile does not build $bin" >&2; exit 1; }
done
echo "validate: binaries: $binaries"

echo "validate: OpenAPI document"
cargo run -q --bin gateway -- --print-openapi > target/openapi.json
"$venv/bin/openapi-spec-validator" target/openapi.json

echo "validate: Kubernetes manifests (kubectl kustomize)"
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "validate: needs kubectl >= 1.21 for \`kubectl kustomize\` (components); install it first" >&2
  exit 1
fi
kubectl kustomize deploy/k8s > target/k8s.yaml
kubectl kustomize deploy/k8s-with-monitoring > target/k8s-with-monitoring.yaml
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.30.0 target/k8s.yaml
"$venv/bin/python" - target/k8s-with-monitoring.yaml target/k8s.yaml <<'PY'
import sys, yaml
overlay = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
base = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
extra = sorted(d["kind"] for d in overlay if d not in base)
if extra != ["PrometheusRule", "ServiceMonitor"]:
    sys.exit(f"validate: the monitoring overlay should add a PrometheusRule and a ServiceMonitor, adds {extra}")
PY

"$venv/bin/python" scripts/validate_deploy.py target/openapi.json "$binaries" target/k8s.yaml

echo "validate: alert rules (promtool)"
promtool check rules deploy/prometheus/alerts.yml
"$venv/bin/python" scripts/alerts.py promtool-tests target/alerts.test.yml
promtool test rules target/alerts.test.yml
sed "s|/etc/prometheus/alerts.yml|$PWD/deploy/prometheus/alerts.yml|" deploy/prometheus/prometheus.yml \
  > target/prometheus.yml
promtool check config target/prometheus.yml
"$venv/bin/python" scripts/alerts.py readme
"$venv/bin/python" scripts/alerts.py k8s

echo "validate: /docs in Chromium, dashboard queries in Prometheus (cargo test --test ops)"
cargo test -q --test ops
