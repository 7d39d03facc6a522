#!/usr/bin/env bash
# A 3-node Starling cluster on this machine, for development and demos.
#
#   deploy/local-cluster.sh start    start nodes 1-3 (those not running) and wait until all
#                                    three are alive members that own shards
#   deploy/local-cluster.sh status   print the cluster status (`starling cluster status`)
#   deploy/local-cluster.sh stop     stop the nodes (SIGTERM, then wait for each to exit)
#
# Node N serves clients on 127.0.0.1:800N and the cluster plane (QUIC, mutual TLS) on UDP
# 127.0.0.1:700N. Node 1 initializes the cluster; nodes 2 and 3 join through 127.0.0.1:7001.
# A restart (start after stop) reuses every node's data directory: the nodes rejoin their
# cluster by themselves and --join is ignored.
#
# Everything lives in one directory, $STARLING_LOCAL_CLUSTER_DIR (default ./local-cluster,
# relative to where you run the script), made on the first start and reused afterwards:
#
#   starling.toml        the configuration all three nodes share: a generated token HMAC
#                        secret and server API key, and a chat-friendly default namespace
#   ca/                  the cluster CA (`starling certs init`), made once
#   node-N/tls/          node N's certificate (`starling certs node`), made once
#   node-N/data/         node N's data directory (Raft log, vote, snapshots)
#   node-N/starling.pid  node N's process id while it runs
#   node-N/starling.log  node N's log (appended to on every start)
#
# The binary is $STARLING_BIN, by default target/release/starling of this repository, built
# with `cargo build --release -p starling-server` when it is missing (or predates the cluster
# commands). Delete the directory to start over with a new cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${STARLING_LOCAL_CLUSTER_DIR:-./local-cluster}"
# Absolute: the nodes get paths inside it as flags, and the hints below print it.
case "$DIR" in
/*) ;;
*) DIR="$PWD/${DIR#./}" ;;
esac
# How to run this script again on the same directory, for the hints it prints.
AGAIN="$0"
if [[ -n "${STARLING_LOCAL_CLUSTER_DIR:-}" ]]; then
    AGAIN="STARLING_LOCAL_CLUSTER_DIR=$DIR $0"
fi
CONFIG="$DIR/starling.toml"
BIN="${STARLING_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/starling}"
BIN_GIVEN="${STARLING_BIN:+yes}"
# `starling` refuses STARLING_* variables that name no configuration key; these two are the
# script's own, so the nodes must not see them.
unset STARLING_BIN STARLING_LOCAL_CLUSTER_DIR
NODES=(1 2 3)
HOST=127.0.0.1
# How long one node may take to start (a joiner waits for the leader to add it), and how long
# the whole cluster may take to report three alive members that own shards.
NODE_START_TIMEOUT=60
SETTLE_TIMEOUT=60
# How long a node may take to exit after SIGTERM (it disconnects its clients first; the
# default node.shutdown_grace is well below this).
STOP_TIMEOUT=30

http_addr() { echo "$HOST:800$1"; }
cluster_addr() { echo "$HOST:700$1"; }
node_dir() { echo "$DIR/node-$1"; }
pid_file() { echo "$(node_dir "$1")/starling.pid"; }
log_file() { echo "$(node_dir "$1")/starling.log"; }

say() { printf '%s\n' "$*"; }
die() {
    printf 'local-cluster: %s\n' "$*" >&2
    exit 1
}

# The pid of node N if it is running (a pid file whose process is a `starling serve`).
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A reused pid belongs to some other program: not ours.
    ps -o args= -p "$pid" 2>/dev/null | grep -q 'serve' || return 1
    echo "$pid"
}

# The server API key from the shared configuration.
api_key() {
    [[ -f "$CONFIG" ]] || die "no $CONFIG: start the cluster first"
    sed -n 's/^key = "\(.*\)"$/\1/p' "$CONFIG"
}

random_hex() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

ensure_binary() {
    if [[ -x "$BIN" ]] && "$BIN" cluster --help >/dev/null 2>&1; then
        return
    fi
    if [[ -n "$BIN_GIVEN" ]]; then
        die "STARLING_BIN=$BIN is not a starling binary with the cluster commands"
    fi
    say "building the release binary: cargo build --release -p starling-server"
    (cd "$ROOT" && cargo build --release -p starling-server) || die "the build failed"
    [[ -x "$BIN" ]] || die "the build did not produce $BIN (is CARGO_TARGET_DIR set elsewhere?)"
}

write_config() {
    [[ -f "$CONFIG" ]] && return
    mkdir -p "$DIR"
    # The file holds secrets: readable by its owner only.
    (umask 077 && cat >"$CONFIG") <<EOF
# Written by deploy/local-cluster.sh for its 3-node local cluster; shared by every node.
# Addresses, node ids, data and TLS directories come from the serve flags the script passes.

[client.token]
# Signs connection and subscription tokens: starling gentoken --config $CONFIG --user NAME
hmac_secret_key = "$(random_hex)"

[http_api]
# The server API key (X-API-Key header; starling cluster status --api-key).
key = "$(random_hex)"

# A chat room needs nothing more: any authenticated user may subscribe, publish, and read
# presence and history; subscribers see each other join and leave. Browsers connecting from
# a page need client.allowed_origins too.
[channel.without_namespace]
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true
EOF
    say "wrote $CONFIG (token secret and API key generated)"
}

make_certs() {
    local made=""
    if [[ ! -f "$DIR/ca/ca.pem" ]]; then
        "$BIN" certs init --out "$DIR/ca" >/dev/null
        made="the cluster CA ($DIR/ca)"
    fi
    local n
    for n in "${NODES[@]}"; do
        if [[ ! -f "$(node_dir "$n")/tls/node.pem" ]]; then
            "$BIN" certs node --ca "$DIR/ca" --node-id "$n" --out "$(node_dir "$n")/tls" >/dev/null
            made="${made:+$made, }node $n's certificate"
        fi
    done
    if [[ -n "$made" ]]; then
        say "made $made"
    fi
}

# `starling cluster status --json` through node N's API; fails while it does not answer.
status_json() {
    "$BIN" cluster status --http-addr "$(http_addr "$1")" --api-key "$(api_key)" --json 2>/dev/null
}

start_node() {
    local n="$1" dir log pid args
    dir="$(node_dir "$n")"
    log="$(log_file "$n")"
    mkdir -p "$dir/data"
    args=(serve --config "$CONFIG" --node-id "$n" --http-addr "$(http_addr "$n")"
        --cluster-addr "$(cluster_addr "$n")" --cluster-tls "$dir/tls" --data-dir "$dir/data")
    if [[ "$n" != 1 ]]; then
        args+=(--join "$(cluster_addr 1)")
    fi
    printf '\n==== %s: starling %s\n' "$(date '+%F %T')" "${args[*]}" >>"$log"
    # The node does not read stdin; its own session keeps a Ctrl-C in this terminal from
    # reaching it (`stop` sends SIGTERM). A background job of a script is no process group
    # leader, so setsid execs the binary itself and $! is the node's pid.
    if command -v setsid >/dev/null; then
        setsid "$BIN" "${args[@]}" </dev/null >>"$log" 2>&1 &
    else
        "$BIN" "${args[@]}" </dev/null >>"$log" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$(pid_file "$n")"
    # The client plane (and so the API) answers once the node has started its cluster
    # runtime: initialized, joined, or restarted on its data directory.
    local waited=0
    until status_json "$n" >/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pid_file "$n")"
            tail -n 20 "$log" >&2
            die "node $n exited during start-up; its log: $log"
        fi
        if ((waited >= NODE_START_TIMEOUT * 5)); then
            tail -n 20 "$log" >&2
            die "node $n did not answer on $(http_addr "$n") within ${NODE_START_TIMEOUT}s; its log: $log"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "node $n up (pid $pid): client plane $(http_addr "$n"), cluster plane $(cluster_addr "$n")"
}

# Whether one status JSON shows a leader and the three members alive, each owning shards;
# prints "<leader> <shard map version>" for comparing the nodes' views.
view_settled() {
    local json="$1"
    [[ "$json" =~ \"leader\":([0-9]+) ]] || return 1
    local leader="${BASH_REMATCH[1]}"
    [[ "$json" =~ \"shard_map_version\":([0-9]+) ]] || return 1
    local version="${BASH_REMATCH[1]}"
    [[ "$(grep -o '"alive":true' <<<"$json" | wc -l)" -eq "${#NODES[@]}" ]] || return 1
    [[ "$(grep -o '"role":' <<<"$json" | wc -l)" -eq "${#NODES[@]}" ]] || return 1
    ! grep -q '"shards":0[,}]' <<<"$json" || return 1
    echo "$leader $version"
}

# Whether every node reports a settled view, all with the same leader and shard map version
# (a node that just restarted may still show its old map). Prints the last view on failure.
settled() {
    local n json view first=""
    for n in "${NODES[@]}"; do
        json="$(status_json "$n" || true)"
        if ! view="$(view_settled "$json")"; then
            LAST_VIEW="node $n: ${json:-no answer}"
            return 1
        fi
        if [[ -n "$first" && "$view" != "$first" ]]; then
            LAST_VIEW="node $n sees leader and map version $view, node 1 sees $first"
            return 1
        fi
        first="$view"
    done
}

cmd_start() {
    local n pid
    ensure_binary
    write_config
    make_certs
    # Nodes already running stay as they are, so `start` also brings back a node that was
    # stopped or killed on its own.
    for n in "${NODES[@]}"; do
        if pid="$(running_pid "$n")"; then
            say "node $n already running (pid $pid)"
        else
            start_node "$n"
        fi
    done

    local waited=0
    LAST_VIEW=""
    while true; do
        if settled; then
            break
        fi
        if ((waited >= SETTLE_TIMEOUT * 5)); then
            say "last status: $LAST_VIEW" >&2
            die "the cluster did not settle (3 alive members owning shards) within ${SETTLE_TIMEOUT}s; logs: $DIR/node-*/starling.log"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done

    local key
    key="$(api_key)"
    say ""
    "$BIN" cluster status --http-addr "$(http_addr 1)" --api-key "$key"
    say ""
    say "Starling local cluster is up (directory $DIR)."
    say "Connect an SDK to any node:"
    for n in "${NODES[@]}"; do
        say "  node $n: ws://$(http_addr "$n")/connection/websocket   log: $(log_file "$n")"
    done
    say "Server API key: $key"
    say "  curl -H 'X-API-Key: $key' http://$(http_addr 1)/api/cluster"
    say "Connection token for a user:"
    say "  $BIN gentoken --config $CONFIG --user alice"
    say "Status: $AGAIN status"
    say "Stop:   $AGAIN stop"
}

cmd_status() {
    local n key
    key="$(api_key)"
    for n in "${NODES[@]}"; do
        local pid
        if pid="$(running_pid "$n")"; then
            say "node $n: running (pid $pid), client plane $(http_addr "$n")"
        else
            say "node $n: not running"
        fi
    done
    say ""
    # Ask the first node that answers.
    for n in "${NODES[@]}"; do
        if running_pid "$n" >/dev/null; then
            "$BIN" cluster status --http-addr "$(http_addr "$n")" --api-key "$key"
            return
        fi
    done
    die "no node is running"
}

cmd_stop() {
    local n pid stopping=()
    for n in "${NODES[@]}"; do
        if pid="$(running_pid "$n")"; then
            kill -TERM "$pid"
            stopping+=("$n:$pid")
            say "node $n (pid $pid): SIGTERM sent"
        else
            rm -f "$(pid_file "$n")"
        fi
    done
    # All at once, so the survivors do not spend the stop moving shards around.
    local entry waited
    for entry in "${stopping[@]}"; do
        n="${entry%%:*}"
        pid="${entry#*:}"
        waited=0
        while kill -0 "$pid" 2>/dev/null; do
            if ((waited >= STOP_TIMEOUT * 5)); then
                say "node $n (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
            waited=$((waited + 1))
        done
        rm -f "$(pid_file "$n")"
        say "node $n stopped"
    done
    if ((${#stopping[@]} == 0)); then
        say "no node was running"
    fi
}

case "${1:-}" in
start) cmd_start ;;
status) cmd_status ;;
stop) cmd_stop ;;
*)
    say "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
