#!/usr/bin/env bash
# Two gateway builds A/B, interleaved, with the floors and nginx in the same run (issue #17):
# requests/s, p50/p99 and CPU time per request of every server from /proc (user + system ticks
# over the run ÷ requests), and Redis CPU per request.
#
#   bench/ab.sh OLD_GATEWAY NEW_GATEWAY        (defaults: BENCH_ROUNDS=3 BENCH_DURATION=8)
#
# Pinned like run.sh: load on CPU 1; upstream, redis, every proxy on CPU 0. Needs the release
# binaries of mock-upstream, examples/passthrough and examples/otlp_sink in target/release (or
# BENCH_BIN). Rounds run every target in turn (direct, nginx, floors, A, B; then the POSTs;
# then the paced GETs), so drift hits all alike. Writes bench/out-ab/ab.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OLD=$1 NEW=$2
OUT="$ROOT/bench/out-ab"
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
BIN=${BENCH_BIN:-$ROOT/target/release}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
on_load() { taskset -c "$LOAD_CPU" "$@"; }

start_backends "$BIN"
GA=$(free_port); start_gateway "$OLD" "$GA"; A_PID=$GATEWAY_PID
GB=$(free_port); start_gateway "$NEW" "$GB"; B_PID=$GATEWAY_PID
FR=$(free_port); FH=$(free_port); NG=$(free_port)
taskset -c "$SERVER_CPU" "$BIN/examples/passthrough" reqwest "127.0.0.1:$FR" "http://127.0.0.1:$UP" >/dev/null & PIDS+=($!); FR_PID=$!
taskset -c "$SERVER_CPU" "$BIN/examples/passthrough" hyper "127.0.0.1:$FH" "http://127.0.0.1:$UP" >/dev/null & PIDS+=($!); FH_PID=$!
wait_port "$FR"; wait_port "$FH"
start_nginx "$NG"
write_post_lua "$WORK/post.lua"
printf 'delay = function() return 2 end\n' > "$WORK/paced.lua"
AUTH=(-H "Authorization: Bearer $TOKEN")
G=/api/v1/reservations/r1

# One measured run: name, pid to charge, url, wrk args… → appends "name rps p50 p99 cpu_us redis_us non2xx".
measure() {
  local name=$1 pid=$2 url=$3; shift 3
  local c0 r0 c1 r1
  c0=$(cpu_ticks "$pid"); r0=$(cpu_ticks "$REDIS_PID")
  : > "$WORK/wrk.txt"
  BENCH_SALT=$RANDOM$RANDOM on_load wrk -t1 -d"${DURATION}s" --latency "$@" "$url" > "$WORK/wrk.txt" 2>&1 || true
  c1=$(cpu_ticks "$pid"); r1=$(cpu_ticks "$REDIS_PID")
  cp "$WORK/wrk.txt" "$OUT/$name.last.txt"
  python3 - "$name" "$((c1 - c0))" "$((r1 - r0))" "$TICKS_PER_SEC" "$WORK/wrk.txt" >> "$OUT/runs.txt" <<'PY'
import re, sys
name, cpu, redis, hz, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = open(path).read()
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
total = int(re.search(r"(\d+) requests in", t).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1)); p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
us = lambda ticks: ticks / hz * 1e6 / max(total, 1)
print(name, f"{rps:.0f}", f"{p50:.3f}", f"{p99:.3f}", f"{us(cpu):.1f}", f"{us(redis):.1f}", bad.group(1) if bad else 0)
PY
  tail -1 "$OUT/runs.txt" >&2
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  measure get-direct "$(pgrep -f "mock-upstream --role fixed --port $UP" | head -1)" "http://127.0.0.1:$UP/v1/reservations/r1" -c"$CONNS"
  measure get-nginx "$NG_WORKER" "http://127.0.0.1:$NG$G" -c"$CONNS"
  measure get-floor-reqwest "$FR_PID" "http://127.0.0.1:$FR/v1/reservations/r1" -c"$CONNS"
  measure get-floor-hyper "$FH_PID" "http://127.0.0.1:$FH/v1/reservations/r1" -c"$CONNS"
  measure get-A "$A_PID" "http://127.0.0.1:$GA$G" -c"$CONNS" "${AUTH[@]}"
  measure get-B "$B_PID" "http://127.0.0.1:$GB$G" -c"$CONNS" "${AUTH[@]}"
  measure post-nginx "$NG_WORKER" "http://127.0.0.1:$NG/api/v1/reservations/create" -c"$CONNS" -s "$WORK/post.lua"
  measure post-A "$A_PID" "http://127.0.0.1:$GA/api/v1/reservations/create" -c"$CONNS" -s "$WORK/post.lua" "${AUTH[@]}"
  measure post-B "$B_PID" "http://127.0.0.1:$GB/api/v1/reservations/create" -c"$CONNS" -s "$WORK/post.lua" "${AUTH[@]}"
done
# Paced at about half of B's GET rate: connections that wait 2 ms after every answer.
B_RPS=$(awk '$1 == "get-B" {print $2}' "$OUT/runs.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
PACED_CONNS=$(( (B_RPS / 2 * 25 + 9999) / 10000 )); [ "$PACED_CONNS" -ge 1 ] || PACED_CONNS=1
for round in $(seq 1 "$ROUNDS"); do
  measure paced-direct "$(pgrep -f "mock-upstream --role fixed --port $UP" | head -1)" "http://127.0.0.1:$UP/v1/reservations/r1" -c"$PACED_CONNS" -s "$WORK/paced.lua"
  measure paced-A "$A_PID" "http://127.0.0.1:$GA$G" -c"$PACED_CONNS" -s "$WORK/paced.lua" "${AUTH[@]}"
  measure paced-B "$B_PID" "http://127.0.0.1:$GB$G" -c"$PACED_CONNS" -s "$WORK/paced.lua" "${AUTH[@]}"
done
python3 - "$OUT/runs.txt" <<'PY' | tee "$OUT/ab.md"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, *v = line.split()
    runs.setdefault(name, []).append([float(x) for x in v])
med = {k: [statistics.median(r[i] for r in v) for i in range(6)] for k, v in runs.items()}
print("| target | rounds | req/s (median) | p50 ms | p99 ms | CPU µs/req | Redis µs/req | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for k, (rps, p50, p99, cpu, redis, bad) in med.items():
    each = " / ".join(f"{r[0]:.0f}" for r in runs[k])
    print(f"| {k} | {each} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {redis:.1f} | {bad:.0f} |")
def r(a, b, i=0): return med[a][i] / med[b][i]
print()
for g in "AB":
    print(f"- {g}: GET {r('get-'+g,'get-floor-reqwest'):.2f}× the reqwest floor's req/s, CPU {r('get-'+g,'get-floor-reqwest',3):.2f}× the floor's; "
          f"{r('get-'+g,'get-nginx'):.2f}× nginx; POST {r('post-'+g,'get-'+g):.2f}× its own GET, Redis {med['post-'+g][4]:.1f} µs/write; "
          f"paced p99 added {med['paced-'+g][2]-med['paced-direct'][2]:.2f} ms (p50 {med['paced-'+g][1]-med['paced-direct'][1]:.2f} ms)")
print(f"- B vs A: GET CPU/request {r('get-B','get-A',3):.2f}×, req/s {r('get-B','get-A'):.2f}×; POST CPU/request {r('post-B','post-A',3):.2f}×")
PY
