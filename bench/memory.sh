#!/usr/bin/env bash
# memory.sh — resident memory of idle `topo up` processes:
#   zmq-3node --no-admin, zmq-3node with the admin server, and an N-node
#   in-process ZeroMQ full mesh (N*(N-1) SUB connections; bench/gen_topology.py).
# Each is started, given SETTLE seconds once every node's HTTP port answers,
# and its VmRSS read from /proc/PID/status. Prints one line per set-up.
#
#   TOPO=/path/to/topo bench/memory.sh      # default: target/release/topo (built)
# MESH (60), SETTLE (3 s), BASE_PORT (21000, below the ephemeral range: zmq-3node
# on BASE.. and BASE+100.., the mesh on BASE+2000.. and BASE+3000..)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${TOPO:-}" ]; then
  cargo build --release --quiet
  TOPO=${CARGO_TARGET_DIR:-$root/target}/release/topo
fi
mesh=${MESH:-60}
settle=${SETTLE:-3}
base=${BASE_PORT:-21000}
source "$root/bench/lib.sh"

# zmq-3node on other ports (a running copy on 8080/5000 does not matter),
# and the mesh of bench/gen_topology.py moved the same way.
python3 - "$base" topologies/zmq-3node.yaml > "$work/zmq-3node.yaml" <<'PY'
import re, sys
base = int(sys.argv[1])
text = open(sys.argv[2]).read()
text = re.sub(r"http: 808(\d)", lambda m: f"http: {base + int(m[1])}", text)
print(re.sub(r"pub: 500(\d)", lambda m: f"pub: {base + 100 + int(m[1])}", text))
PY
python3 bench/gen_topology.py mesh "$mesh" | python3 -c '
import re, sys
base = int(sys.argv[1])
text = sys.stdin.read()
text = re.sub(r"http: 1(\d{4})", lambda m: f"http: {base + 2000 + int(m[1])}", text)
print(re.sub(r"pub: 2(\d{4})", lambda m: f"pub: {base + 3000 + int(m[1])}", text))
' "$base" > "$work/mesh.yaml"

# rss LABEL HTTP_PORT... -- ARGS: starts topo ARGS, waits for the ports, prints VmRSS.
rss() {
  local label=$1; shift
  local ports=()
  while [ "$1" != "--" ]; do ports+=("$1"); shift; done
  shift
  "$TOPO" "$@" >/dev/null 2>"$work/stderr" &
  local pid=$!
  pids+=("$pid")
  for p in "${ports[@]}"; do
    for _ in $(seq 1 200); do
      (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break
      sleep 0.05
    done
  done
  sleep "$settle"
  kill -0 "$pid" 2>/dev/null || { echo "$label: topo exited:"; tail -5 "$work/stderr"; return 1; }
  local kb threads
  kb=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
  threads=$(awk '/^Threads/ {print $2}' /proc/$pid/status)
  printf '%-28s %6.1f MiB  %s threads\n' "$label" "$(echo "$kb / 1024" | bc -l)" "$threads"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

rss "zmq-3node --no-admin" $base $((base + 1)) $((base + 2)) -- up --no-admin "$work/zmq-3node.yaml"
rss "zmq-3node (admin on)" $base $((base + 1)) $((base + 2)) -- up --admin 127.0.0.1:$((base + 999)) "$work/zmq-3node.yaml"
rss "mesh of $mesh (--no-admin)" $((base + 2000)) $((base + 2000 + mesh - 1)) -- up --no-admin "$work/mesh.yaml"
