#!/usr/bin/env bash
# Times `topo validate` (release) on generated topologies: a 1,000-node full
# ZeroMQ mesh (999,000 links, ~6 MB) and a 300-node mix of Redis patterns and
# relay chains. Prints wall time and peak RSS of each, best of 3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_topology.py mesh 1000 > "$work/mesh-1000.yaml"
python3 bench/gen_topology.py mixed 300 > "$work/mixed-300.yaml"
for file in "$work/mesh-1000.yaml" "$work/mixed-300.yaml"; do
  best=""
  for _ in 1 2 3; do
    /usr/bin/time -o "$work/time" -f "%e %M" ./target/release/topo validate "$file" >/dev/null 2>&1 || true
    line=$(tail -1 "$work/time")
    if [ -z "$best" ] || [ "$(echo "$line" | cut -d' ' -f1 | tr -d .)" -lt "$(echo "$best" | cut -d' ' -f1 | tr -d .)" ]; then best=$line; fi
  done
  size=$(stat -c %s "$file")
  printf '%-16s %9d bytes  %6ss wall  %7d KiB peak RSS\n' "$(basename "$file" .yaml)" "$size" ${best% *} ${best#* }
done
