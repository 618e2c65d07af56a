# Shared by the benchmark scripts (run.sh, ab.sh, counts.sh): ports, processes, the fixed
# upstream, redis, a JWKS file server with a signed RS256 token, and the gateway's settings for
# scenario 1. Source it after setting OUT (results) and WORK (a scratch directory), with
# SERVER_CPU set; `cleanup` stops everything started here.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# CPU time (user + system) of a process so far, in clock ticks, from /proc.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS_PER_SEC=$(getconf CLK_TCK)

# Starts the fixed upstream on $UP and redis-server on $RP (both on $SERVER_CPU), a JWKS server
# on $JP, and a collector for the sampled spans (examples/otlp_sink, on $SERVER_CPU; sets OTLP);
# sets TOKEN to a bearer token it verifies. $1: the directory of mock-upstream and examples/.
# BENCH_COLLECTOR=closed points the gateways at a closed port instead (a collector outage: each
# batch is then tried twice, cloned and encoded each time).
start_backends() {
  local bin=$1
  UP=$(free_port); RP=$(free_port); JP=$(free_port)
  if [ "${BENCH_COLLECTOR:-sink}" = closed ]; then
    OTLP="http://127.0.0.1:9"
  else
    local op; op=$(free_port)
    taskset -c "$SERVER_CPU" "$bin/examples/otlp_sink" "127.0.0.1:$op" >"$OUT/otlp-sink.out" & PIDS+=($!)
    wait_port "$op"
    OTLP="http://127.0.0.1:$op"
  fi
  # Started directly (not through a function) so that $! is the server itself and cleanup kills it.
  taskset -c "$SERVER_CPU" "$bin/mock-upstream" --role fixed --port "$UP" >/dev/null & PIDS+=($!)
  taskset -c "$SERVER_CPU" redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
  REDIS_PID=$!
  wait_port "$UP"; wait_port "$RP"

  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null
  mkdir -p "$WORK/jwks"
  local mod
  mod=$(openssl rsa -in "$WORK/key.pem" -noout -modulus 2>/dev/null | cut -d= -f2)
  python3 - "$mod" > "$WORK/jwks/jwks.json" <<'PY'
import base64, json, sys
n = base64.urlsafe_b64encode(bytes.fromhex(sys.argv[1])).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]}))
PY
  (cd "$WORK/jwks" && exec python3 -m http.server "$JP" --bind 127.0.0.1 >/dev/null 2>&1) & PIDS+=($!)
  wait_port "$JP"
  b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  local now header claims sig
  now=$(date +%s)
  header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  claims=$(printf '{"sub":"bench-user","iss":"bench-issuer","aud":"gateway","iat":%d,"exp":%d}' "$now" $((now + 7200)) | b64url)
  sig=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$WORK/key.pem" -binary | b64url)
  TOKEN="$header.$claims.$sig"
}

# Starts a gateway binary with scenario 1's settings on port $2 and waits until it is ready;
# sets GATEWAY_PID. $1: the binary; then extra VAR=value settings.
start_gateway() {
  local bin=$1 port=$2; shift 2
  env -i PATH="$PATH" PORT="$port" REDIS_ADDR="127.0.0.1:$RP" \
    UPSTREAM_RESERVATION_BASE="http://127.0.0.1:$UP" UPSTREAM_PAYMENT_BASE="http://127.0.0.1:$UP" \
    UPSTREAM_RESERVATION_MAX_CONCURRENCY=4096 \
    JWT_ISSUER=bench-issuer JWT_AUDIENCE=gateway JWT_JWKS_URL="http://127.0.0.1:$JP/jwks.json" \
    TRACE_SAMPLING=0.1 OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP" LOG_LEVEL=info \
    RATE_LIMIT_RPS=10000000 RATE_LIMIT_BURST=10000000 QUEUE_ADMISSION_RPS=100 \
    QUEUE_HEARTBEAT_TTL_SECONDS=3600 MAX_IN_FLIGHT=100000 "$@" \
    taskset -c "$SERVER_CPU" "$bin" >/dev/null 2>"$OUT/gateway-$port.err" &
  PIDS+=($!)
  GATEWAY_PID=$!
  wait_port "$port"
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "gateway on $port never became ready" >&2; cat "$OUT/gateway-$port.err" >&2; exit 1
}

# nginx as a plain proxy_pass with upstream keep-alive on port $1 (worker on $SERVER_CPU), its
# access log on; sets NG_WORKER to the worker's pid.
start_nginx() {
  local port=$1
  cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/nginx-access.log;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location /api/v1/reservations/ { proxy_pass http://up/v1/reservations/; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /api/v1/reservations/create { proxy_pass http://up/v1/reservations; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  taskset -c "$SERVER_CPU" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
  wait_port "$port"
  NG_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
}

# The idempotent POST of scenario 3: a fresh Idempotency-Key per request.
write_post_lua() {
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"event_id":"bench","seats":1}'
wrk.headers["Content-Type"] = "application/json"
local n = 0
-- Seeded per run (BENCH_SALT from the script): two runs in one second must not share keys.
math.randomseed(os.time() + tonumber(os.getenv("BENCH_SALT") or "0"))
local salt = math.random(0, 0xfffff)
request = function()
  n = n + 1
  local key = string.format("%08x-%04x-4%03x-a%03x-%012x", n, math.random(0, 0xffff), salt % 0x1000, math.random(0, 0xfff), math.random(0, 0xffffffff))
  wrk.headers["Idempotency-Key"] = key
  return wrk.format()
end
LUA
}
