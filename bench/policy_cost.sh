#!/usr/bin/env bash
# Benchmark (not a test): the default policy's cost, measured in pairs. pgrail without a policy
# and pgrail with policies/default.yaml run side by side, and one pgbench drives each AT THE SAME
# TIME (-c 4 each): whatever the neighbours do to the machine, they do to both, so the ratio of
# the two TPS figures is the policy's cost (bench/run.sh runs targets one after the other, and
# its rounds drift by more than the 3% being measured). Prints each pair and the median ratio.
#
#   bench/policy_cost.sh [PGRAIL_BIN]     # ROUNDS=5 DURATION=10
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
[[ -x $pgrail_bin ]] || { echo "policy_cost: no pgrail binary at $pgrail_bin" >&2; exit 1; }

work=$(mktemp -d /tmp/pgrail-policy-cost.XXXXXX)
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
export PGHOST=$PG_HOST PGDATABASE=$PG_DATABASE PGUSER=app_owner PGPASSWORD=app_owner

start_policy_pgrail "$pgrail_bin" "$work" || exit 1

"$PG_BIN/pgbench" -i -s 1 -q -n -p "$PG_PORT" >/dev/null 2>&1

echo "policy_cost: pgrail vs pgrail + policies/default.yaml, side by side, pgbench -S -c 4 -j 1 each, ${DURATION} s x $ROUNDS"
printf '%-10s %6s %12s %15s %8s\n' mode round pgrail "pgrail+policy" ratio
for mode in simple extended prepared; do
  ratios=()
  for round in $(seq "$ROUNDS"); do
    "$PG_BIN/pgbench" -n -S -M "$mode" -c 4 -j 1 -T "$DURATION" -p "$PGRAIL_PORT" >"$work/plain.out" 2>&1 &
    plain=$!
    "$PG_BIN/pgbench" -n -S -M "$mode" -c 4 -j 1 -T "$DURATION" -p "$policy_port" >"$work/policy.out" 2>&1 &
    with_policy=$!
    wait "$plain" "$with_policy"
    grep -q "number of failed transactions: 0 " "$work/plain.out" "$work/policy.out" || echo "policy_cost: failed transactions" >&2
    ratio=$(awk -v a="$(tps "$work/policy.out")" -v b="$(tps "$work/plain.out")" 'BEGIN{printf "%.3f", a / b}')
    ratios+=("$ratio")
    printf '%-10s %6s %12.0f %15.0f %7sx\n' "$mode" "$round" "$(tps "$work/plain.out")" "$(tps "$work/policy.out")" "$ratio"
  done
  printf '%-10s %6s %12s %15s %7sx\n' "$mode" median "" "" "$(printf '%s\n' "${ratios[@]}" | median)"
done
if grep -q . "$work/audit.jsonl" 2>/dev/null; then echo "policy_cost: the policy refused statements:" >&2; head -3 "$work/audit.jsonl" >&2; fi
