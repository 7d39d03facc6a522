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
