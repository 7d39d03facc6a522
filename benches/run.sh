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
# directory printed at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
scenario=${1:-fanout}
[[ $# -gt 0 ]] && shift
runs=${RUNS:-3}
port=${PORT:-8000}

# Tens of thousands of sockets need more descriptors than the usual 1024.
# Raise the soft limit as far as allowed (the server and every loadgen
# process inherit it); an unprivileged shell cannot go past the hard limit.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files limit: $(ulimit -n)"

cargo build --release -p starling-server -p starling-bench
starling=target/release/starling
loadgen=target/release/loadgen

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$port"; do
  port=$((port + 1))
done
url="ws://127.0.0.1:$port/connection/websocket"

out=$(mktemp -d -t starling-bench.XXXXXX)
server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

echo "scenario $scenario, $runs runs, server on 127.0.0.1:$port, output in $out"
echo "machine: $(nproc) CPUs, $(uname -sr)"
for run in $(seq 1 "$runs"); do
  "$starling" serve --config benches/starling-bench.toml \
    --http-addr "127.0.0.1:$port" --data-dir "$out/data-$run" \
    >"$out/server-$run.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    port_busy "$port" && break
    sleep 0.1
  done
  port_busy "$port" || { echo "starling did not start; see $out/server-$run.log" >&2; exit 1; }
  echo "run $run: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$loadgen" --url "$url" --scenario "$scenario" --server-pid "$server_pid" --json "$@" \
    >"$out/run-$run.json"
  stop_server
done

"$loadgen" median "$out"/run-*.json
echo "reports: $out"
