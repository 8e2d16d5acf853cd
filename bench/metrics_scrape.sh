#!/usr/bin/env bash
# Benchmark (not a test): what scraping /metrics costs a busy pgrail (issue 20's bar: under 1% of
# TPS when scraped every 100 ms during pgbench -S -c 8). Two pgrails with the default policy and
# the HTTP listener run side by side, one pgbench drives each AT THE SAME TIME (-c 4 each, 8 in
# all), and only one of them is scraped: whatever else happens on the machine happens to both, so
# the ratio of their TPS is the scraping's cost. The roles swap every round (which instance is
# scraped), so a difference between the two instances does not pass for a cost. Prints each round
# and the median ratio (scraped / not scraped).
#
#   bench/metrics_scrape.sh [PGRAIL_BIN]     # ROUNDS=6 DURATION=10 INTERVAL=0.1
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
pgrail_bin=$(realpath "${1:-${PGRAIL_BIN:-$repo/build/pgrail}}")
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10}
INTERVAL=${INTERVAL:-0.1}
[[ -x $pgrail_bin ]] || { echo "metrics_scrape: no pgrail binary at $pgrail_bin" >&2; exit 1; }

work=$(mktemp -d /tmp/pgrail-metrics-scrape.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$repo/scripts/test-cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

PGRAIL_LOG_LEVEL=warn "$repo/scripts/test-cluster.sh" start "$work/cluster" "$pgrail_bin" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/env"
export PGHOST=$PG_HOST PGDATABASE=$PG_DATABASE PGUSER=app_owner PGPASSWORD=app_owner

ports=()
http_ports=()
for name in a b; do
  port=$(free_port)
  http=$(free_port)
  sed -E "s/^listen: .*/listen: {host: 127.0.0.1, port: $port}/" "$PGRAIL_CONFIG" >"$work/$name.yaml"
  printf 'policy: %s\naudit: {file: %s}\nhttp: {port: %s}\n' "$repo/policies/default.yaml" "$work/$name.jsonl" \
    "$http" >>"$work/$name.yaml"
  setsid "$pgrail_bin" serve --config "$work/$name.yaml" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  ports+=("$port")
  http_ports+=("$http")
done

# One GET /metrics over bash's /dev/tcp (no curl needed); prints the body's size.
scrape() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
  wc -c <&3
  exec 3<&-
}
scrape "${http_ports[0]}" >/dev/null || { echo "metrics_scrape: /metrics does not answer" >&2; exit 1; }

"$PG_BIN/pgbench" -i -s 1 -q -n -p "$PG_PORT" >/dev/null 2>&1

echo "metrics_scrape: two pgrails (default policy, http on) side by side, pgbench -S -c 4 -j 1 each, one scraped every ${INTERVAL} s, ${DURATION} s x $ROUNDS"
printf '%6s %8s %10s %12s %8s %8s\n' round scraped "tps scraped" "tps quiet" ratio scrapes
ratios=()
for round in $(seq "$ROUNDS"); do
  scraped=$(((round - 1) % 2))
  quiet=$((1 - scraped))
  "$PG_BIN/pgbench" -n -S -c 4 -j 1 -T "$DURATION" -p "${ports[$scraped]}" >"$work/scraped.out" 2>&1 &
  bench_scraped=$!
  "$PG_BIN/pgbench" -n -S -c 4 -j 1 -T "$DURATION" -p "${ports[$quiet]}" >"$work/quiet.out" 2>&1 &
  bench_quiet=$!
  count=0
  while kill -0 "$bench_scraped" 2>/dev/null; do
    scrape "${http_ports[$scraped]}" >/dev/null 2>&1 && count=$((count + 1))
    sleep "$INTERVAL"
  done
  wait "$bench_scraped" "$bench_quiet"
  grep -q "number of failed transactions: 0 " "$work/scraped.out" "$work/quiet.out" ||
    echo "metrics_scrape: failed transactions" >&2
  ratio=$(awk -v a="$(tps "$work/scraped.out")" -v b="$(tps "$work/quiet.out")" 'BEGIN{printf "%.3f", a / b}')
  ratios+=("$ratio")
  printf '%6s %8s %10.0f %12.0f %7sx %8s\n' "$round" "$([[ $scraped == 0 ]] && echo a || echo b)" "$(tps "$work/scraped.out")" \
    "$(tps "$work/quiet.out")" "$ratio" "$count"
done
printf '%6s %8s %10s %12s %7sx\n' median "" "" "" "$(printf '%s\n' "${ratios[@]}" | median)"
echo "metrics_scrape: the last scrape's size: $(scrape "${http_ports[0]}") bytes"
