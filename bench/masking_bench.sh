#!/usr/bin/env bash
# Benchmark (not a test): what masking costs a large result (issue 22's bar: masking one column
# costs at most 10% of throughput on a SELECT of 1 million rows, against the same query through
# pgrail without masking, in the same run). One pgrail, one policy, two users: `agent` (rule
# `masked`: sensitive_columns masks bench_users.secret) and `plainuser` (rule `plain`: nothing
# masked). Each round runs the same SELECT as both users, in alternating order, and a third time
# as `migrator` (method null) and straight to PostgreSQL for reference; prints each round, the
# medians (rows/s) and the ratios to the unmasked run.
#
#   bench/masking_bench.sh [PGRAIL_BIN]     # ROUNDS=7 ROWS=1000000 METHOD=hash
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
ROUNDS=${ROUNDS:-7}
ROWS=${ROWS:-1000000}
METHOD=${METHOD:-hash}
[[ -x $pgrail_bin ]] || { echo "masking_bench: no pgrail binary at $pgrail_bin" >&2; exit 1; }

work=$(mktemp -d /tmp/pgrail-masking-bench.XXXXXX)
pid=''
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  "$repo/scripts/test-cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

PGRAIL_LOG_LEVEL=warn "$repo/scripts/test-cluster.sh" start "$work/cluster" "$pgrail_bin" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/env"
psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)

PGPASSWORD=app_owner "${psql[@]}" -h "$PG_HOST" -p "$PG_PORT" -U app_owner -d "$PG_DATABASE" <<SQL
DROP TABLE IF EXISTS bench_users;
CREATE TABLE bench_users (id int PRIMARY KEY, email text, secret text, created_at timestamptz);
INSERT INTO bench_users SELECT g, 'user' || g || '@example.com', md5(g::text), now() FROM generate_series(1, $ROWS) g;
ANALYZE bench_users;
GRANT SELECT ON bench_users TO agent, plainuser, migrator;
SQL

head -c 32 /dev/urandom | base64 >"$work/mask.key"
cat >"$work/policy.yaml" <<EOF
version: 1
masking: {key_file: $work/mask.key}
rules:
  - name: masked
    match: {users: [agent]}
    sensitive_columns: {action: mask, method: $METHOD, columns: [bench_users.secret]}
  - name: nulled
    match: {users: [migrator]}
    sensitive_columns: {action: mask, method: "null", columns: [bench_users.secret]}
  - name: plain
EOF
port=$(free_port)
sed -E "s/^listen: .*/listen: {host: 127.0.0.1, port: $port}/" "$PGRAIL_CONFIG" >"$work/pgrail.yaml"
printf 'policy: %s\naudit: {file: %s}\ncatalog: {conninfo: "host=%s port=%s user=app_owner password=app_owner"}\n' \
  "$work/policy.yaml" "$work/audit.jsonl" "$PG_HOST" "$PG_PORT" >>"$work/pgrail.yaml"
setsid "$pgrail_bin" serve --config "$work/pgrail.yaml" 2>"$work/pgrail.log" &
pid=$!
for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done

query="SELECT id, email, secret, created_at FROM bench_users"
# Rows per second of one run of the query as USER through PORT (the client discards the rows).
run_once() {
  local user=$1 target_port=$2 start end
  start=$(date +%s.%N)
  PGPASSWORD=$user "${psql[@]}" -At -h 127.0.0.1 -p "$target_port" -U "$user" -d "$PG_DATABASE" -c "$query" >"$work/out"
  end=$(date +%s.%N)
  [[ $(wc -l <"$work/out") -eq $ROWS ]] || { echo "masking_bench: $user got $(wc -l <"$work/out") rows" >&2; exit 1; }
  awk -v rows="$ROWS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", rows / (e - s) }'
}
# The masked column really is masked, the plain one is not (row 1's secret is md5('1')).
first_secret=c4ca4238a0b923820dcc509a6f75849b
run_once agent "$port" >/dev/null
grep -q "|$first_secret|" "$work/out" && { echo "masking_bench: agent's result is not masked" >&2; exit 1; }
run_once plainuser "$port" >/dev/null
grep -q "|$first_secret|" "$work/out" || { echo "masking_bench: plainuser's result is masked" >&2; exit 1; }

masked=() plain=() nulled=() direct=()
echo "masking_bench: $ROWS rows per SELECT, method $METHOD, $ROUNDS rounds (rows/s)"
printf '%-6s %12s %12s %12s %12s\n' round masked plain "null" direct
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then
    m=$(run_once agent "$port"); p=$(run_once plainuser "$port")
  else
    p=$(run_once plainuser "$port"); m=$(run_once agent "$port")
  fi
  n=$(run_once migrator "$port")
  d=$(run_once agent "$PG_PORT")
  masked+=("$m") plain+=("$p") nulled+=("$n") direct+=("$d")
  printf '%-6s %12s %12s %12s %12s\n' "$round" "$m" "$p" "$n" "$d"
done
mm=$(printf '%s\n' "${masked[@]}" | median)
pm=$(printf '%s\n' "${plain[@]}" | median)
nm=$(printf '%s\n' "${nulled[@]}" | median)
dm=$(printf '%s\n' "${direct[@]}" | median)
printf '%-6s %12s %12s %12s %12s\n' median "$mm" "$pm" "$nm" "$dm"
awk -v m="$mm" -v p="$pm" -v n="$nm" -v d="$dm" 'BEGIN {
  printf "masked/plain %.3f (cost %.1f%%)   null/plain %.3f   plain/direct %.3f\n", m / p, 100 * (1 - m / p), n / p, p / d
}'
