#!/usr/bin/env bash
# The gateway measured against the direct upstream and nginx, in one run (issue #11).
#
#   bench/run.sh            full run (about 8 minutes on a 2-core machine)
#   BENCH_DURATION=5 BENCH_ROUNDS=2 BENCH_QUEUE_SIZE=100000 bench/run.sh   a quicker look
#
# Starts on loopback: a fixed-response upstream (`mock-upstream --role fixed`), redis-server, a JWKS
# file server, the gateway (release build) twice — A with the Redis rate limit, B with rate
# limiting off — nginx as a plain proxy_pass with upstream keep-alive, and the stack's floor
# (examples/passthrough.rs: axum + reqwest, and axum + hyper's client, with no policy at all). Loads them in turn,
# interleaved (direct, nginx, A, B, direct, …) so machine drift cancels, and prints a markdown
# table (also written to bench/out/results.md). Stops everything it started.
#
# Pinning (2 cores): the load generator runs on CPU 1; every server (upstream, proxy under test,
# redis) on CPU 0. Each proxy thus gets one core shared with its upstream, the same for all.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/out"
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
QUEUE_SIZE=${BENCH_QUEUE_SIZE:-1000000}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d)

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v redis-server >/dev/null || need+=(redis-server redis-tools)
command -v hey >/dev/null || need+=(hey)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; SERVER_CPU=0; }

PROFILE=${BENCH_PROFILE:-release}   # `debug` only to smoke-test this script
echo "building $PROFILE binaries…" >&2
if [ "$PROFILE" = release ]; then cargo build --release --bins --example passthrough --example otlp_sink -q; else cargo build --bins --example passthrough --example otlp_sink -q; fi
BIN="$ROOT/target/$PROFILE"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
on_load() { taskset -c "$LOAD_CPU" "$@"; }

# --- upstream, redis, JWKS, the gateway twice ------------------------------------------------------
start_backends "$BIN"
GA=$(free_port); GB=$(free_port); NG=$(free_port); FR=$(free_port); FH=$(free_port)
start_gateway "$BIN/gateway" "$GA"; GA_PID=$GATEWAY_PID
start_gateway "$BIN/gateway" "$GB" RATE_LIMIT_ENABLED=false

# --- the floor: axum + one pooled client, no policy (examples/passthrough.rs) --------------------
taskset -c "$SERVER_CPU" "$BIN/examples/passthrough" reqwest "127.0.0.1:$FR" "http://127.0.0.1:$UP" >/dev/null & PIDS+=($!)
taskset -c "$SERVER_CPU" "$BIN/examples/passthrough" hyper "127.0.0.1:$FH" "http://127.0.0.1:$UP" >/dev/null & PIDS+=($!)
wait_port "$FR"; wait_port "$FH"

# --- nginx ---------------------------------------------------------------------------------------
start_nginx "$NG"

# --- load ----------------------------------------------------------------------------------------
write_post_lua "$WORK/post.lua"

run_wrk() { # name, url, extra args...
  local name=$1 url=$2; shift 2
  BENCH_SALT=$RANDOM$RANDOM on_load wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" >> "$OUT/$name.txt" 2>&1 || true
  echo "----" >> "$OUT/$name.txt"
}
AUTH=(-H "Authorization: Bearer $TOKEN")
G=/api/v1/reservations/r1
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS: GET" >&2
  run_wrk get-direct "http://127.0.0.1:$UP/v1/reservations/r1"
  run_wrk get-nginx "http://127.0.0.1:$NG$G"
  run_wrk get-gateway-rl "http://127.0.0.1:$GA$G" "${AUTH[@]}"
  run_wrk get-gateway-norl "http://127.0.0.1:$GB$G" "${AUTH[@]}"
  run_wrk get-floor-reqwest "http://127.0.0.1:$FR/v1/reservations/r1"
  run_wrk get-floor-hyper "http://127.0.0.1:$FH/v1/reservations/r1"
  echo "round $round/$ROUNDS: POST" >&2
  run_wrk post-direct "http://127.0.0.1:$UP/v1/reservations" -s "$WORK/post.lua"
  run_wrk post-nginx "http://127.0.0.1:$NG/api/v1/reservations/create" -s "$WORK/post.lua"
  run_wrk post-gateway-idem "http://127.0.0.1:$GA/api/v1/reservations/create" -s "$WORK/post.lua" "${AUTH[@]}"
done
grep VmHWM "/proc/$GA_PID/status" | awk '{print $2}' > "$OUT/gateway-peak-rss-kb.txt"

# --- scenario 5: fixed rate, added latency -------------------------------------------------------
MAXRPS=$(python3 "$ROOT/bench/report.py" --max-rps "$OUT/get-gateway-rl.txt")
RATE=$((MAXRPS / 2)); [ "$RATE" -ge 100 ] || RATE=100
WORKERS=50; PER=$((RATE / WORKERS)); [ "$PER" -ge 1 ] || PER=1
echo "fixed rate: $((PER * WORKERS)) req/s" >&2
echo "$((PER * WORKERS))" > "$OUT/fixed-rate.txt"
# Paced: wrk connections that each wait 2 ms after every answer, so arrivals are spread out and
# p50/p99 are the service latency. Connections = rate × ~2.5 ms (achieved rates are reported).
PACED_CONNS=$(( (RATE * 25 + 9999) / 10000 )); [ "$PACED_CONNS" -ge 1 ] || PACED_CONNS=1
printf 'delay = function() return 2 end\n' > "$WORK/paced.lua"
for round in 1 2; do
  on_load wrk -t1 -c"$PACED_CONNS" -d"${DURATION}s" --latency -s "$WORK/paced.lua" "http://127.0.0.1:$UP/v1/reservations/r1" >> "$OUT/paced-direct.txt" 2>&1 || true
  echo "----" >> "$OUT/paced-direct.txt"
  on_load wrk -t1 -c"$PACED_CONNS" -d"${DURATION}s" --latency -s "$WORK/paced.lua" "${AUTH[@]}" "http://127.0.0.1:$GA$G" >> "$OUT/paced-gateway.txt" 2>&1 || true
  echo "----" >> "$OUT/paced-gateway.txt"
done
# Bursty: hey's 50 workers tick in step, so requests arrive in bursts of ~50 and the last of a
# burst waits for the 49 before it — reported too, because an on-sale is bursty.
on_load hey -z "${DURATION}s" -c "$WORKERS" -q "$PER" "http://127.0.0.1:$UP/v1/reservations/r1" >> "$OUT/fixed-direct.txt" 2>&1 || true
on_load hey -z "${DURATION}s" -c "$WORKERS" -q "$PER" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GA$G" >> "$OUT/fixed-gateway.txt" 2>&1 || true

# --- scenario 4: the waiting room at scale -------------------------------------------------------
cat > "$WORK/join.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local limit = $QUEUE_SIZE
local f = io.open("$WORK/tokens.txt", "a")
-- Every fill round is a new wrk process: seed per run, or the rounds replay the same user ids
-- (joining again as the same user returns the same place).
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
local run = math.random(0, 1000000000)
request = function()
  n = n + 1
  wrk.body = string.format('{"event_id":"onsale","user_id":"u%d-%d"}', run, n)
  return wrk.format()
end
response = function(status, headers, body)
  if status == 202 and math.random(1, 50) == 1 then
    local t = body:match('"waiting_token"%s*:%s*"([^"]+)"')
    if t then f:write(t, "\n") f:flush() end
  end
end
LUA
cat > "$WORK/status.lua" <<LUA
local tokens = {}
for line in io.lines("$WORK/tokens.txt") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/v1/queue/status?token=" .. tokens[math.random(1, #tokens)])
end
LUA
MEM0=$(redis-cli -p "$RP" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
echo "filling the waiting room to $QUEUE_SIZE…" >&2
joined=0
prev=-1
fill_until=$(( $(date +%s) + ${BENCH_QUEUE_FILL_SECONDS:-150} ))   # bounded: stop filling after this
while [ "$joined" -lt "$QUEUE_SIZE" ] && [ "$joined" -gt "$prev" ] && [ "$(date +%s)" -lt "$fill_until" ]; do
  prev=$joined
  on_load wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/join.lua" "http://127.0.0.1:$GB/api/v1/queue/join" >> "$OUT/queue-join.txt" 2>&1 || true
  echo "----" >> "$OUT/queue-join.txt"
  joined=$(curl -s "http://127.0.0.1:$GB/api/v1/queue/join" -H 'Content-Type: application/json' -d '{"event_id":"onsale","user_id":"probe-'"$RANDOM$RANDOM"'"}' | python3 -c 'import json,sys; print(json.load(sys.stdin).get("position_hint", 0))' 2>/dev/null || echo "$QUEUE_SIZE")
  echo "  waiting: $joined" >&2
done
echo "$joined" > "$OUT/queue-size.txt"
MEM1=$(redis-cli -p "$RP" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
[ "$joined" -gt 0 ] && echo $(( (MEM1 - MEM0) / joined )) > "$OUT/queue-bytes-per-person.txt"
for round in $(seq 1 "$ROUNDS"); do
  run_wrk queue-status "http://127.0.0.1:$GB/api/v1/queue/status" -s "$WORK/status.lua"
done
# The same at a fixed rate below saturation (half the saturated rate), so p99 is the call's own
# latency rather than queueing: each of 16 connections waits 16/rate s between requests.
SAT=$(python3 "$ROOT/bench/report.py" --max-rps "$OUT/queue-status.txt")
QRATE=$((SAT / 2)); [ "$QRATE" -ge 100 ] || QRATE=100
echo "$QRATE" > "$OUT/queue-status-fixed-rate.txt"
sed "s/^request = function()/delay = function() return $((16000 / QRATE)) end\nrequest = function()/" "$WORK/status.lua" > "$WORK/status-fixed.lua"
for round in $(seq 1 "$ROUNDS"); do
  on_load wrk -t1 -c16 -d"${DURATION}s" --latency -s "$WORK/status-fixed.lua" "http://127.0.0.1:$GB/api/v1/queue/status" >> "$OUT/queue-status-fixed.txt" 2>&1 || true
  echo "----" >> "$OUT/queue-status-fixed.txt"
done

python3 "$ROOT/bench/report.py" "$OUT" | tee "$OUT/results.md"
