#!/usr/bin/env bash
# The one test command (README "Testing"). Works on a fresh Debian machine as root: installs what
# is missing, then runs every test. The tests start their own redis-server processes on free
# loopback ports and tear them down.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The packaged server must not hold port 6379 for nothing; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi

cargo fmt --all -- --check
# Imports point down (STYLE.md, issue #16): no two files of src/ import each other in a cycle.
python3 scripts/import_cycles.py
cargo clippy --all-targets -- -D warnings
# The memory-churn test pushes 200,000 requests through a gateway process and measures its RSS:
# it runs alone, first, so it neither slows nor is disturbed by the rest (README "memory").
cargo test --test api --no-fail-fast -- --exact outages::a_churned_memory_store_returns_to_its_baseline --nocapture
cargo test --lib --bins --tests --examples --no-fail-fast -- --skip outages::a_churned_memory_store
# Criterion benches in test mode (each runs once; their CLI takes no libtest flags).
cargo test --benches --no-fail-fast
# Deployment files (Dockerfile, compose, collector, k8s, OpenAPI) against the code (issue #9).
./scripts/validate.sh
