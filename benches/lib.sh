# Shell helpers shared by benches/run.sh and benches/compare.sh (sourced).

# Tens of thousands of sockets need more descriptors than the usual 1024.
# Raise the soft limit as far as allowed (servers and every loadgen process
# inherit it); an unprivileged shell cannot go past the hard limit.
raise_open_files() {
  ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo "open files limit: $(ulimit -n)"
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from $1 up that nothing listens on.
free_port() {
  local port=$1
  while port_busy "$port"; do
    port=$((port + 1))
  done
  echo "$port"
}

# Waits up to 10 s for a server (pid $2) to listen on port $1; fails early
# if the process dies first.
wait_for_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 100); do
    port_busy "$port" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  port_busy "$port"
}

# Stops the server whose pid is in $server_pid (if any) and waits for it.
server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}

# Where cargo puts release binaries (CARGO_TARGET_DIR is honoured).
release_dir() { echo "${CARGO_TARGET_DIR:-target}/release"; }

# Whether something listens on UDP 127.0.0.1:$1 (or any address) — the
# cluster plane is QUIC.
udp_port_busy() { [[ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ]]; }

# $2 distinct ports from $1 up, free for TCP ($3 = tcp) or UDP ($3 = udp),
# space-separated.
free_ports() {
  local port=$1 count=$2 proto=$3 found=()
  while ((${#found[@]} < count)); do
    if [[ $proto == udp ]]; then
      udp_port_busy "$port" || found+=("$port")
    else
      port_busy "$port" || found+=("$port")
    fi
    port=$((port + 1))
  done
  echo "${found[*]}"
}

# Stops every server whose pid is in the array server_pids (all at once, so
# a cluster's survivors do not start moving shards) and waits for them.
server_pids=()
stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${server_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  server_pids=()
}

# `starling cluster status --json` through the node on 127.0.0.1:$1, with the
# API key of benches/starling-bench.toml; fails while the node does not answer.
cluster_status() {
  "$starling" cluster status --http-addr "127.0.0.1:$1" --api-key bench-api-key --json 2>/dev/null
}

# Whether the node on 127.0.0.1:$1 sees a leader and $2 alive members, each
# owning shards; prints "<leader> <shard map version>" so that the views of
# several nodes can be compared.
cluster_settled() {
  local json
  json=$(cluster_status "$1") || return 1
  [[ $json =~ \"leader\":([0-9]+) ]] || return 1
  local leader=${BASH_REMATCH[1]}
  [[ $json =~ \"shard_map_version\":([0-9]+) ]] || return 1
  local version=${BASH_REMATCH[1]}
  [[ $(grep -o '"alive":true' <<<"$json" | wc -l) -eq $2 ]] || return 1
  [[ $(grep -o '"role":' <<<"$json" | wc -l) -eq $2 ]] || return 1
  ! grep -q '"shards":0[,}]' <<<"$json" || return 1
  echo "$leader $version"
}

# Waits up to 60 s until every node (client ports $2…) reports the same
# settled view of $1 members.
wait_for_cluster() {
  local members=$1 port view first
  shift
  for _ in $(seq 1 300); do
    first=
    for port in "$@"; do
      view=$(cluster_settled "$port" "$members") || { first=x; break; }
      [[ -z $first || $view == "$first" ]] || { first=x; break; }
      first=$view
    done
    [[ $first != x ]] && return 0
    sleep 0.2
  done
  return 1
}

# A counter's value in the Prometheus text of the node on 127.0.0.1:$1 (0
# when absent).
metric() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v name="$2" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}
