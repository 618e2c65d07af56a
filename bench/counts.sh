#!/usr/bin/env bash
# Deterministic per-request costs of scenario 1 (issue #17), on one keep-alive connection:
#   - heap allocations per proxied GET: the gateway built with `--features dhat-heap` counts every
#     allocation; `kill -USR1` prints the totals; the difference over COUNT_REQUESTS (10,000)
#     requests, less what the signal itself costs, divided by the requests;
#   - system calls per request on the serving thread (strace -c on the runtime's thread) and on
#     all threads (strace -f -c), and futex calls per request: a futex call is a thread put to
#     sleep or woken, so ≈ 0 means no other thread is woken per request.
# Scenario 1's settings (JWT verified against a JWKS, cached; Redis rate limit; TRACE_SAMPLING=0.1;
# LOG_LEVEL=info with the access line on). Prints a markdown table (bench/out-counts/counts.md).
#
#   bench/counts.sh            about 4 minutes, most of it building
#   COUNT_GATEWAY=… COUNT_GATEWAY_DHAT=… bench/counts.sh    the same for another build's pair
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/out-counts"
N=${COUNT_REQUESTS:-10000}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

BIN="$ROOT/target/release"
if [ -n "${COUNT_GATEWAY:-}" ]; then
  # Another build's pair (e.g. an older commit's, for the before figures).
  cp "$COUNT_GATEWAY_DHAT" "$WORK/gateway-dhat"; GATEWAY="$COUNT_GATEWAY"
else
  echo "building the counting gateway, then the served one…" >&2
  cargo build --release --bin gateway --features dhat-heap -q
  cp target/release/gateway "$WORK/gateway-dhat"
  cargo build --release --bins --example otlp_sink -q
  GATEWAY="$BIN/gateway"
fi
start_backends "$BIN"

# N GETs, one at a time on one keep-alive connection; prints how many were not 200.
load() { # port, requests
  python3 - "$1" "$2" "$TOKEN" <<'PY'
import http.client, sys
port, n, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
bad = 0
for _ in range(n):
    c.request("GET", "/api/v1/reservations/r1", headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    r.read()
    bad += r.status != 200
print(bad)
PY
}

# --- allocations ---------------------------------------------------------------------------------
GP=$(free_port)
start_gateway "$WORK/gateway-dhat" "$GP" DHAT_FILE="$OUT/dhat-heap.json"
heap() { # prints the blocks of the newest `heap:` line after asking for one
  kill -USR1 "$GATEWAY_PID"; sleep 0.5
  grep '^heap:' "$OUT/gateway-$GP.err" | tail -1 | sed 's/.*blocks=\([0-9]*\).*/\1/'
}
[ "$(load "$GP" 1000)" = 0 ] || { echo "warm-up requests failed" >&2; exit 1; }
h0=$(heap); h1=$(heap)                 # what asking costs
bad=$(load "$GP" "$N")
h2=$(heap)
ALLOCS=$(python3 -c "print(f'{(($h2 - $h1) - ($h1 - $h0)) / $N:.1f}')")
echo "allocations per request: $ALLOCS (non-200: $bad)" >&2
kill "$GATEWAY_PID"
# The profile is written at exit; older builds (before the file was asked for) write none.
for _ in $(seq 1 600); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
if [ -s "$OUT/dhat-heap.json" ]; then
  python3 "$ROOT/bench/dhat_top.py" "$OUT/dhat-heap.json" "$((N + 1000))" 30 > "$OUT/alloc-sites.txt" || true
fi

# --- system calls --------------------------------------------------------------------------------
GP=$(free_port)
start_gateway "$GATEWAY" "$GP"
[ "$(load "$GP" 1000)" = 0 ] || { echo "warm-up requests failed" >&2; exit 1; }
syscalls() { # strace flags; prints "total futex" per request
  strace "$@" -c -o "$WORK/strace.txt" -p "$GATEWAY_PID" & local st=$!
  sleep 1
  load "$GP" "$N" >/dev/null
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  awk -v n="$N" '
    $NF == "total" { total = $4 }
    $NF == "futex" { futex = $4 }
    END { printf "%.2f %.3f\n", total / n, futex / n }' "$WORK/strace.txt"
  cp "$WORK/strace.txt" "$OUT/strace$*.txt"
}
read -r SERVING SERVING_FUTEX < <(syscalls)
read -r ALL ALL_FUTEX < <(syscalls -f)
echo "system calls per request: serving thread $SERVING, all threads $ALL; futex $ALL_FUTEX" >&2

{
  echo "| per proxied GET (scenario 1, $N requests, one connection) | count |"
  echo "| --- | ---: |"
  echo "| heap allocations (dhat) | $ALLOCS |"
  echo "| system calls, serving thread (strace -c) | $SERVING |"
  echo "| system calls, all threads (strace -f -c) | $ALL |"
  echo "| futex calls, all threads (a thread woken or put to sleep) | $ALL_FUTEX |"
} | tee "$OUT/counts.md"
