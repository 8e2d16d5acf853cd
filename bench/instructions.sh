#!/usr/bin/env bash
# Benchmark (not a test): the proxies' own instructions per transaction, counted by Valgrind's
# callgrind, for pgrail without a policy, pgrail enforcing policies/default.yaml and PgBouncer
# (session mode), each alone under pgbench -S -c 1 in the simple, extended and prepared protocols.
#
#   bench/instructions.sh [PGRAIL_BIN]    # default build/pgrail; about 3 minutes
#   COUNT=2000 bench/instructions.sh      # transactions per measurement (default 1000)
#   TLS=1 bench/instructions.sh           # TLS on the client leg of both proxies (pgbench
#                                         # sslmode=require; the test CA's certificate)
#   PROFILES=DIR bench/instructions.sh    # keep callgrind's profiles (callgrind_annotate reads them)
#
# Why: on a shared 2-core machine the TPS and CPU time of bench/run.sh move by 20-50% between
# rounds (how the scheduler pairs pgbench's, the proxies' and PostgreSQL's threads), far more than
# a change of user-space code moves them. Instructions executed in user space are exact and the
# same every run: the instrument for that code (the kernel's share, system calls and wake-ups,
# is bench/run.sh's). Each figure is the difference between a run of 3 x COUNT and one of COUNT
# transactions on one connection, divided by 2 x COUNT: the login and pgbench's start cancel out.
# The proxies run one I/O thread each under callgrind (which serialises threads anyway).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
COUNT=${COUNT:-1000}
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || { echo "bench: COUNT must be a positive number" >&2; exit 1; }
TLS=${TLS:-0}
[[ $TLS == 0 || $TLS == 1 ]] || { echo "bench: TLS must be 0 or 1" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "bench: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
command -v pgbouncer >/dev/null || { echo "bench: pgbouncer not installed (scripts/install-deps.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/pgrail-instr.XXXXXX)
chmod 755 "$work"
mkdir -m 1777 "$work/callgrind"  # (PgBouncer's, run as postgres, is written there too)
target_pid=''
cleanup() {
  if [[ -n $target_pid ]]; then kill "$target_pid" 2>/dev/null || true; fi
  "$repo/scripts/test-cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  if [[ -n ${PROFILES:-} ]]; then mkdir -p "$PROFILES" && cp "$work"/callgrind/*.out.* "$PROFILES/" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "bench: starting PostgreSQL 15"
"$repo/scripts/test-cluster.sh" start "$work/cluster" "$pgrail_bin" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/env"
kill "$PGRAIL_PID" 2>/dev/null || true  # the cluster's own pgrail: each target runs under callgrind below
export PGDATABASE=$PG_DATABASE PGUSER=app_owner PGPASSWORD=app_owner
PGSSLMODE=disable "$PG_BIN/pgbench" -h "$PG_HOST" -p "$PG_PORT" -i -s 1 -q >/dev/null 2>&1
if [[ $TLS == 1 ]]; then
  "$repo/scripts/test-certs.sh" "$work/certs" >/dev/null
  export PGSSLMODE=require
else
  export PGSSLMODE=disable
fi

# run_target NAME PORT COMMAND...: the command under callgrind (as OWNER, default root), then
# instructions per transaction in each protocol.
declare -A result
run_target() {
  local name=$1 port=$2 owner=$3
  shift 3
  local out=$work/callgrind/$name.out run=()
  [[ $owner != root ]] && run=(runuser -u "$owner" --)
  "${run[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$work/callgrind/$name.log" 2>&1 &
  target_pid=$!
  for _ in $(seq 300); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
  local vg_pid
  vg_pid=$(pgrep -f -- "--callgrind-out-file=$out" | tail -1)
  local control=(callgrind_control)
  [[ $owner != root ]] && control=(runuser -u "$owner" -- callgrind_control)
  "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -S -c 1 -t 200 >/dev/null 2>&1  # warm: caches, first login
  local dump=0
  for mode in simple extended prepared; do
    local counts=()
    for transactions in "$COUNT" $((3 * COUNT)); do
      "${control[@]}" -z "$vg_pid" >/dev/null 2>&1
      "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -S -c 1 -t "$transactions" -M "$mode" >/dev/null 2>&1 ||
        { echo "bench: pgbench through $name failed" >&2; exit 1; }
      "${control[@]}" -d "$mode-$transactions" "$vg_pid" >/dev/null 2>&1
      dump=$((dump + 1))
      for _ in $(seq 50); do [[ -s $out.$dump ]] && break; sleep 0.1; done
      counts+=("$(sed -n 's/^summary: //p' "$out.$dump")")
    done
    result[$name,$mode]=$(((counts[1] - counts[0]) / (2 * COUNT)))
  done
  kill "$vg_pid" 2>/dev/null || true
  wait "$target_pid" 2>/dev/null || true
  target_pid=''
}

pgrail_config() {  # NAME [POLICY]: the cluster's pgrail config on a port of its own, one I/O thread
  local port
  port=$(free_port)
  sed -E "s/^listen: .*/listen: {host: 127.0.0.1, port: $port}/; s/^workers: .*/workers: 1/" "$PGRAIL_CONFIG" \
    >"$work/$1.yaml"
  if [[ -n ${2:-} ]]; then printf 'policy: %s\naudit: {file: %s}\n' "$2" "$work/$1-audit.jsonl" >>"$work/$1.yaml"; fi
  if [[ $TLS == 1 ]]; then
    printf 'tls:\n  client: {mode: require, cert_file: %s, key_file: %s}\n' "$work/certs/server.crt" \
      "$work/certs/server.key" >>"$work/$1.yaml"
  fi
  echo "$port"
}

echo "bench: pgrail ($pgrail_bin), no policy"
port=$(pgrail_config pgrail)
run_target pgrail "$port" root "$pgrail_bin" serve --config "$work/pgrail.yaml"
echo "bench: pgrail, policies/default.yaml"
port=$(pgrail_config policy "$repo/policies/default.yaml")
run_target policy "$port" root "$pgrail_bin" serve --config "$work/policy.yaml"

echo "bench: PgBouncer"
bouncer_dir=$work/pgbouncer
bouncer_port=$(free_port)
write_bouncer_config "$bouncer_dir" "$bouncer_port" "$PG_HOST"
if [[ $TLS == 1 ]]; then  # (a copy: PgBouncer runs as postgres, and the key is root's own)
  cp "$work/certs/server.crt" "$work/certs/server.key" "$bouncer_dir/"
  printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
    "$bouncer_dir/server.crt" "$bouncer_dir/server.key" >>"$bouncer_dir/pgbouncer.ini"
fi
owner=root
if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$bouncer_dir"; owner=postgres; fi
run_target pgbouncer "$bouncer_port" "$owner" pgbouncer "$bouncer_dir/pgbouncer.ini"

echo
echo "instructions per transaction (user space, pgbench -S -c 1, $COUNT and $((3 * COUNT)) transactions$(
  [[ $TLS == 1 ]] && echo ', TLS on the client leg'))"
printf '%-10s %10s %10s %10s %16s %16s\n' protocol pgrail policy pgbouncer pgrail/bouncer policy/bouncer
for mode in simple extended prepared; do
  p=${result[pgrail,$mode]} q=${result[policy,$mode]} b=${result[pgbouncer,$mode]}
  printf '%-10s %10d %10d %10d %15.2fx %15.2fx\n' "$mode" "$p" "$q" "$b" \
    "$(awk -v a="$p" -v b="$b" 'BEGIN{print a/b}')" "$(awk -v a="$q" -v b="$b" 'BEGIN{print a/b}')"
done
