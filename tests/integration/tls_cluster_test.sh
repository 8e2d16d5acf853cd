#!/usr/bin/env bash
# The test cluster with ssl = on (PGRAIL_CLUSTER_SSL=1, scripts/test-certs.sh): PostgreSQL 15 itself
# accepts psql with sslmode=verify-full against the harness's CA, refuses a wrong CA and a wrong
# name, keeps ssluser to TLS and lets certuser in by its client certificate only; pgrail in front of
# it still serves. The harness the TLS tests of issue 19 stand on.
set -uo pipefail

: "${PGRAIL_BIN:?set PGRAIL_BIN to the pgrail executable}"
source_dir=$(cd "$(dirname "$0")/../.." && pwd)

# The fixture's cluster when it was started with ssl = on, else one of our own.
own=''
if [[ -n ${PGRAIL_CLUSTER_DIR:-} && -f $PGRAIL_CLUSTER_DIR/env ]] && grep -q '^PGRAIL_CLUSTER_SSL=1$' "$PGRAIL_CLUSTER_DIR/env"; then
  cluster=$PGRAIL_CLUSTER_DIR
else
  own=$(mktemp -d /tmp/pgrail-tls-test.XXXXXX)
  cluster=$own/cluster
fi
cleanup() {
  if [[ -n $own ]]; then
    "$source_dir/scripts/test-cluster.sh" stop "$cluster"
    rm -rf "$own"
  fi
}
# Set before the start: a start that fails half-way is stopped too.
trap cleanup EXIT
if [[ -n $own ]]; then
  PGRAIL_CLUSTER_SSL=1 "$source_dir/scripts/test-cluster.sh" start "$cluster" "$PGRAIL_BIN" >/dev/null \
    || { echo "FAIL: the ssl = on cluster did not start" >&2; exit 1; }
fi
# shellcheck disable=SC1091
source "$cluster/env"
tls=$PGRAIL_TLS_DIR
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# psql CONNINFO SQL: prints the result or the error (stderr folded in), never prompts.
q() { PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -A -t -w "$1" -c "$2" 2>&1; }
direct="host=localhost hostaddr=$PG_HOST port=$PG_PORT dbname=app"
ssl_row="SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"

# The files the harness promises, keys private.
for name in ca server client wrong-ca wrong-server wrong-client; do
  if [[ -f $tls/$name.crt && $(stat -c %a "$tls/$name.key") == 600 ]]; then ok "$name.crt, $name.key (0600)"
  else fail "$name.crt / $name.key missing or the key not 0600"; fi
done

out=$(q "$direct user=agent password=agent sslmode=verify-full sslrootcert=$tls/ca.crt" "$ssl_row")
if [[ $out == "t|TLSv1.3" ]]; then ok "verify-full to PostgreSQL: $out"; else fail "verify-full to PostgreSQL: $out"; fi

out=$(q "host=$PG_HOST port=$PG_PORT dbname=app user=agent password=agent sslmode=verify-full sslrootcert=$tls/ca.crt" "$ssl_row")
if [[ $out == "t|TLSv1.3" ]]; then ok "verify-full by address (IP subjectAltName)"; else fail "verify-full by address: $out"; fi

out=$(q "$direct user=agent password=agent sslmode=verify-full sslrootcert=$tls/wrong-ca.crt" "$ssl_row")
if [[ $out == *"certificate verify failed"* ]]; then ok "a wrong CA is refused"; else fail "a wrong CA: $out"; fi

out=$(q "host=127.0.0.2 hostaddr=$PG_HOST port=$PG_PORT dbname=app user=agent password=agent sslmode=verify-full sslrootcert=$tls/ca.crt" "$ssl_row")
if [[ $out == *"does not match host name"* ]]; then ok "a wrong name is refused"; else fail "a wrong name: $out"; fi

out=$(q "$direct user=ssluser password=ssluser sslmode=disable" "SELECT 1")
if [[ $out == *"pg_hba.conf rejects connection"*"no encryption"* ]]; then ok "ssluser without TLS is refused"; else fail "ssluser without TLS: $out"; fi
out=$(q "$direct user=ssluser password=ssluser sslmode=require" "$ssl_row")
if [[ $out == t\|* ]]; then ok "ssluser with TLS"; else fail "ssluser with TLS: $out"; fi

out=$(q "$direct user=certuser sslmode=verify-full sslrootcert=$tls/ca.crt sslcert=$tls/client.crt sslkey=$tls/client.key" "SELECT current_user")
if [[ $out == certuser ]]; then ok "certuser by its client certificate"; else fail "certuser by its client certificate: $out"; fi
out=$(q "$direct user=certuser sslmode=verify-full sslrootcert=$tls/ca.crt sslcert=$tls/wrong-client.crt sslkey=$tls/wrong-client.key" "SELECT 1")
if [[ $out == *"alert unknown ca"* ]]; then ok "a client certificate of another CA is refused"; else fail "wrong client certificate: $out"; fi
out=$(q "$direct user=certuser sslmode=require" "SELECT 1")
if [[ $out == *"connection requires a valid client certificate"* ]]; then ok "certuser without a certificate is refused"
else fail "certuser without a certificate: $out"; fi

# pgrail in front of the ssl = on server still serves (its server leg: plain TCP, or TLS once wired).
out=$(q "host=$PG_HOST port=$PGRAIL_PORT dbname=app user=agent password=agent sslmode=disable" "SELECT 'through pgrail'")
if [[ $out == "through pgrail" ]]; then ok "pgrail in front of the ssl = on server"; else fail "through pgrail: $out"; fi

if ((failures > 0)); then echo "$failures failure(s)" >&2; exit 1; fi
echo "all passed"
