#!/usr/bin/env bash
# pgbench through pgrail: initialisation (COPY) and select-only runs in the simple, extended and
# prepared protocols, plus connection churn, each with every transaction processed, none failed.
set -euo pipefail

: "${PGRAIL_CLUSTER_DIR:?run through ctest (fixture cluster) or set PGRAIL_CLUSTER_DIR}"
# shellcheck disable=SC1091
source "$PGRAIL_CLUSTER_DIR/env"

export PGHOST=$PG_HOST PGPORT=$PGRAIL_PORT PGDATABASE=$PG_DATABASE PGUSER=app_owner PGPASSWORD=app_owner
pgbench=$PG_BIN/pgbench
failures=0

"$pgbench" -i -s 1 -q -n >/dev/null 2>"$PGRAIL_CLUSTER_DIR/pgbench-init.err" \
  || { cat "$PGRAIL_CLUSTER_DIR/pgbench-init.err" >&2; echo "FAIL: pgbench -i through pgrail" >&2; exit 1; }
echo "ok: pgbench -i through pgrail"

# Runs pgbench and requires clients x transactions processed and 0 failed.
check_run() {
  local name=$1 clients=$2 per_client=$3; shift 3
  local output expected=$((clients * per_client))
  if ! output=$("$pgbench" -n -S -c "$clients" -j 2 -t "$per_client" "$@" 2>&1); then
    echo "FAIL: $name: pgbench exited with an error" >&2
    echo "$output" >&2
    failures=$((failures + 1))
    return
  fi
  if ! grep -q "number of transactions actually processed: $expected/$expected" <<<"$output" \
     || ! grep -q "number of failed transactions: 0 " <<<"$output"; then
    echo "FAIL: $name" >&2
    echo "$output" >&2
    failures=$((failures + 1))
    return
  fi
  echo "ok: $name ($(grep -E '^tps' <<<"$output" | head -1))"
}

for mode in simple extended prepared; do
  check_run "pgbench -S -M $mode -c 4" 4 200 -M "$mode"
done
check_run "pgbench -S -C (a connection per transaction)" 4 50 -C

if ((failures > 0)); then
  echo "$failures pgbench run(s) failed through pgrail" >&2
  exit 1
fi
