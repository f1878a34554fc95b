#!/usr/bin/env bash
# nats-cluster.sh — throughput of six topo nodes on a 3-server NATS cluster
# beside redis-3node (three nodes on one private redis-server), in the same
# run, under the same load from `topo bench` (release build): closed loop
# (window 8 per sender), 150 clients, 6 senders, then an open-loop rate.
# Every node of the NATS topology subscribes `chat.>`, so each message is
# delivered to all 150 clients in both topologies.
# Appends one JSON object per run to bench/results/nats-cluster.jsonl.
#
#   bench/nats-cluster.sh          # about a minute (SKIP_BUILD=1: use the release build as it is)
# Ports: HTTP_PORT (8180..), REDIS_PORT (6391), NATS_BASE (14422..14424).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/results
mkdir -p "$out"
http=${HTTP_PORT:-8180}
redis_port=${REDIS_PORT:-6391}
nats_base=${NATS_BASE:-14422}
dur=${DURATION:-5}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
topo=$root/target/release/topo
source "$root/bench/lib.sh"

redis_3node "$http" "$redis_port" > "$work/redis.yaml"
{
  echo "name: nats-6node"
  echo "brokers:"
  echo "  cluster: { url: \"nats://127.0.0.1:$nats_base,nats://127.0.0.1:$((nats_base + 1)),nats://127.0.0.1:$((nats_base + 2))\" }"
  echo "nodes:"
  for n in 0 1 2 3 4 5; do
    echo "  n$n: { http: $((http + 10 + n)), nats: { broker: cluster, publish: chat.n$n, subscribe: [\"chat.>\"] } }"
  done
} > "$work/nats.yaml"

run() { # LABEL FILE LOAD...
  local label=$1 file=$2
  shift 2
  "$topo" bench "$file" --clients 150 --senders 6 --warmup 1 --duration "$dur" --drain 3 \
    --pid "$server" --label "$label" --format json "$@" | tee -a "$out/nats-cluster.jsonl" |
    jq -r '"  \(.label) \(.load.mode) \(.load.rate // .load.window // ""): \(.delivered_per_s | floor) deliveries/s, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, lost \(.lost), dup \(.duplicates)"' >&2 || true
}

echo "load before: $(uptime)" >&2
start_redis "$redis_port"
"$root/scripts/nats-cluster" start "$nats_base" >&2
trap '"$root/scripts/nats-cluster" stop "$nats_base" >/dev/null; cleanup' EXIT

for which in redis nats; do
  file=$work/$which.yaml
  RUST_LOG=warn "$topo" up "$file" >/dev/null 2>&1 &
  server=$!
  pids+=("$server")
  if [ "$which" = redis ]; then wait_healthy 3 "$http"; else wait_healthy 6 $((http + 10)); fi
  label=$([ "$which" = redis ] && echo redis-3node || echo nats-6node-3servers)
  run "$label" "$file" --window 8
  run "$label" "$file" --rate 2000
  kill "$server"; wait "$server" 2>/dev/null || true
done
echo "load after: $(uptime)" >&2
