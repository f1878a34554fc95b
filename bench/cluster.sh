#!/usr/bin/env bash
# cluster.sh — throughput of sharded pub/sub on a Redis Cluster beside the
# single-server Redis topologies, in one run, with the same generator
# (`topo bench`, release build, one thread), closed loop (window 8):
#   redis-3node    3 nodes on one private redis-server, 3 x 50 clients, 6 senders
#   redis-6node    6 nodes on one private redis-server, the cluster file's shape
#                  (a channel per node, all six subscribed), 6 x 50 clients, 12 senders
#   cluster-6node  topologies/redis-cluster.yaml's shape, sharded, on a private
#                  3-master + 3-replica cluster (scripts/redis-cluster), same load
# Each is run RUNS times (default 3) on fresh servers; every run is printed,
# as one JSON line each in bench/results/cluster.jsonl, with the load average.
#
#   bench/cluster.sh
# Ports: HTTP_PORT (8180..8185), REDIS_PORT (6391), CLUSTER_PORT (7200..7205).
# TOPO: a topo binary to use instead of building target/release/topo.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/results
mkdir -p "$out"
http=${HTTP_PORT:-8180}
redis_port=${REDIS_PORT:-6391}
cluster_port=${CLUSTER_PORT:-7200}
runs=${RUNS:-3}
if [ -z "${TOPO:-}" ]; then
  cargo build --release --quiet
  TOPO=$root/target/release/topo
fi
source "$root/bench/lib.sh"

channels="chat.a, chat.b, chat.c, chat.d, chat.e, chat.f"
redis_3node "$http" "$redis_port" > "$work/redis-3node.yaml"
six() { # six FILE-NAME BROKER-URL SHARDED
  echo "name: $1"
  echo "brokers: { main: { url: \"$2\" } }"
  echo "nodes:"
  local n=0
  for c in a b c d e f; do
    echo "  $c: { http: $((http + n)), redis: { broker: main, sharded: $3, publish: chat.$c, subscribe: [$channels] } }"
    n=$((n + 1))
  done
}
six redis-6node "redis://127.0.0.1:$redis_port" false > "$work/redis-6node.yaml"
seeds="127.0.0.1:$cluster_port,127.0.0.1:$((cluster_port + 1)),127.0.0.1:$((cluster_port + 2))"
six cluster-6node "redis+cluster://$seeds" true > "$work/cluster-6node.yaml"

start_brokers() { # SCENARIO
  broker_pids=()
  if [ "$1" = cluster-6node ]; then
    : > "$work/cluster.log"
    setsid "$root/scripts/redis-cluster" "$cluster_port" > "$work/cluster.log" 2>&1 &
    broker_pids+=($!)
    until grep -q "Redis Cluster up" "$work/cluster.log"; do
      kill -0 "${broker_pids[0]}" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
      sleep 0.1
    done
  else
    start_redis "$redis_port"
    broker_pids+=("$redis_pid")
  fi
  pids+=("${broker_pids[@]}")
}

stop_brokers() {
  # The cluster script is its own process group: stop all six with it.
  for p in "${broker_pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  for p in "${broker_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

: > "$out/cluster.jsonl"
for run in $(seq "$runs"); do
  for scenario in redis-3node redis-6node cluster-6node; do
    clients=300; senders=12
    [ "$scenario" = redis-3node ] && { clients=150; senders=6; }
    start_brokers "$scenario"
    RUST_LOG=warn "$TOPO" up --no-admin "$work/$scenario.yaml" >/dev/null 2>&1 &
    topo_pid=$!; pids+=("$topo_pid")
    count=6; [ "$scenario" = redis-3node ] && count=3
    for n in $(seq 0 $((count - 1))); do wait_port $((http + n)); done
    sleep 1 # subscriptions settle
    "$TOPO" bench "$work/$scenario.yaml" --clients $clients --senders $senders --window 8 \
      --warmup 1 --duration 5 --drain 3 --pid "$topo_pid" --label "$scenario" --format json |
      jq -c --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson run "$run" '. + {run: $run, loadavg: $load}' |
      tee -a "$out/cluster.jsonl" |
      jq -r '"run \(.run) \(.label): \(.delivered_per_s | floor) deliveries/s, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, lost \(.lost), dup \(.duplicates), topo cpu \([.processes[].cpu // 0] | add * 100 | floor)%, load \(.loadavg)"' >&2 || true
    kill "$topo_pid"; wait "$topo_pid" 2>/dev/null || true
    stop_brokers
  done
done
