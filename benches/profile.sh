#!/usr/bin/env bash
# Profiles a release-built Starling node under one loadgen scenario: where the
# bytes of each connection go (heaptrack) or where the CPU of each delivery
# goes (perf).
#
#   benches/profile.sh heap [LOADGEN FLAGS...]   # default: idle, 5,000 connections
#   benches/profile.sh cpu  [LOADGEN FLAGS...]   # default: fanout, 5,000 subscribers
#   benches/profile.sh syscalls [LOADGEN FLAGS...]   # perf trace -s during fanout
#
# heap runs the node under heaptrack, lets loadgen connect and idle, stops the
# node and prints the peak heap per connection and its biggest allocation
# sites (`heaptrack_print --print-peaks`; the full data stays in the output
# directory for heaptrack_gui or `heaptrack_print -F … --flamegraph-cost-type
# peak`). cpu waits until the connect phase is over, records the node for
# PERF_SECONDS (default 5) with `perf record -e cpu-clock --call-graph dwarf`
# (cpu-clock: this VM has no hardware counters) and prints the top symbols.
# syscalls counts the node's system calls per kind over the same span.
# Needs Debian's heaptrack or linux-perf; BENCH_STARLING_BIN / BENCH_LOADGEN_BIN
# as in run.sh skip the build.
set -euo pipefail

cd "$(dirname "$0")/.."
source benches/lib.sh
mode=${1:-cpu}
[[ $# -gt 0 ]] && shift
case $mode in
  heap) defaults=(--scenario idle --connections 5000 --duration 2) ;;
  cpu | syscalls) defaults=(--scenario fanout --duration 12) ;;
  *) echo "usage: benches/profile.sh heap|cpu|syscalls [loadgen flags]" >&2; exit 2 ;;
esac
(($# == 0)) && set -- "${defaults[@]}"

raise_open_files
if [[ -z ${BENCH_STARLING_BIN:-} || -z ${BENCH_LOADGEN_BIN:-} ]]; then
  cargo build --release -p starling-server -p starling-bench
fi
starling=${BENCH_STARLING_BIN:-$(release_dir)/starling}
loadgen=${BENCH_LOADGEN_BIN:-$(release_dir)/loadgen}
port=$(free_port "${PORT:-8000}")
url="ws://127.0.0.1:$port/connection/websocket"
out=$(mktemp -d -t starling-profile.XXXXXX)
serve=(serve --config benches/starling-bench.toml --http-addr "127.0.0.1:$port"
  --data-dir "$out/data" --cluster-addr 127.0.0.1:0)
echo "profile $mode, server on 127.0.0.1:$port, output in $out"

if [[ $mode == heap ]]; then
  heaptrack -o "$out/heap" "$starling" "${serve[@]}" >"$out/server.log" 2>&1 &
  tracker=$!
  # heaptrack starts the node as its child.
  for _ in $(seq 1 100); do
    server_pid=$(pgrep -P "$tracker" -f "http-addr 127.0.0.1:$port" || true)
    [[ -n $server_pid ]] && port_busy "$port" && break
    sleep 0.2
  done
  [[ -n $server_pid ]] || { echo "starling did not start; see $out/server.log" >&2; exit 1; }
  "$loadgen" --url "$url" --server-pid "$server_pid" "$@" | tee "$out/loadgen.txt" |
    grep -E "connections opened|RSS per connection"
  kill "$server_pid"
  wait "$tracker" || true
  connections=$(awk '/connections opened/ { print $3 }' "$out/loadgen.txt")
  heaptrack_print -f "$out"/heap.*zst --print-peaks 1 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --peak-limit 20 >"$out/peaks.txt" 2>/dev/null
  peak=$(heaptrack_print -f "$out"/heap.*zst --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 2>/dev/null | awk '/peak heap memory consumption/ { print $NF }')
  echo "peak heap $peak over $connections connections (baseline included); sites: $out/peaks.txt"
  exit
fi

"$starling" "${serve[@]}" >"$out/server.log" 2>&1 &
server_pid=$!
trap stop_server EXIT
wait_for_port "$port" "$server_pid" || { echo "starling did not start; see $out/server.log" >&2; exit 1; }
"$loadgen" --url "$url" --server-pid "$server_pid" "$@" >"$out/loadgen.txt" &
generator=$!
# The window opens after the connect phase and the warm-up: wait until the
# node's descriptors have grown and stopped growing, then 3 s more.
until (($(ls "/proc/$server_pid/fd" | wc -l) > 100)); do sleep 0.2; done
previous=-1
while :; do
  fds=$(ls "/proc/$server_pid/fd" | wc -l)
  ((fds == previous)) && break
  previous=$fds
  sleep 1
done
sleep 3
if [[ $mode == cpu ]]; then
  perf record -e cpu-clock -F 999 --call-graph dwarf,8192 -p "$server_pid" -o "$out/perf.data" \
    -- sleep "${PERF_SECONDS:-5}" 2>"$out/perf.log"
else
  perf trace -s -p "$server_pid" -o "$out/syscalls.txt" -- sleep "${PERF_SECONDS:-5}" 2>/dev/null || true
fi
wait "$generator" || true
grep -E "delivered messages|server CPU|generator CPU|other load" "$out/loadgen.txt"
if [[ $mode == cpu ]]; then
  perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -4
  perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    grep '%' | head -40
  echo "perf data: $out/perf.data (perf report -i … --children for call chains)"
else
  grep -E '^\s+[a-z_0-9]+\s+[0-9]+' "$out/syscalls.txt" |
    awk '{ calls[$1] += $2 } END { for (k in calls) print calls[k], k }' | sort -rn | head
fi
