#!/usr/bin/env bash
# Benchmark (not a test): direct PostgreSQL, pgrail without a policy, pgrail enforcing
# policies/default.yaml ("policy"), the floor relay and PgBouncer (session mode), interleaved in an
# order that starts one further each round, repeated; prints every round, the medians, and each
# bar of issue 21 with PASS/MISS against its reference in the same run.
#
#   bench/run.sh [PGRAIL_BIN]          # default build/pgrail; about 25 minutes with the defaults
#   REPEATS=5 DURATION=10 SHORT=5 COPY_ROWS=3000000 COPY_REPEATS=3 IDLE=500 bench/run.sh
#   REPEATS=2 DURATION=3 SHORT=2 COPY_ROWS=200000 IDLE=50 bench/run.sh   # a quick check
#   UPSTREAM=unix bench/run.sh         # every proxy (the floor relay too) reaches PostgreSQL
#                                      # through its Unix socket
#   PGRAIL_WORKERS=1 bench/run.sh      # pgrail's I/O threads (default: one per core)
#   TLS=1 bench/run.sh                 # TLS on the client leg of the proxies (pgbench sslmode=require;
#                                      # direct stays plain TCP; no floor relay: it speaks no TLS, and
#                                      # the bars measured against it print n/a)
#   PGRAIL_ALT_BIN=build-uring/pgrail bench/run.sh   # one more target, pgrail_alt: a second pgrail
#                                      # binary without a policy, for an A/B against pgrail in the same run
#   BENCH_KEEP=FILE bench/run.sh       # keep the raw results: "benchmark metric target value round"
#   SYSCALLS=0 bench/run.sh            # do not count system calls (no perf)
#
# The floor relay (bench/relay_floor_bench.cpp; cmake --build build --target relay_floor_bench)
# forwards bytes and parses nothing: what any proxy stands on, so each bar can be read against
# what forwarding alone costs in the same run. Without it (not built, or TLS=1) it is left out.
# Built with liburing-dev, it also runs as floor_uring: the same relay on io_uring (multishot
# receives into provided buffers, one io_uring_enter per loop turn), the fewest system calls a
# relay can make, to tell what an io_uring loop would save pgrail (issue 21).
#
# Every benchmark runs every target: pgbench -S -c 8 -j 2 in the simple, extended and prepared
# protocols (DURATION s each), -c 1 and -C churn (SHORT s), COPY TO STDOUT (COPY_REPEATS per
# round); then IDLE idle clients once. For each proxy process, all its threads, between just before
# and just after the client's run (COPY: per 1000 rows instead of per transaction):
# - CPU us per transaction: utime + stime of /proc/PID/stat.
# - context switches per transaction: voluntary + nonvoluntary, /proc/PID/task/*/status summed.
# - system calls per transaction: `perf stat -e raw_syscalls:sys_enter -p PID` (Debian's
#   linux-perf): the kernel counts each entry at its tracepoint, all threads, no sampling and no
#   stop of the process. strace -c -f would stop the proxy twice per call and multiply the very
#   CPU measured. perf's price: while it is attached every system call on the machine takes the
#   kernel's slower traced entry (tens of ns) and the proxy's own calls are counted in-kernel;
#   it is attached in every run (in direct's to the postmaster, whose count is not reported) so
#   that every target pays it alike.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
REPEATS=${REPEATS:-5}
DURATION=${DURATION:-10}     # seconds per -c 8 run
SHORT=${SHORT:-5}            # seconds per -c 1 and -C run
COPY_ROWS=${COPY_ROWS:-3000000}
COPY_REPEATS=${COPY_REPEATS:-3}   # COPYs per target and round
IDLE=${IDLE:-500}
UPSTREAM=${UPSTREAM:-tcp}
TLS=${TLS:-0}
SYSCALLS=${SYSCALLS:-1}
alt_bin=${PGRAIL_ALT_BIN:+$(realpath "$PGRAIL_ALT_BIN")}
[[ $UPSTREAM == tcp || $UPSTREAM == unix ]] || { echo "bench: UPSTREAM must be tcp or unix" >&2; exit 1; }
[[ -x $pgrail_bin ]] || { echo "bench: no pgrail binary at $pgrail_bin" >&2; exit 1; }
[[ -z $alt_bin || -x $alt_bin ]] || { echo "bench: no pgrail binary at PGRAIL_ALT_BIN=$PGRAIL_ALT_BIN" >&2; exit 1; }
[[ $REPEATS =~ ^[1-9][0-9]?$ ]] || { echo "bench: REPEATS must be 1 to 99" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "bench: pgbouncer not installed (scripts/install-deps.sh)" >&2; exit 1; }
if [[ $SYSCALLS == 1 ]] && ! syscall_counter_works; then
  echo "bench: perf cannot count system calls here (apt-get install linux-perf; root or kernel.perf_event_paranoid <= -1): not counted" >&2
  SYSCALLS=0
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # 500 idle clients need > 1000 descriptors
work=$(mktemp -d /tmp/pgrail-bench.XXXXXX)
bouncer_pid=''
policy_pid=''
floor_pid=''
floor_uring_pid=''
alt_pid=''
syscall_perf_pid=''
cleanup() {
  local pid
  for pid in "$syscall_perf_pid" "$bouncer_pid" "$policy_pid" "$floor_pid" "$floor_uring_pid" "$alt_pid"; do
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  "$repo/scripts/test-cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# TLS=1: the test CA's server certificate for both proxies' client leg (scripts/test-certs.sh).
tls_extra=''
if [[ $TLS == 1 ]]; then
  "$repo/scripts/test-certs.sh" "$work/certs" >/dev/null
  tls_extra=$work/tls.yaml
  printf 'tls:\n  client: {mode: require, cert_file: %s, key_file: %s}\n' "$work/certs/server.crt" \
    "$work/certs/server.key" >"$tls_extra"
fi
# The proxies' clients ask for TLS under TLS=1; direct connections never do.
sslmode_for() { [[ $TLS == 1 && $1 != direct ]] && echo require || echo disable; }

echo "bench: starting PostgreSQL 15 and pgrail ($pgrail_bin)"
PG_MAX_CONNECTIONS=$((IDLE + 100)) PGRAIL_LOG_LEVEL=${PGRAIL_LOG_LEVEL:-info} PGRAIL_UPSTREAM=$UPSTREAM \
  PGRAIL_EXTRA_CONFIG=$tls_extra "$repo/scripts/test-cluster.sh" start "$work/cluster" "$pgrail_bin" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/env"
export PGHOST=$PG_HOST PGDATABASE=$PG_DATABASE PGUSER=app_owner PGPASSWORD=app_owner
pgbench=$PG_BIN/pgbench
psql=$PG_BIN/psql

# PgBouncer must not run as root: its files live in the postgres-owned temporary directory.
bouncer_dir=$PG_TMP/pgbouncer
bouncer_port=$(free_port)
write_bouncer_config "$bouncer_dir" "$bouncer_port" "$([[ $UPSTREAM == unix ]] && echo "$PG_SOCKET_DIR" || echo "$PG_HOST")"
cat >>"$bouncer_dir/pgbouncer.ini" <<EOF
max_client_conn = $((IDLE + 100))
default_pool_size = $((IDLE + 20))
max_db_connections = $((IDLE + 20))
pidfile = $bouncer_dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
if [[ $TLS == 1 ]]; then
  cp "$work/certs/server.crt" "$work/certs/server.key" "$bouncer_dir/"
  printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
    "$bouncer_dir/server.crt" "$bouncer_dir/server.key" >>"$bouncer_dir/pgbouncer.ini"
fi
if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$bouncer_dir"; run_bouncer=(runuser -u postgres --); else run_bouncer=(); fi
"${run_bouncer[@]}" pgbouncer -d "$bouncer_dir/pgbouncer.ini"
for _ in $(seq 50); do [[ -s $bouncer_dir/pgbouncer.pid ]] && break; sleep 0.1; done
bouncer_pid=$(cat "$bouncer_dir/pgbouncer.pid")
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$bouncer_port" -t 10 || { cat "$bouncer_dir/pgbouncer.log" >&2; exit 1; }

# A second pgrail enforcing the shipped default policy: the policy's cost is its TPS
# against pgrail without a policy, in the same run.
start_policy_pgrail "$pgrail_bin" "$work" || exit 1

declare -A port=([direct]=$PG_PORT [pgrail]=$PGRAIL_PORT [pgbouncer]=$bouncer_port [policy]=$policy_port)
declare -A pid_of=([pgrail]=$PGRAIL_PID [pgbouncer]=$bouncer_pid [policy]=$policy_pid)
targets=(direct pgrail policy pgbouncer)

# The floor relay (bench/relay_floor_bench.cpp), with one loop per core like pgrail, reaching
# PostgreSQL the way the proxies do (UPSTREAM).
floor_bin=${FLOOR_BIN:-$repo/build/bench/relay_floor_bench}
# start_floor TARGET IO: the relay with IO's loop (epoll or uring) as TARGET; sets floor_started_pid.
start_floor() {
  local relay_port ready=''
  relay_port=$(free_port)
  setsid "$floor_bin" "$relay_port" "$([[ $UPSTREAM == unix ]] && echo "$PG_SOCKET_DIR" || echo "$PG_HOST")" \
    "$PG_PORT" "$(nproc)" "$2" 2>"$work/$1.err" &
  floor_started_pid=$!
  # pg_isready tries once: a relay still starting would refuse it.
  for _ in $(seq 50); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$relay_port" -t 2 && { ready=1; break; }; sleep 0.1; done
  [[ -n $ready ]] || { kill "$floor_started_pid" 2>/dev/null; return 1; }
  port[$1]=$relay_port
  pid_of[$1]=$floor_started_pid
  targets+=("$1")
}
if [[ -x $floor_bin && $TLS != 1 ]]; then
  start_floor floor epoll || { echo "bench: the floor relay did not start" >&2; exit 1; }
  floor_pid=$floor_started_pid
  if start_floor floor_uring uring; then
    floor_uring_pid=$floor_started_pid
  else
    echo "bench: no io_uring floor relay ($(cat "$work/floor_uring.err")): floor_uring left out" >&2
  fi
elif [[ $TLS != 1 ]]; then
  echo "bench: no floor relay at $floor_bin (cmake --build build --target relay_floor_bench): its bars print n/a" >&2
fi

# PGRAIL_ALT_BIN: the same configuration as pgrail's (no policy), another binary.
if [[ -n $alt_bin ]]; then
  start_pgrail_beside "$alt_bin" "$work" pgrail-alt || exit 1
  port[pgrail_alt]=$beside_port
  pid_of[pgrail_alt]=$beside_pid
  alt_pid=$beside_pid
  targets+=(pgrail_alt)
fi
# direct has no process of its own to measure: perf attaches to the postmaster then, only so
# that its runs pay the traced system call entry like the others'.
postmaster_pid=$(head -1 "$PG_DATA/postmaster.pid")
results=$work/results.txt
failed_runs=$work/failed.txt
: >"$results"
: >"$failed_runs"

echo "bench: pgbench -i -s 1, a $COPY_ROWS-row table for COPY"
"$pgbench" -i -s 1 -q -n -p "$PG_PORT" >/dev/null 2>&1
"$psql" -X -q -p "$PG_PORT" -c "CREATE TABLE copy_source AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, $COPY_ROWS) AS g" -c "VACUUM ANALYZE copy_source"

clock_ticks=$(getconf CLK_TCK)
run_limit=$(((DURATION > SHORT ? DURATION : SHORT) * 3 + 60))   # seconds, for any one pgbench run
# record BENCHMARK METRIC TARGET VALUE ROUND: one line of the raw results.
record() { echo "$1 $2 $3 $4 $5" >>"$results"; }

# measure_begin TARGET ... measure_end TARGET BENCHMARK ROUND UNITS PER: the target process's CPU
# time, context switches and system calls in between, each divided by UNITS (transactions, or
# thousands of rows) and recorded as METRIC_per_PER; they are left in m_cpu, m_cs and m_sys.
measure_begin() {
  local pid=${pid_of[$1]:-}
  m_cpu_before='' m_cs_before=''
  if [[ -n $pid ]]; then
    m_cpu_before=$(cpu_ticks "$pid")
    m_cs_before=$(context_switches "$pid")
  fi
  if [[ $SYSCALLS == 1 ]]; then syscall_count_begin "${pid:-$postmaster_pid}" "$work/perf.txt"; fi
  return 0
}
measure_end() {
  local target=$1 name=$2 round=$3 units=$4 per=$5 pid=${pid_of[$1]:-} syscalls=''
  m_cpu='-' m_cs='-' m_sys='-'
  if [[ -n $pid ]]; then
    m_cpu=$(awk -v d=$(($(cpu_ticks "$pid") - m_cpu_before)) -v u="$units" -v hz="$clock_ticks" 'BEGIN{printf "%.1f", d / hz * 1e6 / u}')
    m_cs=$(awk -v d=$(($(context_switches "$pid") - m_cs_before)) -v u="$units" 'BEGIN{printf "%.2f", d / u}')
  fi
  if [[ $SYSCALLS == 1 ]]; then
    syscall_count_end "$work/perf.txt"
    syscalls=$syscall_count
  fi
  [[ -n $pid ]] || return 0
  record "$name" "cpu_us_per_$per" "$target" "$m_cpu" "$round"
  record "$name" "cs_per_$per" "$target" "$m_cs" "$round"
  if [[ -n $syscalls ]]; then
    m_sys=$(awk -v d="$syscalls" -v u="$units" 'BEGIN{printf "%.2f", d / u}')
    record "$name" "syscalls_per_$per" "$target" "$m_sys" "$round"
  fi
}

# run_pgbench BENCHMARK TARGET ROUND PGBENCH_ARGS...: tps, mean latency and the proxy's counters.
run_pgbench() {
  local name=$1 target=$2 round=$3; shift 3
  local output tps latency txns
  measure_begin "$target"
  # A run with an aborted client (pgbench fails) is reported and left out of the medians: one bad
  # run of a long benchmark should not throw the others away, nor count with a client missing.
  # pgbench -T waits for a client whose proxy never answers: a hung run fails at run_limit.
  if ! output=$(PGSSLMODE=$(sslmode_for "$target") timeout -k 10 "$run_limit" "$pgbench" -n -S -p "${port[$target]}" "$@" 2>&1); then
    [[ $SYSCALLS == 1 ]] && syscall_count_end "$work/perf.txt"
    echo "bench: $name $target (round $round) failed, left out:" >&2
    grep -E 'error|FATAL' <<<"$output" | head -3 >&2
    echo "$name $target $round" >>"$failed_runs"
    return 0
  fi
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$output" | head -1)
  latency=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$output")
  txns=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$output")
  [[ -n $txns && $txns -gt 0 ]] || { echo "bench: $name $target: no transactions" >&2; echo "$output" >&2; return 1; }
  measure_end "$target" "$name" "$round" "$txns" txn
  grep -q "number of failed transactions: 0 " <<<"$output" || echo "bench: $name $target had failed transactions" >&2
  record "$name" tps "$target" "$tps" "$round"
  record "$name" latency_us "$target" "$(awk -v l="$latency" 'BEGIN{printf "%.1f", l * 1000}')" "$round"
  printf '  %-12s %-10s %9.0f tps %8s us CPU %6s cs %7s syscalls per txn\n' "$name" "$target" "$tps" "$m_cpu" "$m_cs" "$m_sys"
}

# run_copy TARGET ROUND: one COPY of copy_source to psql; rows/s and the counters per 1000 rows.
run_copy() {
  local target=$1 round=$2 start end seconds
  measure_begin "$target"
  start=$(date +%s%N)
  PGSSLMODE=$(sslmode_for "$target") "$psql" -X -q -p "${port[$target]}" -c "COPY copy_source TO STDOUT" >/dev/null
  end=$(date +%s%N)
  measure_end "$target" copy_out "$round" "$(awk -v r="$COPY_ROWS" 'BEGIN{print r / 1000}')" krow
  seconds=$(awk -v ns=$((end - start)) 'BEGIN{printf "%.3f", ns / 1e9}')
  record copy_out seconds "$target" "$seconds" "$round"
  record copy_out rows_per_s "$target" "$(awk -v s="$seconds" -v r="$COPY_ROWS" 'BEGIN{printf "%.0f", r / s}')" "$round"
  printf '  %-12s %-10s %9s s   %8s us CPU %6s cs %7s syscalls per 1000 rows\n' copy_out "$target" "$seconds" "$m_cpu" "$m_cs" "$m_sys"
}

# The targets in an order that starts one further each round: the machine drifts within a
# round (neighbours, caches), and a fixed order would hand that drift to the same target.
rotated() {
  local by=$1; shift
  local items=("$@")
  for ((i = 0; i < ${#items[@]}; i++)); do echo "${items[(i + by) % ${#items[@]}]}"; done
}

echo "bench: targets ${targets[*]}; $REPEATS rounds"
for round in $(seq "$REPEATS"); do
  echo "bench: round $round/$REPEATS"
  mapfile -t in_turn < <(rotated "$round" "${targets[@]}")
  for mode in simple extended prepared; do
    for target in "${in_turn[@]}"; do run_pgbench "c8_$mode" "$target" "$round" -M "$mode" -c 8 -j 2 -T "$DURATION"; done
  done
  for target in "${in_turn[@]}"; do run_pgbench c1_simple "$target" "$round" -M simple -c 1 -T "$SHORT"; done
  # pgrail does not pool: its churn is compared with direct's (PgBouncer's, pooled, is shown).
  for target in "${in_turn[@]}"; do run_pgbench churn_C "$target" "$round" -M simple -c 8 -j 2 -C -T "$SHORT"; done
  # One COPY takes about a second, where the machine's noise is largest: several per round.
  for copy in $(seq "$COPY_REPEATS"); do
    for target in $(rotated "$copy" "${in_turn[@]}"); do run_copy "$target" "$round"; done
  done
done

# Idle connections: pgbench clients that connect and then only sleep.
echo "bench: $IDLE idle connections"
printf '\\sleep 12 s\n' >"$work/idle.sql"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
for target in "${targets[@]}"; do
  [[ $target == direct || $target == floor* ]] && continue   # no process of its own / fixed buffers
  pid=${pid_of[$target]}
  before=$(rss_kib "$pid")
  PGSSLMODE=$(sslmode_for "$target") "$pgbench" -n -p "${port[$target]}" -f "$work/idle.sql" -c "$IDLE" -j 2 -t 1 \
    >/dev/null 2>&1 &
  idle_pid=$!
  sleep 8
  during=$(rss_kib "$pid")
  connected=$("$psql" -X -At -p "$PG_PORT" -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_owner' AND state = 'idle'")
  wait "$idle_pid" || true
  per=$(awk -v a="$before" -v b="$during" -v n="$IDLE" 'BEGIN{printf "%.1f", (b - a) / n}')
  record idle rss_before_kib "$target" "$before" 0
  record idle rss_with_idle_kib "$target" "$during" 0
  record idle kib_per_connection "$target" "$per" 0
  printf '  %-10s VmRSS %s KiB -> %s KiB with %s idle clients (%s server backends idle): %s KiB each\n' \
    "$target" "$before" "$during" "$IDLE" "$connected" "$per"
done

# value BENCHMARK METRIC TARGET [ROUND]: the median over every round, or over one round's runs.
value() {
  awk -v n="$1" -v m="$2" -v t="$3" -v r="${4:-}" '$1 == n && $2 == m && $3 == t && (r == "" || $5 == r) {print $4}' \
    "$results" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b}'; }
# fmt FORMAT VALUE: printf of a number, "-" for none.
# shellcheck disable=SC2059  # the format is the point
fmt() { if [[ -z $2 || $2 == - ]]; then echo -; else printf "$1" "$2"; fi; }

echo
[[ $TLS == 1 ]] && echo "Client leg TLS: pgbench and psql to the proxies with sslmode=require (TLS 1.3, the test CA's P-256 certificate); direct in plain TCP."
echo "$REPEATS interleaved rounds (COPY: $COPY_REPEATS runs per round, the round's median shown), proxies reach PostgreSQL over $UPSTREAM, pgrail workers: ${PGRAIL_WORKERS:-one per core} ($(nproc) cores, $(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "policy: pgrail enforcing policies/default.yaml${alt_bin:+; pgrail_alt: $alt_bin}; floor: the byte relay (floor_uring: on io_uring); CPU, cs (context switches) and syscalls: the proxy process's, per transaction (COPY: per 1000 rows)"
[[ $SYSCALLS == 1 ]] || echo "system calls not counted (SYSCALLS=0 or no usable perf)"

# Per round: one table per benchmark, a row per metric and target, a column per round.
declare -A format=([tps]=%.0f [latency_us]=%.1f [rows_per_s]=%.0f)
for name in c8_simple c8_extended c8_prepared c1_simple churn_C copy_out; do
  if [[ $name == copy_out ]]; then
    metrics=(rows_per_s cpu_us_per_krow cs_per_krow syscalls_per_krow)
  else
    metrics=(tps cpu_us_per_txn cs_per_txn syscalls_per_txn)
    [[ $name == c1_simple ]] && metrics=(tps latency_us cpu_us_per_txn cs_per_txn syscalls_per_txn)
  fi
  echo
  printf '%-30s' "$name"
  for round in $(seq "$REPEATS"); do printf ' %9s' "round $round"; done
  printf ' %9s\n' median
  for metric in "${metrics[@]}"; do
    for target in "${targets[@]}"; do
      [[ -n $(value "$name" "$metric" "$target") ]] || continue
      f=${format[$metric]:-%.2f}
      [[ $metric == cpu_us_* ]] && f=%.1f
      printf '  %-17s %-10s' "$metric" "$target"
      for round in $(seq "$REPEATS"); do printf ' %9s' "$(fmt "$f" "$(value "$name" "$metric" "$target" "$round")")"; done
      printf ' %9s\n' "$(fmt "$f" "$(value "$name" "$metric" "$target")")"
    done
  done
done
echo
printf '%-30s' "idle KiB per connection"
for target in "${targets[@]}"; do
  v=$(value idle kib_per_connection "$target")
  [[ -n $v ]] && printf ' %s %s' "$target" "$v"
done
echo

# The bars of issue 21, from the medians above. bar TEXT MEASURED VERDICT prints one line;
# verdict OK: "PASS" when OK is 1, "MISS" when 0, "n/a" when a reference is missing.
passes=0 misses=0 unavailable=0
bar() {
  printf '  %-58s %-46s %s\n' "$1" "$2" "$3"
  case $3 in PASS) passes=$((passes + 1)) ;; MISS) misses=$((misses + 1)) ;; *) unavailable=$((unavailable + 1)) ;; esac
}
# at_least A FACTOR B / at_most A FACTOR B: whether A >= FACTOR * B (A <= FACTOR * B).
at_least() { awk -v a="$1" -v f="$2" -v b="$3" 'BEGIN{if (a == "" || b == "") print "n/a"; else print (a >= f * b ? "PASS" : "MISS")}'; }
at_most() { awk -v a="$1" -v f="$2" -v b="$3" 'BEGIN{if (a == "" || b == "") print "n/a"; else print (a <= f * b ? "PASS" : "MISS")}'; }
echo
echo "Bars of issue 21 (medians of this run):"
for mode in simple extended prepared; do
  q=$(value "c8_$mode" tps policy); f=$(value "c8_$mode" tps floor); b=$(value "c8_$mode" tps pgbouncer)
  bar "c8 $mode TPS: policy >= 1.0x floor" "$(fmt %.0f "$q") vs $(fmt %.0f "$f"): $(ratio "$q" "$f")" "$(at_least "$q" 1.0 "$f")"
  bar "c8 $mode TPS: policy >= 1.1x PgBouncer" "$(fmt %.0f "$q") vs $(fmt %.0f "$b"): $(ratio "$q" "$b")" "$(at_least "$q" 1.1 "$b")"
done
for mode in simple extended prepared; do
  q=$(value "c8_$mode" cpu_us_per_txn policy); b=$(value "c8_$mode" cpu_us_per_txn pgbouncer)
  bar "c8 $mode CPU/txn: policy <= 0.85x PgBouncer" "$q vs $b us: $(ratio "$q" "$b")" "$(at_most "$q" 0.85 "$b")"
done
# Not bars: what forwarding alone costs against the same reference, on epoll and on io_uring.
for mode in simple extended prepared; do
  b=$(value "c8_$mode" cpu_us_per_txn pgbouncer)
  for target in floor floor_uring; do
    f=$(value "c8_$mode" cpu_us_per_txn "$target")
    [[ -n $f ]] && printf '  (c8 %s CPU/txn: %s %s vs PgBouncer %s us: %s)\n' "$mode" "$target" "$f" "$b" "$(ratio "$f" "$b")"
  done
done
d=$(value c1_simple latency_us direct); f=$(value c1_simple latency_us floor)
added() { awk -v a="$1" -v d="$d" 'BEGIN{if (a == "" || d == "") print ""; else printf "%.1f", a - d}'; }
for target in pgrail policy; do
  p=$(added "$(value c1_simple latency_us "$target")"); fa=$(added "$f")
  bar "c1 added latency: $target <= floor's + 5 us" "$(fmt %+.1f "$p") vs $(fmt %+.1f "$fa") us" \
    "$(awk -v p="$p" -v f="$fa" 'BEGIN{if (p == "" || f == "") print "n/a"; else print (p <= f + 5 ? "PASS" : "MISS")}')"
done
for target in pgrail policy; do
  p=$(value churn_C tps "$target"); d=$(value churn_C tps direct)
  bar "churn -C TPS: $target >= 0.95x direct" "$(fmt %.0f "$p") vs $(fmt %.0f "$d"): $(ratio "$p" "$d")" "$(at_least "$p" 0.95 "$d")"
done
for target in pgrail policy; do
  p=$(value copy_out rows_per_s "$target"); d=$(value copy_out rows_per_s direct)
  bar "COPY out rows/s: $target >= 0.95x direct" "$(fmt %.0f "$p") vs $(fmt %.0f "$d"): $(ratio "$p" "$d")" "$(at_least "$p" 0.95 "$d")"
done
for target in pgrail policy; do
  p=$(value idle kib_per_connection "$target")
  bar "idle RSS: $target <= 16 KiB per connection" "$(fmt %.1f "$p") KiB" "$(at_most "$p" 1 16)"
done
if [[ -s $failed_runs ]]; then
  echo "FAILED runs, left out of every figure above ($(wc -l <"$failed_runs")): $(tr '\n' ';' <"$failed_runs")"
fi
echo "Bars: $passes PASS, $misses MISS, $unavailable n/a. (The unique-text bars, +20% at 2 KB and 2x at 10 KB, are bench/unique_text_bench.sh's.)"

if [[ -n $alt_bin ]]; then
  echo
  echo "pgrail_alt ($alt_bin) against pgrail ($pgrail_bin), medians:"
  printf '  %-14s %22s %22s %22s %22s\n' benchmark tps "CPU us" "context switches" "system calls"
  for name in c8_simple c8_extended c8_prepared c1_simple churn_C copy_out; do
    per=txn; t=tps
    [[ $name == copy_out ]] && { per=krow; t=rows_per_s; }
    printf '  %-14s' "$name"
    for metric in "$t" "cpu_us_per_$per" "cs_per_$per" "syscalls_per_$per"; do
      a=$(value "$name" "$metric" pgrail_alt); p=$(value "$name" "$metric" pgrail)
      printf ' %22s' "$(fmt %.1f "$a")/$(fmt %.1f "$p")=$(ratio "$a" "$p")"
    done
    echo
  done
fi

echo
echo "raw results: kept in ${BENCH_KEEP:-(set BENCH_KEEP=FILE to keep)}"
if [[ -n ${BENCH_KEEP:-} ]]; then cp "$results" "$BENCH_KEEP"; fi
