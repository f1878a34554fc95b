# Sourced by the bench scripts: a scratch directory and the background
# processes they start, both cleaned up however the script exits, and the
# pieces every comparison needs.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}

# wait_healthy COUNT FIRST_PORT: until COUNT nodes on consecutive HTTP
# ports from FIRST_PORT answer /healthz (10 s at most each).
wait_healthy() {
  for n in $(seq 0 $(($1 - 1))); do
    for _ in $(seq 200); do
      curl -fs "http://127.0.0.1:$(($2 + n))/healthz" >/dev/null 2>&1 && break
      sleep 0.05
    done
  done
}

# start_redis PORT: a private redis-server without persistence, ready when
# this returns; its pid in $redis_pid (and in $pids, for the cleanup).
start_redis() {
  redis-server --port "$1" --save '' --appendonly no >/dev/null &
  redis_pid=$!
  pids+=("$redis_pid")
  wait_port "$1"
}

# redis_3node HTTP REDIS_PORT: the chapter's three servers on one Redis.
redis_3node() {
  echo "name: redis-3node"
  echo "brokers:"
  echo "  main: { url: \"redis://127.0.0.1:$2\" }"
  echo "nodes:"
  local n=0
  for c in a b c; do
    echo "  $c: { http: $(($1 + n)), redis: { broker: main } }"
    n=$((n + 1))
  done
}

# zmq_3node HTTP PUB: the chapter's three servers in a ZeroMQ mesh.
zmq_3node() {
  echo "name: zmq-3node"
  echo "nodes:"
  echo "  a: { http: $1, zmq: { pub: $2, sub: [b, c] } }"
  echo "  b: { http: $(($1 + 1)), zmq: { pub: $(($2 + 1)), sub: [a, c] } }"
  echo "  c: { http: $(($1 + 2)), zmq: { pub: $(($2 + 2)), sub: [a, b] } }"
}
