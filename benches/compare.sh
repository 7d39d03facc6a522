#!/usr/bin/env bash
# Starling side by side with nats-server and socket.io: the same scenarios,
# the same generator (loadgen), the same machine, in one run.
#
#   benches/compare.sh [LOADGEN FLAGS...]
#   RUNS=5 benches/compare.sh
#   SCENARIOS="fanout churn" TARGETS="starling nats" benches/compare.sh --duration 5
#   BENCH_STARLING_BIN=/path/to/starling benches/compare.sh     # do not build the server
#
# It installs the peers itself (nats-server from Debian's apt, socket.io from
# npm into benches/peers/socketio), builds loadgen (and starling) in release,
# then for every scenario and each of RUNS rounds (default 3) starts a fresh
# server per target — rounds interleave the targets, so slow drifts in the
# machine's load hit every server alike — runs loadgen against it with
# --server-pid, and stops it. At the end it prints, per scenario, the
# medians per server with the ratio Starling / peer for every number
# (`loadgen compare`), then the same as JSON. Reports, server logs and
# compare.json stay in the directory printed at the end.
#
# Scenarios and their flags (extra flags are passed to every run):
#   fanout      (a) 5,000 subscribers of one room, 1 publisher at 10/s
#   many-rooms  (b) 1,000 rooms of 10, one publisher each at 1/s
#   idle        (c) 15,000 idle subscribed connections (2 loadgen workers)
#   churn       (d) 50 loops of connect + subscribe + close
#
# Servers run with the settings their own documentation recommends for
# throughput (see benches/peers/nats/nats.conf and
# benches/peers/socketio/server.mjs); socket.io is single-threaded Node.js.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
runs=${RUNS:-3}
scenarios=${SCENARIOS:-"fanout many-rooms idle churn"}
targets=${TARGETS:-"starling nats socketio"}

raise_open_files

# --- the peers -------------------------------------------------------------
if [[ $targets == *nats* ]] && ! command -v nats-server >/dev/null; then
  apt-get update
  apt-get install -y nats-server
fi
if [[ $targets == *socketio* ]]; then
  (cd benches/peers/socketio && npm ci --no-audit --no-fund)
fi

# --- the generator and Starling -------------------------------------------
cargo build --release -p starling-bench
loadgen=$(release_dir)/loadgen
if [[ -n ${BENCH_STARLING_BIN:-} ]]; then
  starling=$BENCH_STARLING_BIN
else
  cargo build --release -p starling-server
  starling=$(release_dir)/starling
fi

out=$(mktemp -d -t starling-compare.XXXXXX)
trap stop_server EXIT

scenario_flags() {
  case $1 in
    fanout) echo "--scenario fanout" ;;
    many-rooms) echo "--scenario many-rooms" ;;
    idle) echo "--scenario idle --workers 2" ;;
    churn) echo "--scenario churn" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

# Starts $1 (a target) on port $2 for run directory $3; sets server_pid and url.
start_server() {
  local target=$1 port=$2 dir=$3
  mkdir -p "$dir"
  case $target in
    starling)
      "$starling" serve --config benches/starling-bench.toml \
        --http-addr "127.0.0.1:$port" --data-dir "$dir/data" --cluster-addr 127.0.0.1:0 \
        >"$dir/server.log" 2>&1 &
      url="ws://127.0.0.1:$port/connection/websocket"
      ;;
    nats)
      sed "s/@WS_PORT@/$port/" benches/peers/nats/nats.conf >"$dir/nats.conf"
      nats-server --config "$dir/nats.conf" >"$dir/server.log" 2>&1 &
      url="ws://127.0.0.1:$port/"
      ;;
    socketio)
      PORT=$port node benches/peers/socketio/server.mjs >"$dir/server.log" 2>&1 &
      url="ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket"
      ;;
    *) echo "unknown target $target" >&2; return 1 ;;
  esac
  server_pid=$!
  wait_for_port "$port" "$server_pid" || {
    echo "$target did not start; see $dir/server.log" >&2
    return 1
  }
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB, open files: $(ulimit -n)"
  echo "nats-server: $(nats-server --version 2>/dev/null || echo absent)"
  echo "node: $(node --version 2>/dev/null || echo absent), socket.io: $(node -p 'require("./benches/peers/socketio/node_modules/socket.io/package.json").version' 2>/dev/null || echo absent)"
  echo "runs: $runs, scenarios: $scenarios, targets: $targets, extra flags: $*"
} | tee "$out/meta.txt"

for scenario in $scenarios; do
  flags=$(scenario_flags "$scenario")
  for run in $(seq 1 "$runs"); do
    for target in $targets; do
      port=$(free_port "${PORT:-8000}")
      dir="$out/$scenario-$target-$run"
      start_server "$target" "$port" "$dir"
      echo "$scenario · $target · run $run: port $port, load average $(cut -d' ' -f1-3 /proc/loadavg)"
      # shellcheck disable=SC2086 # $flags is a list of flags
      if ! "$loadgen" --target "$target" --url "$url" $flags --server-pid "$server_pid" \
        --json "$@" >"$out/$scenario-$target-$run.json" 2>"$dir/loadgen.err"; then
        echo "  loadgen failed: $(tail -1 "$dir/loadgen.err")" >&2
        rm -f "$out/$scenario-$target-$run.json"
      fi
      stop_server
    done
  done
done

shopt -s nullglob
reports=("$out"/*-*-*.json)
if [[ ${#reports[@]} -eq 0 ]]; then
  echo "no reports; see $out" >&2
  exit 1
fi
"$loadgen" compare "${reports[@]}" | tee "$out/compare.txt"
"$loadgen" compare --json "${reports[@]}" >"$out/compare.json"
cat "$out/compare.json"
echo "reports, logs, compare.txt and compare.json: $out"
