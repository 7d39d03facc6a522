#!/usr/bin/env bash
# Runs one loadgen scenario against a fresh release-built Starling node, RUNS
# times (default 3), and prints the medians.
#
#   benches/run.sh [SCENARIO] [LOADGEN FLAGS...]
#   benches/run.sh fanout --subscribers 2000 --rate 20
#   RUNS=5 PORT=8100 benches/run.sh idle --connections 5000 --workers 2
#
# SCENARIO is fanout (default), many-rooms, idle or churn. Every run starts a
# new `starling serve` with benches/starling-bench.toml, so memory figures
# start from the same baseline. Reports (JSON) and server logs stay in the
# directory printed at the end. benches/compare.sh runs the same scenarios
# against nats-server and socket.io too.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
scenario=${1:-fanout}
[[ $# -gt 0 ]] && shift
runs=${RUNS:-3}

raise_open_files
cargo build --release -p starling-server -p starling-bench
starling=$(release_dir)/starling
loadgen=$(release_dir)/loadgen

port=$(free_port "${PORT:-8000}")
url="ws://127.0.0.1:$port/connection/websocket"

out=$(mktemp -d -t starling-bench.XXXXXX)
trap stop_server EXIT

echo "scenario $scenario, $runs runs, server on 127.0.0.1:$port, output in $out"
echo "machine: $(nproc) CPUs, $(uname -sr)"
for run in $(seq 1 "$runs"); do
  "$starling" serve --config benches/starling-bench.toml \
    --http-addr "127.0.0.1:$port" --data-dir "$out/data-$run" --cluster-addr 127.0.0.1:0 \
    >"$out/server-$run.log" 2>&1 &
  server_pid=$!
  wait_for_port "$port" "$server_pid" || { echo "starling did not start; see $out/server-$run.log" >&2; exit 1; }
  echo "run $run: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$loadgen" --url "$url" --scenario "$scenario" --server-pid "$server_pid" --json "$@" \
    >"$out/run-$run.json"
  stop_server
done

"$loadgen" median "$out"/run-*.json
echo "reports: $out"
