#!/usr/bin/env bash
# admin_overhead.sh — what the admin server's live view costs the data path.
# `topo up` (release) runs the 3-node ZeroMQ mesh; `topo bench` loads it with
# a closed loop (150 clients, 6 senders, window 16 — compare.sh's zmq
# scenario) in three set-ups, interleaved, ROUNDS times each:
#   no-admin  `topo up --no-admin`
#   sse       admin server on, one client reading /api/events (the poller
#             reads every node's /healthz 4 times per second)
#   page      admin server on, the live page open in headless Chromium
#             (dots moving; the browser's own CPU competes on the same cores)
# Prints the median delivered msgs/s of each and the cost against no-admin.
#
#   BENCH=/path/to/topo-with-bench bench/admin_overhead.sh
# BENCH: a topo binary with the `bench` command (default: target/release/topo).
# BASELINE: optionally a topo binary without the per-link counters (main
# before this change), run with --no-admin as a fourth set-up "baseline".
# ROUNDS (3), DURATION (5 s), HTTP_PORT (27080..), PUB_PORT (27190..), ADMIN_PORT (27070).
# NODES (3): more than 3 runs a ring of NODES nodes instead, each node
# subscribing to the one before and the one after it (the page's 30-node case).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cargo build --release --quiet
topo=${CARGO_TARGET_DIR:-$root/target}/release/topo
bench=${BENCH:-$topo}
rounds=${ROUNDS:-3}
dur=${DURATION:-5}
http=${HTTP_PORT:-27080}
pub=${PUB_PORT:-27190}
nodes=${NODES:-3}
admin=${ADMIN_PORT:-27070}
source "$root/bench/lib.sh"

if [ "$nodes" -le 3 ]; then
cat > "$work/zmq.yaml" <<EOF
name: zmq-3node
nodes:
  a: { http: $http, zmq: { pub: $pub, sub: [b, c] } }
  b: { http: $((http + 1)), zmq: { pub: $((pub + 1)), sub: [a, c] } }
  c: { http: $((http + 2)), zmq: { pub: $((pub + 2)), sub: [a, b] } }
EOF
else
  { echo "name: ring-$nodes"; echo "nodes:"
    for i in $(seq 0 $((nodes - 1))); do
      echo "  n$i: { http: $((http + i)), zmq: { pub: $((pub + i)), sub: [n$(((i + nodes - 1) % nodes)), n$(((i + 1) % nodes))] } }"
    done; } > "$work/zmq.yaml"
fi
# Holds the live page open until killed.
cat > "$work/page.mjs" <<'EOF'
import { chromium } from 'playwright-core';
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true, args: ['--no-sandbox', '--disable-gpu'] });
const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
await page.goto(process.argv[2]);
await page.waitForSelector('#conn[data-state="open"]');
await page.evaluate(() => {
  window.__frames = 0;
  const count = () => { window.__frames++; requestAnimationFrame(count); };
  requestAnimationFrame(count);
});
console.log('open');
process.on('SIGTERM', async () => { await browser.close(); process.exit(0); });
// Frames drawn and dots moving, each second: is the page still smooth?
setInterval(async () => {
  const s = await page.evaluate(() => { const f = window.__frames; window.__frames = 0;
    return { fps: f, dots: dots.length }; });
  console.log(`fps ${s.fps} dots ${s.dots}`);
}, 1000);
EOF
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund >&2)
cp "$work/page.mjs" tests/browser/.admin-overhead-page.mjs
modes=(no-admin sse page)
[ -n "${BASELINE:-}" ] && modes=(baseline "${modes[@]}")

run() { # mode -> delivered msgs/s
  local mode=$1 flags=(--admin "127.0.0.1:$admin") side="" exe=$topo
  [ "$mode" = no-admin ] && flags=(--no-admin)
  [ "$mode" = baseline ] && { flags=(--no-admin); exe=$BASELINE; }
  RUST_LOG=warn "$exe" up "$work/zmq.yaml" "${flags[@]}" > /dev/null 2>&1 &
  local up=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/healthz" > /dev/null && break; sleep 0.05; done
  case $mode in
    sse) curl -sN "http://127.0.0.1:$admin/api/events" > /dev/null & side=$! ;;
    page) node tests/browser/.admin-overhead-page.mjs "http://127.0.0.1:$admin/" > "$work/page.out" 2>&1 & side=$!
          for _ in $(seq 200); do grep -q open "$work/page.out" && break; sleep 0.05; done ;;
  esac
  "$bench" bench "$work/zmq.yaml" --clients 150 --senders 6 --window 16 \
    --duration "$dur" --warmup 1 --format json --label "$mode" --pid "$up" > "$work/$mode.json.tmp"
  tee -a "$work/all.jsonl" < "$work/$mode.json.tmp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivered_per_s"])'
  if [ "$mode" = page ]; then
    grep '^fps' "$work/page.out" | awk '{ if (NR == 1 || $2 < m) m = $2; if ($4 > d) d = $4 }
      END { printf "  page: lowest %d frames/s over %d s, up to %d dots at once\n", m, NR, d }' >&2
  fi
  [ -n "$side" ] && kill "$side" 2>/dev/null; wait "$side" 2>/dev/null || true
  kill -INT "$up"; wait "$up" 2>/dev/null || true
}

declare -A results
for r in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    v=$(run "$mode")
    results[$mode]+="$v "
    echo "round $r $mode: $v delivered/s" >&2
  done
done
rm -f tests/browser/.admin-overhead-page.mjs
args=()
for mode in "${modes[@]}"; do args+=("$mode=${results[$mode]}"); done
python3 - "${args[@]}" <<'EOF'
import statistics, sys
names = [a.split("=")[0] for a in sys.argv[1:]]
med = {a.split("=")[0]: statistics.median(float(x) for x in a.split("=")[1].split()) for a in sys.argv[1:]}
base = med["no-admin"]
print("| set-up | delivered msgs/s (median) | vs --no-admin |")
print("| --- | ---: | ---: |")
for n in names:
    print(f"| {n} | {med[n]:,.0f} | {100 * (med[n] - base) / base:+.1f}% |")
EOF
