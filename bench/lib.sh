# Shared by the bench scripts (sourced, not run).

# A free TCP port below Linux's ephemeral range.
free_port() {
  for _ in $(seq 100); do
    local p=$((20000 + RANDOM % 12000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
  return 1
}

# start_pgrail_beside BIN DIR NAME [POLICY [AUDIT]]: one more pgrail like the test cluster's
# ($PGRAIL_CONFIG) on a port of its own, enforcing the policy file POLICY (none if empty) with its
# audit in AUDIT (default DIR/NAME-audit.jsonl), its config and log in DIR as NAME.*; sets
# beside_port and beside_pid. setsid: a session, and so a scheduler autogroup, of its own like the
# other proxies; sharing pgbench's would halve its CPU share and bias every ratio against it.
start_pgrail_beside() {
  local bin=$1 dir=$2 name=$3 policy=${4:-} audit=${5:-$2/$3-audit.jsonl}
  beside_port=$(free_port)
  sed -E "s/^listen: .*/listen: {host: 127.0.0.1, port: $beside_port}/" "$PGRAIL_CONFIG" >"$dir/$name.yaml"
  if [[ -n $policy ]]; then printf 'policy: %s\naudit: {file: %s}\n' "$policy" "$audit" >>"$dir/$name.yaml"; fi
  setsid "$bin" serve --config "$dir/$name.yaml" 2>"$dir/$name.log" &
  beside_pid=$!
  for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$beside_port" && return 0; sleep 0.1; done
  cat "$dir/$name.log" >&2
  return 1
}

# start_policy_pgrail BIN DIR: start_pgrail_beside enforcing policies/default.yaml, audit in
# DIR/audit.jsonl; sets policy_port and policy_pid.
start_policy_pgrail() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  start_pgrail_beside "$1" "$2" pgrail-policy "$repo/policies/default.yaml" "$2/audit.jsonl" || return 1
  policy_port=$beside_port
  policy_pid=$beside_pid
}

# write_bouncer_config DIR PORT UPSTREAM_HOST: PgBouncer in session mode for app_owner (SCRAM, its
# password in DIR/userlist.txt) on 127.0.0.1:PORT, in front of $PG_DATABASE at UPSTREAM_HOST (a
# host or a socket directory) and $PG_PORT; DIR/pgbouncer.ini, which callers may extend.
write_bouncer_config() {
  local dir=$1 port=$2 host=$3
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
$PG_DATABASE = host=$host port=$PG_PORT dbname=$PG_DATABASE
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
logfile = $dir/pgbouncer.log
EOF
  echo '"app_owner" "app_owner"' >"$dir/userlist.txt"
}

# The TPS pgbench printed into FILE.
tps() { sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$1" | head -1; }

# The median of the numbers on stdin, one per line (empty for none).
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Per-process counters, read before and after a benchmark run (bench/run.sh). The process's
# threads all count: pgrail's workers, the floor relay's loops.
# cpu_ticks PID: user + system time in clock ticks (comm, which may hold spaces, cut off first).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# context_switches PID: voluntary + nonvoluntary, summed over /proc/PID/task/*/status (a thread
# that exited takes its count with it; none of the benchmarked processes ends threads mid-run).
context_switches() {
  cat "/proc/$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}'
}

# System calls, counted by the kernel's raw_syscalls:sys_enter tracepoint through `perf stat -p`
# (all threads, no sampling, no stop per call as with strace). syscall_counter_works: perf is there
# and may attach (root, or perf_event_paranoid low enough).
syscall_counter_works() {
  command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true >/dev/null 2>&1
}
# syscall_count_begin PID FILE ... syscall_count_end FILE: sets syscall_count to the count in
# between (empty if perf counted nothing). Not to be called in $(...): a subshell cannot wait for
# perf, and perf writes its count as it exits.
syscall_count_begin() {
  rm -f "$2"   # never a previous run's count
  perf stat -e raw_syscalls:sys_enter -x, -o "$2" -p "$1" >/dev/null 2>&1 &
  syscall_perf_pid=$!
  sleep 0.2   # perf attaches in a few ms; a call made before it would go uncounted
}
syscall_count_end() {
  kill -INT "$syscall_perf_pid" 2>/dev/null || true
  wait "$syscall_perf_pid" 2>/dev/null || true
  syscall_perf_pid=''
  syscall_count=$(awk -F, '/raw_syscalls:sys_enter/ && $1 ~ /^[0-9]+$/ {print $1}' "$1")
}
