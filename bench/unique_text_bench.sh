#!/usr/bin/env bash
# Benchmark (not a test): the agent's real workload, ad hoc statements whose every text is new
# (issue 21 item 3). Generated reads (SELECT with a long IN list, a CASE, a three-way join) and
# guarded writes (multi-row INSERT, UPDATE ... WHERE id IN (...)) of 0.1 to 10 KB, each holding a
# fresh identifier so that no cache of pgrail's (text or shape) can answer it, sent as simple
# Queries by bench/unique_text_bench (libpq) as user `agent` to: PostgreSQL directly, pgrail
# without a policy (the test cluster's), and pgrail enforcing policies/default.yaml. Interleaved
# rounds in rotating order; prints per round and the medians of: latency per statement at one
# client (median and p90, us), throughput at CLIENTS clients (statements/s), and pgrail's analysis
# CPU time per text and per KB (sql::analyze plus the default policy's decision, no I/O). Ends with
# PASS/MISS against issue 21's bar: the policy adds at most 20% to direct latency at 2 KB and at
# most 2x at 10 KB.
#
#   bench/unique_text_bench.sh [PGRAIL_BIN]
#   ROUNDS=5 SIZES="100 1024 2048 5120 10240" KINDS="read write" COUNT=100 CLIENTS=8 SECONDS_PER_RUN=3
#   (KINDS may also name `commented`: the read with a comment line first, as agents write it)
#   THROUGHPUT_SIZES="2048 10240"   # sizes measured at CLIENTS clients ("" for none)
# Needs build/bench/unique_text_bench (cmake --build build --target unique_text_bench).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
driver=${DRIVER:-$repo/build/bench/unique_text_bench}
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-100 1024 2048 5120 10240}
KINDS=${KINDS:-read write}
COUNT=${COUNT:-100}
CLIENTS=${CLIENTS:-8}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
THROUGHPUT_SIZES=${THROUGHPUT_SIZES-2048 10240}
[[ -x $pgrail_bin ]] || { echo "unique_text_bench: no pgrail binary at $pgrail_bin" >&2; exit 1; }
[[ -x $driver ]] || { echo "unique_text_bench: no driver at $driver (cmake --build build --target unique_text_bench)" >&2; exit 1; }

work=$(mktemp -d /tmp/pgrail-unique-bench.XXXXXX)
policy_pid=''
cleanup() {
  if [[ -n $policy_pid ]]; then kill "$policy_pid" 2>/dev/null || true; fi
  "$repo/scripts/test-cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

PGRAIL_LOG_LEVEL=warn "$repo/scripts/test-cluster.sh" start "$work/cluster" "$pgrail_bin" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/env"
start_policy_pgrail "$pgrail_bin" "$work" || exit 1

PGPASSWORD=app_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U app_owner -d "$PG_DATABASE" <<'SQL'
DROP TABLE IF EXISTS bench_unique, bench_unique_log;
CREATE TABLE bench_unique (id bigint PRIMARY KEY, k int NOT NULL, v text, n numeric NOT NULL DEFAULT 0);
INSERT INTO bench_unique SELECT g, 1 + (g * 7919) % 10000, 'v' || g, g FROM generate_series(1, 10000) g;
CREATE TABLE bench_unique_log (batch int, k int, v text, n numeric);
ANALYZE bench_unique;
GRANT SELECT, INSERT, UPDATE ON bench_unique, bench_unique_log TO agent;
SQL

declare -A port=([direct]=$PG_PORT [nopolicy]=$PGRAIL_PORT [policy]=$policy_port)
targets=(direct nopolicy policy)
conninfo() { echo "host=127.0.0.1 port=${port[$1]} dbname=$PG_DATABASE user=agent password=agent"; }

# Every text analysed once by each pgrail before the rounds: a refusal ends the run here.
for target in nopolicy policy; do
  for kind in $KINDS; do "$driver" latency "$(conninfo "$target")" 2048 "$kind" 2 >/dev/null; done
done

# results[<metric>,<size>,<kind>,<target>] = one value per round, space-separated
declare -A results
echo "unique_text_bench: $ROUNDS rounds; sizes $SIZES; $COUNT statements per latency run; $CLIENTS clients x ${SECONDS_PER_RUN}s per throughput run"
echo "machine: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1), $(uname -r)"
printf '%-5s %-6s %-9s %-9s %10s %10s %12s\n' round size kind target median_us p90_us stmts_per_s
for round in $(seq "$ROUNDS"); do
  # Rotate the order of the targets from round to round.
  order=("${targets[@]:$((round % 3))}" "${targets[@]:0:$((round % 3))}")
  for size in $SIZES; do
    for kind in $KINDS; do
      for target in "${order[@]}"; do
        read -r med p90 < <("$driver" latency "$(conninfo "$target")" "$size" "$kind" "$COUNT")
        results[med,$size,$kind,$target]+="$med "
        results[p90,$size,$kind,$target]+="$p90 "
        tput='-'
        if [[ " $THROUGHPUT_SIZES " == *" $size "* ]]; then
          tput=$("$driver" throughput "$(conninfo "$target")" "$size" "$kind" "$CLIENTS" "$SECONDS_PER_RUN")
          results[tps,$size,$kind,$target]+="$tput "
        fi
        printf '%-5s %-6s %-9s %-9s %10s %10s %12s\n' "$round" "$size" "$kind" "$target" "$med" "$p90" "$tput"
      done
    done
  done
done

# The median of one results[] entry (its values split on spaces on purpose).
# shellcheck disable=SC2086
med_of() { printf '%s\n' ${results[$1]:-} | median; }

echo
echo "medians over $ROUNDS rounds (latency at 1 client in us; throughput at $CLIENTS clients in statements/s)"
printf '%-6s %-9s %10s %10s %10s %8s %8s %10s %10s %10s %8s\n' size kind direct nopolicy policy \
  nopol/dir pol/dir tps_direct tps_nopol tps_policy tps_p/d
verdict=PASS
for size in $SIZES; do
  for kind in $KINDS; do
    d=$(med_of "med,$size,$kind,direct"); n=$(med_of "med,$size,$kind,nopolicy"); p=$(med_of "med,$size,$kind,policy")
    td=$(med_of "tps,$size,$kind,direct"); tn=$(med_of "tps,$size,$kind,nopolicy"); tp=$(med_of "tps,$size,$kind,policy")
    awk -v s="$size" -v k="$kind" -v d="$d" -v n="$n" -v p="$p" -v td="$td" -v tn="$tn" -v tp="$tp" 'BEGIN {
      printf "%-6s %-9s %10.0f %10.0f %10.0f %8.3f %8.3f %10s %10s %10s %8s\n", s, k, d, n, p, n / d, p / d,
        td == "" ? "-" : td, tn == "" ? "-" : tn, tp == "" ? "-" : tp, td == "" ? "-" : sprintf("%.3f", tp / td) }'
  done
done

echo
echo "pgrail's analysis per new text (CPU, sql::analyze + the default policy's decision, one thread)"
printf '%-6s %-9s %12s %12s\n' size kind us_per_text us_per_kb
for size in $SIZES; do
  for kind in $KINDS; do
    read -r per_text per_kb < <("$driver" analysis "$size" "$kind" "$repo/policies/default.yaml")
    printf '%-6s %-9s %12s %12s\n' "$size" "$kind" "$per_text" "$per_kb"
  done
done

echo
# The bar: policy latency / direct latency per statement at 2 KB <= 1.2, at 10 KB <= 2.0 (each kind).
for bar in "2048 1.2" "10240 2.0"; do
  read -r size limit <<<"$bar"
  [[ " $SIZES " == *" $size "* ]] || continue
  for kind in $KINDS; do
    d=$(med_of "med,$size,$kind,direct"); p=$(med_of "med,$size,$kind,policy")
    result=$(awk -v d="$d" -v p="$p" -v l="$limit" 'BEGIN { print (p / d <= l) ? "PASS" : "MISS" }')
    [[ $result == PASS ]] || verdict=MISS
    awk -v s="$size" -v k="$kind" -v d="$d" -v p="$p" -v l="$limit" -v r="$result" 'BEGIN {
      printf "%s  %s B %s: pgrail with the default policy %.0f us vs direct %.0f us = %.3fx (bar <= %.1fx)\n", r, s, k, p, d, p / d, l }'
  done
done
echo "unique-text bar: $verdict"
