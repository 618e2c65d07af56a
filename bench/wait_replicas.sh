#!/usr/bin/env bash
# What REDIS_WAIT_REPLICAS costs (issue #15, SPEC §6): idempotent POSTs through the gateway on a
# 3-master + 3-replica Redis Cluster on loopback, with REDIS_WAIT_REPLICAS=0 and =1, interleaved.
#
#   bench/wait_replicas.sh        (BENCH_DURATION=8 BENCH_ROUNDS=3 BENCH_CONNS=32 by default)
#
# Prints, per setting and round: requests/s, p50/p99 latency, non-2xx answers, and the gateway's
# CPU per request (utime+stime from /proc). Needs a release build (it builds one), wrk, redis.
# Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-32}
WORK=$(mktemp -d)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cargo build --release --bins -q
BIN="$ROOT/target/release"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${REDIS_CLUSTER_DIR:-}" ] && scripts/cluster-up.sh down "$REDIS_CLUSTER_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_ready() {
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "gateway on $1 never became ready" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

eval "$(scripts/cluster-up.sh "$WORK/cluster")"
UP=$(free_port)
"$BIN/mock-upstream" --role fixed --port "$UP" >/dev/null & PIDS+=($!)

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
NOW=$(date +%s)
# JWT_SKIP_VERIFY: this measures the store, not signatures (claims are still checked).
HEADER=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
CLAIMS=$(printf '{"sub":"bench-user","iss":"bench","aud":"gateway","exp":%d}' $((NOW + 7200)) | b64url)
TOKEN="$HEADER.$CLAIMS.c2ln"

start_gateway() { # port wait_replicas
  env -i PATH="$PATH" PORT="$1" REDIS_ADDR="$REDIS_ADDR" REDIS_CLUSTER=true REDIS_WAIT_REPLICAS="$2" \
    UPSTREAM_RESERVATION_BASE="http://127.0.0.1:$UP" UPSTREAM_PAYMENT_BASE="http://127.0.0.1:$UP" \
    JWT_SKIP_VERIFY=true JWT_ISSUER=bench JWT_AUDIENCE=gateway \
    TRACE_SAMPLING=0 OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9" LOG_LEVEL=warn \
    RATE_LIMIT_ENABLED=false MAX_IN_FLIGHT=100000 \
    "$BIN/gateway" >/dev/null 2>"$WORK/gateway-$1.err" &
  PIDS+=($!)
  wait_ready "$1"
}
G0=$(free_port); G1=$(free_port)
start_gateway "$G0" 0; P0=${PIDS[-1]}
start_gateway "$G1" 1; P1=${PIDS[-1]}

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"event_id":"bench","seats":1}'
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())
local n = 0
request = function()
  n = n + 1
  wrk.headers["Idempotency-Key"] = string.format("%08x-%04x-4%03x-a%03x-%012x", n,
    math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff), math.random(0, 0xffffffff))
  return wrk.format()
end
LUA

HZ=$(getconf CLK_TCK)
printf '| REDIS_WAIT_REPLICAS | round | req/s | p50 | p99 | non-2xx | gateway CPU µs/req |\n|---|---|---|---|---|---|---|\n'
for round in $(seq 1 "$ROUNDS"); do
  for setting in 0 1; do
    if [ "$setting" = 0 ]; then port=$G0; pid=$P0; else port=$G1; pid=$P1; fi
    before=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
      -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/v1/payment/intent" 2>&1)
    after=$(cpu_ticks "$pid")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    cpu=$(awk -v t=$((after - before)) -v n="$total" -v hz="$HZ" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$setting" "$round" "$rps" "$p50" "$p99" "${bad:-0}" "$cpu"
  done
done
