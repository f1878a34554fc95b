#!/usr/bin/env bash
# Times `topo validate` (release) on generated topologies: a 1,000-node full
# ZeroMQ mesh (999,000 links, ~6 MB), a 300-node mix of Redis patterns and
# relay chains, a valid 100,000-node file (Redis rooms) and a file with
# 200,000 errors, the last two in text and JSON. Prints wall time and peak
# RSS of each, best of 3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_topology.py mesh 1000 > "$work/mesh-1000.yaml"
python3 bench/gen_topology.py mixed 300 > "$work/mixed-300.yaml"
python3 bench/gen_topology.py rooms 100000 > "$work/rooms-100000.yaml"
python3 bench/gen_topology.py errors 200000 > "$work/errors-200000.yaml"
for run in mesh-1000:text mixed-300:text rooms-100000:text rooms-100000:json \
  errors-200000:text errors-200000:json; do
  file="$work/${run%:*}.yaml"
  format=${run#*:}
  best=""
  for _ in 1 2 3; do
    /usr/bin/time -o "$work/time" -f "%e %M" ./target/release/topo validate --format "$format" "$file" >/dev/null 2>&1 || true
    line=$(tail -1 "$work/time")
    if [ -z "$best" ] || [ "$(echo "$line" | cut -d' ' -f1 | tr -d .)" -lt "$(echo "$best" | cut -d' ' -f1 | tr -d .)" ]; then best=$line; fi
  done
  size=$(stat -c %s "$file")
  printf '%-16s %-4s %9d bytes  %6ss wall  %7d KiB peak RSS\n' "$(basename "$file" .yaml)" "$format" "$size" ${best% *} ${best#* }
done
