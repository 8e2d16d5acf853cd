#!/usr/bin/env bash
# `pgrail passwd` as an operator meets it: a password on stdin (never an argument, never printed),
# the identities file created 0600 and edited in place, and a verifier PostgreSQL accepts for login.
set -uo pipefail

: "${PGRAIL_CLUSTER_DIR:?run through ctest (fixture cluster) or set PGRAIL_CLUSTER_DIR}"
: "${PGRAIL_BIN:?set PGRAIL_BIN to the pgrail executable}"
# shellcheck disable=SC1091
source "$PGRAIL_CLUSTER_DIR/env"

work=$(mktemp -d /tmp/pgrail-passwd-test.XXXXXX)
chmod 755 "$work"
role=passwd_probe
admin() { PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d "$PG_DATABASE" -XAtq -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
  admin -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

file=$work/identities.yaml
secret='s3cret-Pass phrase'

# A new file: mode 0600, the identity added, the password nowhere in the output or the file.
out=$(printf '%s\n' "$secret" | "$PGRAIL_BIN" passwd agent-7 --role $role --identities "$file" 2>&1)
rc=$?
if [[ $rc -eq 0 && $out == *"added identity 'agent-7' (role $role)"* ]]; then ok "adds an identity"; else fail "add: rc=$rc $out"; fi
if [[ $(stat -c %a "$file") == 600 ]]; then ok "a new file gets mode 0600"; else fail "mode $(stat -c %a "$file")"; fi
if grep -qF "$secret" "$file" || [[ $out == *"$secret"* ]]; then fail "the password leaked"; else ok "the password is neither printed nor stored"; fi
# Without a roles entry the file does not load yet, and passwd says so.
if [[ $out == *"warning: pgrail will not load the file yet"*"role '$role' has no credentials"* ]]; then
  ok "warns that the role has no credentials yet"
else
  fail "no warning about the role's credentials: $out"
fi

verifier() { grep -o "name: $1, role: [a-z_]*, verifier: [^}]*" "$file" | sed 's/.*verifier: //; s/^"//; s/"$//'; }
v1=$(verifier agent-7)
if [[ $v1 == SCRAM-SHA-256\$4096:* ]]; then ok "stores a SCRAM-SHA-256 verifier"; else fail "verifier: '$v1'"; fi

# PostgreSQL accepts the verifier as is, and the password logs in.
admin -c "DROP ROLE IF EXISTS $role" -c "CREATE ROLE $role LOGIN PASSWORD '$v1'" >/dev/null
if [[ $(admin -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$role'") == "$v1" ]]; then
  ok "PostgreSQL stores it as is"
else
  fail "PostgreSQL changed the verifier"
fi
login() {
  PGPASSWORD=$1 "$PG_BIN/psql" "host=$PG_HOST port=$PG_PORT dbname=$PG_DATABASE user=$role sslmode=disable" -XAtqc 'SELECT current_user' 2>&1
}
if [[ $(login "$secret") == "$role" ]]; then ok "psql logs in with the password"; else fail "login: $(login "$secret")"; fi
if [[ $(login wrong) == *"password authentication failed"* ]]; then ok "a wrong password is refused"; else fail "wrong password accepted"; fi

# An operator's edits survive (roles), a second identity is appended, a replaced one keeps its place.
cat >>"$file" <<YAML
roles:
  $role: {password_env: PGRAIL_PASSWD_TEST_PW}
YAML
chmod 640 "$file"
printf 'second\n' | "$PGRAIL_BIN" passwd agent-8 --role $role --identities "$file" >/dev/null 2>"$work/err" || fail "second add"
out=$(printf 'rotated\n' | "$PGRAIL_BIN" passwd agent-7 --role $role --identities "$file" --iterations 8192 2>&1)
if [[ $out == *"replaced identity 'agent-7'"* && $out != *warning* ]]; then ok "replaces an identity; the file loads"; else fail "replace: $out"; fi
if [[ $(grep -c 'name: agent-' "$file") == 2 && $(grep -n 'name: agent-7' "$file" | cut -d: -f1) -lt $(grep -n 'name: agent-8' "$file" | cut -d: -f1) ]]; then
  ok "two identities, in their order"
else
  fail "entries: $(cat "$file")"
fi
if grep -q "password_env: PGRAIL_PASSWD_TEST_PW" "$file"; then ok "roles are kept"; else fail "roles lost"; fi
if [[ $(stat -c %a "$file") == 640 ]]; then ok "an existing file keeps its mode"; else fail "mode now $(stat -c %a "$file")"; fi
v2=$(verifier agent-7)
if [[ $v2 == SCRAM-SHA-256\$8192:* && $v2 != "$v1" ]]; then ok "--iterations 8192"; else fail "rotated verifier: $v2"; fi
admin -c "ALTER ROLE $role PASSWORD '$v2'" >/dev/null
if [[ $(login rotated) == "$role" ]]; then ok "the rotated password logs in"; else fail "rotated login"; fi

# Refusals: no password, a too-low iteration count, a file that is not an identities file.
if printf '' | "$PGRAIL_BIN" passwd x --role $role --identities "$file" >/dev/null 2>"$work/err"; then
  fail "an empty stdin was accepted"
elif grep -q "no password on standard input" "$work/err"; then ok "empty stdin refused"; else fail "empty stdin: $(cat "$work/err")"; fi
if printf 'pw\n' | "$PGRAIL_BIN" passwd x --role $role --identities "$file" --iterations 100 >/dev/null 2>&1; then
  fail "--iterations 100 accepted"
else
  ok "--iterations below 4096 refused"
fi
printf 'just: [a, list\n' >"$work/broken.yaml"
if printf 'pw\n' | "$PGRAIL_BIN" passwd x --role $role --identities "$work/broken.yaml" >/dev/null 2>"$work/err"; then
  fail "a broken file was overwritten"
elif grep -q "broken.yaml:2:" "$work/err" && [[ $(cat "$work/broken.yaml") == 'just: [a, list' ]]; then
  ok "a file that is not YAML is refused (file:line:column) and left alone"
else
  fail "broken file: $(cat "$work/err")"
fi

if ((failures > 0)); then echo "$failures failure(s)"; exit 1; fi
echo "all passwd checks passed"
