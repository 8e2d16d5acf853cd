#!/usr/bin/env bash
# Runs pgrail in the foreground in front of a throwaway PostgreSQL 15 (removed again on exit).
#
#   scripts/demo.sh [PGRAIL_BIN]     # default: build/pgrail; Ctrl-C stops everything
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pgrail_bin=${1:-${PGRAIL_BIN:-$repo/build/pgrail}}
[[ -x $pgrail_bin ]] || { echo "demo: no pgrail binary at $pgrail_bin (build it: cmake --build build --target pgrail)" >&2; exit 1; }

dir=$(mktemp -d /tmp/pgrail-demo.XXXXXX)
pgrail_pid=''
cleanup() {
  trap - EXIT INT TERM
  if [[ -n $pgrail_pid ]]; then kill -TERM "$pgrail_pid" 2>/dev/null || true; wait "$pgrail_pid" 2>/dev/null || true; fi
  "$repo/scripts/test-cluster.sh" stop "$dir" || true
  rm -rf "$dir"
  echo "demo: pgrail stopped, throwaway cluster removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL only (roles app_owner, agent, ... with their names as passwords; database app).
PGRAIL_DIRECT=1 "$repo/scripts/test-cluster.sh" start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"

port=6432
if ss -Htln "sport = :$port" | grep -q .; then
  port=$(for _ in $(seq 100); do p=$((20000 + RANDOM % 12000)); ss -Htln "sport = :$p" | grep -q . || { echo "$p"; break; }; done)
fi
# The seed scenario: a profiles table owned by app_owner that the agent may read and write.
PGPASSWORD=app_owner "$PG_BIN/psql" -q -h "$PG_HOST" -p "$PG_PORT" -U app_owner -d app \
  -f "$repo/examples/seed.sql" -c "GRANT SELECT, INSERT, UPDATE, DELETE ON profiles TO agent" >/dev/null

cat >"$dir/pgrail.yaml" <<EOF
# pgrail demo configuration (see config/pgrail.yaml for every key)
listen: {host: 127.0.0.1, port: $port}
upstream: {host: $PG_HOST, port: $PG_PORT, connect_timeout_ms: 5000}
workers: 0
max_message_size: 67108864
log: {level: info, format: text}
policy: $repo/policies/default.yaml
audit: {file: $dir/audit.jsonl, fsync: always}
migrations:
  dir: $repo/migrations
  migrator: "host=$PG_HOST port=$PG_PORT dbname=app user=app_owner password=app_owner"
EOF

cat <<EOF

  PostgreSQL 15 (throwaway, $PG_DATA) on $PG_HOST:$PG_PORT
  pgrail on 127.0.0.1:$port, config $dir/pgrail.yaml

  Connect through pgrail (password: agent):

    psql "postgresql://agent:agent@127.0.0.1:$port/app"

  Policy policies/default.yaml, migrations from migrations/, audit lines in $dir/audit.jsonl.
  Try:  ALTER TABLE profiles ADD COLUMN timezone text;    -- refused, with a HINT
        SELECT * FROM pgrail.status();
        SELECT * FROM pgrail.migrate_up();

  Other roles: app_owner/app_owner, postgres/postgres. Ctrl-C stops pgrail and removes the cluster.

EOF
"$pgrail_bin" serve --config "$dir/pgrail.yaml" &
pgrail_pid=$!
wait "$pgrail_pid" || true
pgrail_pid=''
