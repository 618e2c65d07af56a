#!/usr/bin/env bash
# A CPU profile of one gateway build under scenario 1 (issue #17): wrk -c64 GETs on CPU 1, the
# gateway, upstream and Redis on CPU 0 as in run.sh; `perf record --call-graph dwarf` on the
# gateway for PROFILE_SECONDS (default 5) in the middle of the load. Writes
# bench/out-profile/{perf.data,top.txt,groups.txt}: the hottest symbols (self time) and the self
# time grouped by where it is spent (crate of the symbol).
#
#   bench/profile.sh [GATEWAY]        (default target/release/gateway)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GW=${1:-$ROOT/target/release/gateway}
OUT="$ROOT/bench/out-profile"
SECS=${PROFILE_SECONDS:-5}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
BIN=${BENCH_BIN:-$ROOT/target/release}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

start_backends "$BIN"
GP=$(free_port); start_gateway "$GW" "$GP"
taskset -c "$LOAD_CPU" wrk -t1 -c64 -d$((SECS + 6))s -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$GP/api/v1/reservations/r1" > "$OUT/wrk.txt" 2>&1 &
WRK=$!
sleep 3
perf record -q -F 999 --call-graph dwarf,16384 -p "$GATEWAY_PID" -o "$OUT/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$WRK" || true
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none --percent-limit 0.7 2>/dev/null \
  | grep -v '^#' | grep -v '^$' > "$OUT/top.txt" || true
# Self time by crate: the first path segment of the demangled symbol (kernel and libc apart).
perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
  | python3 -c '
import re, sys, collections
g = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    if kind == "k":
        key = "kernel"
    elif "libc" in dso:
        key = "libc"
    else:
        s = re.sub(r"^<", "", sym)
        key = re.split(r"::|<| ", s)[0] or "?"
    g[key] += pct
for k, v in g.most_common(25):
    print(f"{v:6.2f}%  {k}")
' > "$OUT/groups.txt"
grep -E "Requests/sec" "$OUT/wrk.txt" || true
head -25 "$OUT/groups.txt"
