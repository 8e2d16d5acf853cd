# Shared by the bench scripts (sourced, not run).

# A free TCP port below Linux's ephemeral range.
free_port() {
  for _ in $(seq 100); do
    local p=$((20000 + RANDOM % 12000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
  return 1
}

# start_policy_pgrail BIN DIR: a second pgrail like the test cluster's ($PGRAIL_CONFIG), enforcing
# policies/default.yaml with its audit in DIR; sets policy_port and policy_pid. setsid: a session,
# and so a scheduler autogroup, of its own like the other proxies; sharing pgbench's would halve
# its CPU share and bias every ratio against it.
start_policy_pgrail() {
  local bin=$1 dir=$2 repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  policy_port=$(free_port)
  sed -E "s/^listen: .*/listen: {host: 127.0.0.1, port: $policy_port}/" "$PGRAIL_CONFIG" >"$dir/pgrail-policy.yaml"
  printf 'policy: %s\naudit: {file: %s}\n' "$repo/policies/default.yaml" "$dir/audit.jsonl" >>"$dir/pgrail-policy.yaml"
  setsid "$bin" serve --config "$dir/pgrail-policy.yaml" 2>"$dir/pgrail-policy.log" &
  policy_pid=$!
  for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$policy_port" && return 0; sleep 0.1; done
  cat "$dir/pgrail-policy.log" >&2
  return 1
}

# The TPS pgbench printed into FILE.
tps() { sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$1" | head -1; }

# The median of the numbers on stdin, one per line (empty for none).
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
