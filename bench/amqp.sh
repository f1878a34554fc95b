#!/usr/bin/env bash
# amqp.sh — the 3-node fanout topology on RabbitMQ beside redis-3node (three
# nodes on one private redis-server), one after the other in one run, under
# the same open-loop ladder from `topo bench` (release build): 150 clients,
# 6 senders, every message to all 150 clients. For each, the highest rate
# whose p99 stays within 50 ms is the figure; every point is printed and
# appended to bench/results/amqp.jsonl.
#
#   bench/amqp.sh                # about three minutes
# AMQP_URL (default the local amqp://guest:guest@127.0.0.1:5672/%2f, where
# the run declares the fanout exchange `topo-bench`), HTTP_PORT
# (8280..8282), REDIS_PORT (6392). SKIP_BUILD=1: use the release build as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/bench/results
mkdir -p "$out"
http=${HTTP_PORT:-8280}
redis_port=${REDIS_PORT:-6392}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
dur=${DURATION:-3}
# Messages per second from all senders; deliveries are 150 times that.
ladder=${LADDER:-1000 2000 4000 8000}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
topo=$root/target/release/topo
source "$root/bench/lib.sh"

exchange=topo-bench
{
  echo "name: amqp-3node"
  echo "brokers:"
  echo "  rabbit: { url: \"$amqp_url\" }"
  echo "nodes:"
  for n in 0 1 2; do
    echo "  n$n: { http: $((http + n)), amqp: { broker: rabbit, exchange: $exchange } }"
  done
} > "$work/amqp.yaml"
redis_3node "$http" "$redis_port" > "$work/redis.yaml"

echo "load before: $(uptime)" >&2
start_redis "$redis_port"
for which in amqp redis; do
  file=$work/$which.yaml
  RUST_LOG=warn "$topo" up --no-admin "$file" >/dev/null 2>&1 &
  server=$!
  pids+=("$server")
  wait_healthy 3 "$http"
  for rate in $ladder; do
    report=$("$topo" bench "$file" --clients 150 --senders 6 --rate "$rate" --warmup 1 \
      --duration "$dur" --drain 3 --pid "$server" --label "$which-3node" --format json)
    echo "$report" >> "$out/amqp.jsonl"
    echo "$report" | jq -r '"  \(.label) \(.load.rate) msg/s: \(.delivered_per_s | floor) deliveries/s, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, lost \(.lost), dup \(.duplicates)"' >&2
    if [ "$(echo "$report" | jq '.latency.p99_ms > 50')" = true ]; then break; fi
  done
  kill "$server"; wait "$server" 2>/dev/null || true
done
echo "load after: $(uptime)" >&2
