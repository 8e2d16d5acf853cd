#!/usr/bin/env bash
# Benchmark (not a test): direct PostgreSQL vs pgrail vs PgBouncer (session mode), interleaved
# and repeated; prints medians and the ratios to direct and to PgBouncer.
#
#   bench/run.sh [PGRAIL_BIN]          # default build/pgrail; about 8 minutes with the defaults
#   REPEATS=3 DURATION=10 SHORT=5 COPY_ROWS=3000000 COPY_REPEATS=3 IDLE=500 bench/run.sh
#   UPSTREAM=unix bench/run.sh         # both proxies reach PostgreSQL through its Unix socket
#   PGRAIL_WORKERS=1 bench/run.sh      # pgrail's I/O threads (default: one per core)
#   TLS=1 bench/run.sh                 # TLS on the client leg of both proxies (pgbench sslmode=require;
#                                      # direct stays plain TCP; no floor relay: it speaks no TLS)
# With build/bench/relay_floor_bench built (cmake --build build --target relay_floor_bench), a
# relay that forwards bytes and parses nothing joins the -c 8, -c 1 and churn runs: the floor any
# proxy stands on, so each bar can be read against what forwarding alone costs in the same run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}     # seconds per -c 8 run
SHORT=${SHORT:-5}            # seconds per -c 1 and -C run
COPY_ROWS=${COPY_ROWS:-3000000}
COPY_REPEATS=${COPY_REPEATS:-3}   # COPYs per target and round
IDLE=${IDLE:-500}
UPSTREAM=${UPSTREAM:-tcp}
TLS=${TLS:-0}
[[ $UPSTREAM == tcp || $UPSTREAM == unix ]] || { echo "bench: UPSTREAM must be tcp or unix" >&2; exit 1; }
[[ -x $pgrail_bin ]] || { echo "bench: no pgrail binary at $pgrail_bin" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "bench: pgbouncer not installed (scripts/install-deps.sh)" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # 500 idle clients need > 1000 descriptors
work=$(mktemp -d /tmp/pgrail-bench.XXXXXX)
bouncer_pid=''
policy_pid=''
floor_pid=''
cleanup() {
  if [[ -n $bouncer_pid ]]; then kill "$bouncer_pid" 2>/dev/null || true; fi
  if [[ -n $policy_pid ]]; then kill "$policy_pid" 2>/dev/null || true; fi
  if [[ -n $floor_pid ]]; then kill "$floor_pid" 2>/dev/null || true; fi
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
mkdir -p "$bouncer_dir"
cat >"$bouncer_dir/pgbouncer.ini" <<EOF
[databases]
$PG_DATABASE = host=$([[ $UPSTREAM == unix ]] && echo "$PG_SOCKET_DIR" || echo "$PG_HOST") port=$PG_PORT dbname=$PG_DATABASE
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $bouncer_dir/userlist.txt
pool_mode = session
max_client_conn = $((IDLE + 100))
default_pool_size = $((IDLE + 20))
max_db_connections = $((IDLE + 20))
logfile = $bouncer_dir/pgbouncer.log
pidfile = $bouncer_dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
echo '"app_owner" "app_owner"' >"$bouncer_dir/userlist.txt"
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
targets=(direct pgrail pgbouncer)
extra_targets=(policy)
floor_targets=()

# The floor relay (bench/relay_floor_bench.cpp), over TCP only, with one loop per core like pgrail.
floor_bin=${FLOOR_BIN:-$repo/build/bench/relay_floor_bench}
if [[ -x $floor_bin && $UPSTREAM == tcp && $TLS != 1 ]]; then
  floor_port=$(free_port)
  setsid "$floor_bin" "$floor_port" "$PG_HOST" "$PG_PORT" "$(nproc)" &
  floor_pid=$!
  # pg_isready tries once: a relay still starting would refuse it.
  floor_ready=''
  for _ in $(seq 50); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$floor_port" -t 2 && { floor_ready=1; break; }; sleep 0.1; done
  [[ -n $floor_ready ]] || { echo "bench: the floor relay did not start" >&2; exit 1; }
  port[floor]=$floor_port
  pid_of[floor]=$floor_pid
  extra_targets+=(floor)
  floor_targets=(floor)
fi
results=$work/results.txt
: >"$results"

echo "bench: pgbench -i -s 1, a $COPY_ROWS-row table for COPY"
"$pgbench" -i -s 1 -q -n -p "$PG_PORT" >/dev/null 2>&1
"$psql" -X -q -p "$PG_PORT" -c "CREATE TABLE copy_source AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, $COPY_ROWS) AS g" -c "VACUUM ANALYZE copy_source"

clock_ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime

# pgbench run: records tps, mean latency and (for proxies) CPU microseconds per transaction.
run_pgbench() {
  local name=$1 target=$2; shift 2
  local before=0 after output tps latency txns
  [[ -n ${pid_of[$target]:-} ]] && before=$(cpu_ticks "${pid_of[$target]}")
  output=$(PGSSLMODE=$(sslmode_for "$target") "$pgbench" -n -S -p "${port[$target]}" "$@" 2>&1) ||
    { echo "$output" >&2; return 1; }
  [[ -n ${pid_of[$target]:-} ]] && after=$(cpu_ticks "${pid_of[$target]}")
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$output" | head -1)
  latency=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$output")
  txns=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$output")
  grep -q "number of failed transactions: 0 " <<<"$output" || echo "bench: $name $target had failed transactions" >&2
  echo "$name tps $target $tps" >>"$results"
  echo "$name latency_us $target $(awk -v l="$latency" 'BEGIN{printf "%.1f", l * 1000}')" >>"$results"
  if [[ -n ${pid_of[$target]:-} ]]; then
    echo "$name cpu_us_per_txn $target $(awk -v d=$((after - before)) -v t="$txns" -v hz="$clock_ticks" \
      'BEGIN{printf "%.1f", d / hz * 1e6 / t}')" >>"$results"
  fi
  printf '  %-22s %-10s %10.0f tps\n' "$name" "$target" "$tps"
}

run_copy() {
  local target=$1 start end
  start=$(date +%s%N)
  PGSSLMODE=$(sslmode_for "$target") "$psql" -X -q -p "${port[$target]}" -c "COPY copy_source TO STDOUT" >/dev/null
  end=$(date +%s%N)
  local seconds; seconds=$(awk -v ns=$((end - start)) 'BEGIN{printf "%.3f", ns / 1e9}')
  echo "copy_out seconds $target $seconds" >>"$results"
  echo "copy_out rows_per_s $target $(awk -v s="$seconds" -v r="$COPY_ROWS" 'BEGIN{printf "%.0f", r / s}')" >>"$results"
  printf '  %-22s %-10s %10s s\n' "copy_out" "$target" "$seconds"
}

# The targets in an order that starts one further each round: the machine drifts within a
# round (neighbours, caches), and a fixed order would hand that drift to the same target.
rotated() {
  local by=$1; shift
  local items=("$@")
  for ((i = 0; i < ${#items[@]}; i++)); do echo "${items[(i + by) % ${#items[@]}]}"; done
}

for repeat in $(seq "$REPEATS"); do
  echo "bench: round $repeat/$REPEATS"
  mapfile -t with_policy < <(rotated "$repeat" "${targets[@]}" "${extra_targets[@]}")
  mapfile -t in_turn < <(rotated "$repeat" "${targets[@]}")
  mapfile -t with_floor < <(rotated "$repeat" "${targets[@]}" "${floor_targets[@]}")
  for mode in simple extended prepared; do
    for target in "${with_policy[@]}"; do run_pgbench "c8_$mode" "$target" -M "$mode" -c 8 -j 2 -T "$DURATION"; done
  done
  for target in "${with_floor[@]}"; do run_pgbench "c1_simple" "$target" -M simple -c 1 -T "$SHORT"; done
  # pgrail does not pool: connection churn is compared with direct (and the floor) only.
  for target in $(rotated "$repeat" direct pgrail "${floor_targets[@]}"); do run_pgbench "churn_C" "$target" -M simple -c 8 -j 2 -C -T "$SHORT"; done
  # One COPY takes about a second, where the machine's noise is largest: several per round.
  for copy in $(seq "$COPY_REPEATS"); do
    for target in $(rotated "$copy" "${in_turn[@]}"); do run_copy "$target"; done
  done
done

# Idle connections: pgbench clients that connect and then only sleep.
echo "bench: $IDLE idle connections"
printf '\\sleep 12 s\n' >"$work/idle.sql"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
for target in pgrail pgbouncer; do
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
  echo "idle rss_before_kib $target $before" >>"$results"
  echo "idle rss_with_idle_kib $target $during" >>"$results"
  echo "idle kib_per_connection $target $per" >>"$results"
  printf '  %-10s VmRSS %s KiB -> %s KiB with %s idle clients (%s server backends idle): %s KiB each\n' \
    "$target" "$before" "$during" "$IDLE" "$connected" "$per"
done

# Medians and ratios.
value() { awk -v n="$1" -v m="$2" -v t="$3" '$1 == n && $2 == m && $3 == t {print $4}' "$results" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b}'; }

echo
[[ $TLS == 1 ]] && echo "Client leg TLS: pgbench and psql to pgrail and to PgBouncer with sslmode=require (TLS 1.3, the test CA's P-256 certificate); direct in plain TCP."
echo "Medians of $REPEATS interleaved rounds (COPY: $((REPEATS * COPY_REPEATS)) runs each), proxies reach PostgreSQL over $UPSTREAM, pgrail workers: ${PGRAIL_WORKERS:-one per core} ($(nproc) cores, $(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-28s %11s %11s %11s %14s %16s\n' benchmark direct pgrail pgbouncer pgrail/direct pgrail/pgbouncer
for name in c8_simple c8_extended c8_prepared c1_simple churn_C; do
  d=$(value "$name" tps direct); p=$(value "$name" tps pgrail); b=$(value "$name" tps pgbouncer)
  printf '%-28s %11.0f %11.0f %11s %14s %16s\n' "$name tps" "$d" "$p" "$(awk -v b="$b" 'BEGIN{print b == "" ? "-" : sprintf("%.0f", b)}')" \
    "$(ratio "$p" "$d")" "$(ratio "$p" "$b")"
done
d=$(value c1_simple latency_us direct); p=$(value c1_simple latency_us pgrail); b=$(value c1_simple latency_us pgbouncer)
printf '%-28s %11s %11s %11s %14s %16s\n' "c1 latency (us)" "$d" "$p" "$b" \
  "$(awk -v a="$p" -v b="$d" 'BEGIN{printf "%+.1f us", a - b}')" "$(awk -v a="$b" -v b="$d" 'BEGIN{printf "(bouncer %+.1f)", a - b}')"
d=$(value copy_out rows_per_s direct); p=$(value copy_out rows_per_s pgrail); b=$(value copy_out rows_per_s pgbouncer)
printf '%-28s %11s %11s %11s %14s %16s\n' "COPY TO rows/s" "$d" "$p" "$b" "$(ratio "$p" "$d")" "$(ratio "$p" "$b")"
for name in c8_simple c8_extended c8_prepared c1_simple; do
  printf '%-28s %11s %11s %11s\n' "$name CPU us/txn" "-" "$(value "$name" cpu_us_per_txn pgrail)" \
    "$(value "$name" cpu_us_per_txn pgbouncer)"
done
printf '%-28s %11s %11s %11s\n' "churn_C CPU us/txn" "-" "$(value churn_C cpu_us_per_txn pgrail)" "-"
printf '%-28s %11s %11s %11s\n' "idle KiB per connection" "-" "$(value idle kib_per_connection pgrail)" \
  "$(value idle kib_per_connection pgbouncer)"
echo
printf '%-28s %11s %15s %16s %14s\n' "policy cost" pgrail "pgrail+policy" "policy/pgrail" "CPU us/txn"
for name in c8_simple c8_extended c8_prepared; do
  p=$(value "$name" tps pgrail); q=$(value "$name" tps policy)
  printf '%-28s %11.0f %15.0f %16s %14s\n' "$name tps" "$p" "$q" "$(ratio "$q" "$p")" "$(value "$name" cpu_us_per_txn policy)"
done
if [[ -n $floor_pid ]]; then
  echo
  printf '%-28s %11s %11s %11s %16s %14s\n' "floor relay" floor pgrail pgbouncer floor/pgbouncer "CPU us/txn"
  for name in c8_simple c8_extended c8_prepared; do
    f=$(value "$name" tps floor); p=$(value "$name" tps pgrail); b=$(value "$name" tps pgbouncer)
    printf '%-28s %11.0f %11.0f %11.0f %16s %14s\n' "$name tps" "$f" "$p" "$b" "$(ratio "$f" "$b")" \
      "$(value "$name" cpu_us_per_txn floor)"
  done
  d=$(value c1_simple latency_us direct); f=$(value c1_simple latency_us floor)
  printf '%-28s %11s %11s %11s %16s %14s\n' "c1 latency (us)" "$f" "$(value c1_simple latency_us pgrail)" \
    "$(value c1_simple latency_us pgbouncer)" "$(awk -v a="$f" -v b="$d" 'BEGIN{printf "floor %+.1f us", a - b}')" \
    "$(value c1_simple cpu_us_per_txn floor)"
  d=$(value churn_C tps direct); f=$(value churn_C tps floor)
  printf '%-28s %11.0f %11.0f %11s %16s %14s\n' "churn_C tps" "$f" "$(value churn_C tps pgrail)" "-" \
    "floor/direct $(ratio "$f" "$d")" "$(value churn_C cpu_us_per_txn floor)"
fi
echo
echo "raw results: kept in ${BENCH_KEEP:-(set BENCH_KEEP=FILE to keep)}"
if [[ -n ${BENCH_KEEP:-} ]]; then cp "$results" "$BENCH_KEEP"; fi
