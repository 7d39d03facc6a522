#!/usr/bin/env bash
# Runs one loadgen scenario against a fresh release-built Starling node, RUNS
# times (default 3), and prints the medians.
#
#   benches/run.sh [SCENARIO] [LOADGEN FLAGS...]
#   benches/run.sh fanout --subscribers 2000 --rate 20
#   RUNS=5 PORT=8100 benches/run.sh idle --connections 5000 --workers 2
#
#   benches/run.sh cluster-fanout                  # (e): 3 nodes, subscribers spread
#   CLUSTER=3 benches/run.sh many-rooms            # any scenario against a cluster
#   BENCH_STARLING_BIN=… BENCH_LOADGEN_BIN=… benches/run.sh …   # prebuilt, no cargo
#
# SCENARIO is fanout (default), many-rooms, idle or churn. Every run starts a
# new `starling serve` with benches/starling-bench.toml, so memory figures
# start from the same baseline. Reports (JSON) and server logs stay in the
# directory printed at the end. benches/compare.sh runs the same scenarios
# against nats-server and socket.io too.
#
# cluster-fanout is scenario (e): fanout against a fresh cluster of CLUSTER
# nodes (default 3) per run, all with benches/starling-bench.toml, the
# subscribers round-robin over the nodes and the publisher on node 1.
# CLUSTER=N (N ≥ 2) does the same for any scenario. Each run starts the nodes
# (node 1 initializes, the others join it; certificates from `starling certs`),
# waits until `starling cluster status --json` shows N alive members owning
# shards on every node, runs loadgen with every node's URL and pid, reads
# each node's /metrics, and stops the cluster.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
scenario=${1:-fanout}
[[ $# -gt 0 ]] && shift
runs=${RUNS:-3}
nodes=${CLUSTER:-1}
if [[ $scenario == cluster-fanout ]]; then
  scenario=fanout
  nodes=${CLUSTER:-3}
fi

# Scenario $scenario against a fresh cluster of $nodes nodes per run; the
# arguments go to loadgen. Prints the medians, and the cross-node copies per
# publication from the nodes' /metrics.
run_cluster() {
  local http_ports cluster_ports run n dir urls=() pids_flag=() args
  read -r -a http_ports <<<"$(free_ports "${PORT:-8000}" "$nodes" tcp)"
  read -r -a cluster_ports <<<"$(free_ports "${CLUSTER_PORT:-7100}" "$nodes" udp)"
  out=$(mktemp -d -t starling-bench-cluster.XXXXXX)
  trap stop_servers EXIT
  "$starling" certs init --out "$out/ca" >/dev/null
  for n in $(seq 1 "$nodes"); do
    "$starling" certs node --ca "$out/ca" --node-id "$n" --out "$out/tls-$n" >/dev/null
    urls+=(--url "ws://127.0.0.1:${http_ports[n - 1]}/connection/websocket")
  done
  echo "scenario $scenario on a $nodes-node cluster, $runs runs, client ports ${http_ports[*]}," \
    "cluster ports ${cluster_ports[*]} (UDP), output in $out"
  echo "machine: $(nproc) CPUs, $(uname -sr)"
  for run in $(seq 1 "$runs"); do
    for n in $(seq 1 "$nodes"); do
      dir="$out/run-$run/node-$n"
      mkdir -p "$dir"
      args=(serve --config benches/starling-bench.toml --node-id "$n"
        --http-addr "127.0.0.1:${http_ports[n - 1]}" --data-dir "$dir/data"
        --cluster-addr "127.0.0.1:${cluster_ports[n - 1]}" --cluster-tls "$out/tls-$n")
      ((n > 1)) && args+=(--join "127.0.0.1:${cluster_ports[0]}")
      "$starling" "${args[@]}" >"$out/server-$run-$n.log" 2>&1 &
      server_pids+=($!)
      # One at a time, as deploy/local-cluster.sh does: a joiner waits for
      # the members before it to answer.
      local waited=0
      until cluster_status "${http_ports[n - 1]}" >/dev/null; do
        kill -0 "${server_pids[n - 1]}" 2>/dev/null && ((waited < 300)) || {
          echo "node $n did not start; see $out/server-$run-$n.log" >&2
          exit 1
        }
        sleep 0.2
        waited=$((waited + 1))
      done
    done
    wait_for_cluster "$nodes" "${http_ports[@]}" || {
      echo "the cluster did not settle ($nodes alive members owning shards) within 60 s:" >&2
      cluster_status "${http_ports[0]}" >&2 || true
      exit 1
    }
    cluster_status "${http_ports[0]}" >"$out/cluster-$run.json"
    local before_copies=() before_pubs=()
    for n in $(seq 1 "$nodes"); do
      before_copies+=("$(metric "${http_ports[n - 1]}" starling_cluster_publication_copies_total)")
      before_pubs+=("$(metric "${http_ports[n - 1]}" starling_publications_in_total)")
    done
    echo "run $run: cluster settled ($nodes alive members, pids ${server_pids[*]});" \
      "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    pids_flag=()
    for n in $(seq 1 "$nodes"); do pids_flag+=(--server-pid "${server_pids[n - 1]}"); done
    "$loadgen" "${urls[@]}" --scenario "$scenario" "${pids_flag[@]}" --json "$@" \
      >"$out/run-$run.json"
    # Whole run (warm-up, window, drain): copies sent by each node's rooms and
    # publications its rooms accepted; their ratio is what matters.
    local copies=0 pubs=0 line="run $run: cross-node copies per node"
    for n in $(seq 1 "$nodes"); do
      local c p
      c=$(($(metric "${http_ports[n - 1]}" starling_cluster_publication_copies_total) - before_copies[n - 1]))
      p=$(($(metric "${http_ports[n - 1]}" starling_publications_in_total) - before_pubs[n - 1]))
      line+=" $c"
      copies=$((copies + c))
      pubs=$((pubs + p))
    done
    echo "$line; publications accepted $pubs; copies per publication" \
      "$(awk -v c="$copies" -v p="$pubs" 'BEGIN { printf "%.3f", p ? c / p : 0 }')" |
      tee "$out/copies-$run.txt"
    stop_servers
  done

  "$loadgen" median "$out"/run-*.json
  echo "cross-node copies per publication (runs): $(awk '{ print $NF }' "$out"/copies-*.txt | tr '\n' ' ')"
  echo "reports: $out"
}

raise_open_files
# BENCH_STARLING_BIN / BENCH_LOADGEN_BIN: prebuilt binaries, not rebuilt (a
# snapshot keeps a series on one build while the tree changes).
if [[ -z ${BENCH_STARLING_BIN:-} || -z ${BENCH_LOADGEN_BIN:-} ]]; then
  cargo build --release -p starling-server -p starling-bench
fi
starling=${BENCH_STARLING_BIN:-$(release_dir)/starling}
loadgen=${BENCH_LOADGEN_BIN:-$(release_dir)/loadgen}

if ((nodes > 1)); then
  run_cluster "$@"
  exit
fi

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
