#!/usr/bin/env bash
# `pgrail serve` as an operator meets it: --help/--version, config errors naming file:line:column,
# an unreachable upstream answered FATAL 08006 while pgrail stays up, per-session log lines.
set -uo pipefail

: "${PGRAIL_CLUSTER_DIR:?run through ctest (fixture cluster) or set PGRAIL_CLUSTER_DIR}"
: "${PGRAIL_BIN:?set PGRAIL_BIN to the pgrail executable}"
# shellcheck disable=SC1091
source "$PGRAIL_CLUSTER_DIR/env"

work=$(mktemp -d /tmp/pgrail-serve-test.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# Below Linux's ephemeral range (32768+), where outgoing connections take their local ports.
free_port() {
  local p
  for _ in $(seq 100); do p=$((20000 + RANDOM % 12000)); ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return; }; done
}

# --help and --version
if "$PGRAIL_BIN" --version 2>&1 | grep -qE '^pgrail [0-9]+\.[0-9]+\.[0-9]+'; then ok "--version"; else fail "--version"; fi
if "$PGRAIL_BIN" --help 2>&1 | grep -q serve; then ok "--help lists serve"; else fail "--help"; fi
# classify prints JSON for any bytes (a LATIN1 client's text has bytes that are not UTF-8).
if printf "SELECT '\\xff\\xfe'" | "$PGRAIL_BIN" classify - | python3 -c 'import json,sys; json.loads(sys.stdin.readline())'; then
  ok "classify: JSON for text that is not UTF-8"
else
  fail "classify: JSON for text that is not UTF-8"
fi

# A bad config is refused before listening, with file:line:column of the offending node.
check_config_error() {
  local name=$1 position=$2 file=$work/$1.yaml port
  port=$(free_port)
  sed "s/@PORT@/$port/" >"$file"
  local output status
  output=$(timeout 10 "$PGRAIL_BIN" serve --config "$file" 2>&1)
  status=$?
  if ((status == 0 || status == 124)); then
    fail "$name: pgrail accepted a bad config (exit $status)"
  elif ! grep -qF "$file:$position: " <<<"$output"; then
    fail "$name: error does not name $file:$position: $output"
  elif ss -Htln "sport = :$port" | grep -q .; then
    fail "$name: pgrail listened with a bad config"
  else
    ok "$name refused: $(head -1 <<<"$output")"
  fi
}
check_config_error unknown_key 3:1 <<EOF
listen: {host: 127.0.0.1, port: @PORT@}
upstream: {host: 127.0.0.1, port: $PG_PORT}
no_such_key: 1
EOF
check_config_error wrong_type 2:10 <<EOF
listen: {host: 127.0.0.1, port: @PORT@}
workers: many
EOF
check_config_error wrong_nested_type 3:9 <<EOF
listen: {host: 127.0.0.1, port: @PORT@}
upstream:
  port: not-a-port
EOF

# Sends a startup packet for agent/app with bash alone; prints the reply as hex.
startup_reply_hex() {
  local port=$1
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  # length 33: int32 len, int32 196608, "user\0agent\0database\0app\0\0"
  printf '\x00\x00\x00\x21\x00\x03\x00\x00user\x00agent\x00database\x00app\x00\x00' >&3
  timeout 5 od -An -v -tx1 <&3 | tr -d ' \n'
  exec 3<&-
}

# An upstream that cannot be reached: FATAL 08006 for the client, pgrail stays up.
dead_port=$(free_port)
# A port can still be taken between the check and the bind: try a few.
for _ in 1 2 3; do
  listen_port=$(free_port)
  cat >"$work/dead.yaml" <<EOF
listen: {host: 127.0.0.1, port: $listen_port}
upstream: {host: 127.0.0.1, port: $dead_port, connect_timeout_ms: 1000}
log: {level: info, format: json}
EOF
  "$PGRAIL_BIN" serve --config "$work/dead.yaml" </dev/null >"$work/dead.log" 2>&1 &
  dead_pid=$!
  for _ in $(seq 50); do ss -Htln "sport = :$listen_port" | grep -q . && break; kill -0 "$dead_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$dead_pid" 2>/dev/null; then break; fi
done
pids+=("$dead_pid")
hex_08006=$(printf '08006' | od -An -tx1 | tr -d ' \n')
hex_fatal=$(printf 'SFATAL' | od -An -tx1 | tr -d ' \n')
for attempt in 1 2; do
  reply=$(startup_reply_hex "$listen_port")
  if [[ $reply == 45* && $reply == *"$hex_08006"* && $reply == *"$hex_fatal"* ]]; then
    ok "unreachable upstream answered FATAL 08006 (attempt $attempt)"
  else
    fail "unreachable upstream: expected ErrorResponse FATAL 08006, got '${reply:0:120}'"
  fi
done
if kill -0 "$dead_pid" 2>/dev/null; then ok "pgrail still running after upstream failures"; else fail "pgrail exited"; cat "$work/dead.log" >&2; fi
psql_output=$(PGPASSWORD=x timeout 10 "$PG_BIN/psql" -X -h 127.0.0.1 -p "$listen_port" -U agent -d app -c 'SELECT 1' 2>&1)
if grep -q 'FATAL' <<<"$psql_output"; then
  ok "psql sees a FATAL from the unreachable upstream"
else
  fail "psql did not get a FATAL from the unreachable upstream"
fi

# Session log lines: start and end with user, database, application_name.
probe=log_probe_$$
PGPASSWORD=agent PGAPPNAME=$probe "$PG_BIN/psql" -X -q -h "$PG_HOST" -p "$PGRAIL_PORT" -U agent -d "$PG_DATABASE" \
  -c 'SELECT 1' >/dev/null || fail "psql through the fixture's pgrail"
sleep 0.5
lines=$(grep -c "$probe" "$PGRAIL_LOG")
if ((lines >= 2)) && grep "$probe" "$PGRAIL_LOG" | grep -q agent && grep "$probe" "$PGRAIL_LOG" | grep -q "$PG_DATABASE"; then
  ok "session start and end logged with user, database, application_name"
else
  fail "expected >= 2 log lines naming $probe, agent and $PG_DATABASE in $PGRAIL_LOG, found $lines"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
