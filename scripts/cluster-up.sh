#!/usr/bin/env bash
# A throw-away Redis Cluster on loopback: 3 masters + 3 replicas, no persistence.
#
#   scripts/cluster-up.sh [dir]      start it (dir: created if missing; default a new temp dir)
#   scripts/cluster-up.sh down <dir> kill every node started in <dir> and remove <dir>
#
# On success it prints, and writes to <dir>/env, shell lines a caller can `eval` or `source`:
#   export REDIS_CLUSTER_DIR=/tmp/redis-cluster.XXXX
#   export REDIS_CLUSTER_NODES=127.0.0.1:p1,127.0.0.1:p2,...   (all six nodes)
#   export REDIS_ADDR=$REDIS_CLUSTER_NODES REDIS_CLUSTER=true    (ready for the gateway)
# Each node lives in <dir>/<port>/ (redis.pid, redis.log, nodes.conf); <dir>/ports lists the ports.
#
# Knobs (environment): CLUSTER_NODE_TIMEOUT (ms, default 2000: how fast a dead master is failed
# over), REDIS_PASSWORD (sets requirepass + masterauth on every node), REDIS_SERVER_BIN.
# Used by the cluster tests (tests/cluster/main.rs); works standalone too.
set -euo pipefail

NODES=6
REPLICAS=1
NODE_TIMEOUT="${CLUSTER_NODE_TIMEOUT:-2000}"
SERVER="${REDIS_SERVER_BIN:-redis-server}"

cli() { # cli <port> args...
  local port=$1
  shift
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$port" "$@"
  else
    redis-cli -h 127.0.0.1 -p "$port" "$@"
  fi
}

kill_nodes() { # kill_nodes <dir>
  local pidfile
  for pidfile in "$1"/*/redis.pid; do
    [ -f "$pidfile" ] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
}

port_free() { # both the client port and the cluster bus port (+10000)
  ! ss -Htan "( sport = :$1 or sport = :$(($1 + 10000)) )" 2>/dev/null | grep -q .
}

wait_for() { # wait_for <seconds> <what> cmd...
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster-up: timed out waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

node_up() {
  cli "$1" ping 2>/dev/null | grep -q PONG
}

all_ok() {
  local p
  for p in "${PORTS[@]}"; do
    cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

replicas_synced() {
  local p synced=0
  for p in "${PORTS[@]}"; do
    if cli "$p" info replication 2>/dev/null | grep -q '^master_link_status:up'; then
      synced=$((synced + 1))
    fi
  done
  [ "$synced" -ge $((NODES / (REPLICAS + 1) * REPLICAS)) ]
}

if [ "${1:-}" = "down" ]; then
  [ $# -eq 2 ] || { echo "usage: $0 down <dir>" >&2; exit 2; }
  [ -d "$2" ] || { echo "cluster-up: no such dir $2" >&2; exit 1; }
  kill_nodes "$2"
  rm -rf "$2"
  exit 0
fi

command -v "$SERVER" >/dev/null || { echo "cluster-up: $SERVER not found (apt-get install redis-server)" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "cluster-up: redis-cli not found (apt-get install redis-tools)" >&2; exit 1; }

DIR="${1:-$(mktemp -d "${TMPDIR:-/tmp}/redis-cluster.XXXXXX")}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

auth=()
create_auth=()
if [ -n "${REDIS_PASSWORD:-}" ]; then
  auth=(--requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD")
  create_auth=(-a "$REDIS_PASSWORD" --no-auth-warning)
fi

# One attempt on fresh ports; returns 0 once the cluster is up and its replicas in sync.
attempt() {
  # Ports below the kernel's ephemeral range (32768+), bus ports (+10000) included, so other
  # processes' outgoing connections never hold them; a random start so parallel runs rarely
  # collide, and a collision only costs a retry.
  PORTS=()
  local candidate=$((20000 + RANDOM % 2700)) p
  while [ ${#PORTS[@]} -lt $NODES ]; do
    candidate=$((candidate + 1))
    [ $candidate -lt 22760 ] || candidate=20000
    if port_free "$candidate"; then PORTS+=("$candidate"); fi
  done
  for p in "${PORTS[@]}"; do
    mkdir -p "$DIR/$p"
    "$SERVER" --port "$p" --bind 127.0.0.1 --protected-mode no \
      --cluster-enabled yes --cluster-config-file "$DIR/$p/nodes.conf" \
      --cluster-node-timeout "$NODE_TIMEOUT" --cluster-replica-validity-factor 0 \
      --save "" --appendonly no --dir "$DIR/$p" \
      --daemonize yes --pidfile "$DIR/$p/redis.pid" --logfile "$DIR/$p/redis.log" \
      "${auth[@]}" || return 1
  done
  for p in "${PORTS[@]}"; do
    wait_for 10 "node $p" node_up "$p" || return 1
  done
  ADDRS=()
  for p in "${PORTS[@]}"; do ADDRS+=("127.0.0.1:$p"); done
  redis-cli "${create_auth[@]}" --cluster create "${ADDRS[@]}" --cluster-replicas "$REPLICAS" \
    --cluster-yes >"$DIR/create.log" 2>&1 || { tail -n 5 "$DIR/create.log" >&2; return 1; }
  wait_for 30 "cluster_state:ok on every node" all_ok || return 1
  wait_for 30 "replicas in sync" replicas_synced || return 1
}

ok=""
for try in 1 2 3; do
  if attempt; then
    ok=1
    break
  fi
  echo "cluster-up: attempt $try failed" >&2
  grep -h -E 'Failed|Could not|error' "$DIR"/*/redis.log >&2 2>/dev/null || true
  kill_nodes "$DIR"
  sleep 0.3
  find "$DIR" -mindepth 1 -delete
done
if [ -z "$ok" ]; then
  rm -rf "$DIR"
  echo "cluster-up: giving up" >&2
  exit 1
fi

printf '%s\n' "${PORTS[@]}" >"$DIR/ports"
nodes=$(IFS=,; echo "${ADDRS[*]}")
cat >"$DIR/env" <<EOF
export REDIS_CLUSTER_DIR=$DIR
export REDIS_CLUSTER_NODES=$nodes
export REDIS_ADDR=$nodes
export REDIS_CLUSTER=true
EOF
cat "$DIR/env"
