#!/usr/bin/env bash
# `pgrail migrate lint` as CI meets it (docs/lint.md): no database, text / JSON / SARIF 2.1.0,
# exit 1 on an unwaived error or an invalid file, 0 on warnings alone; and how long 100
# migrations take (printed, never asserted).
set -uo pipefail

: "${PGRAIL_BIN:?set PGRAIL_BIN to the pgrail executable}"
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/pgrail-lint-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

lint() { "$PGRAIL_BIN" migrate --dir "$1" lint "${@:2}"; }

# The seed migration lints clean, exit 0.
out=$(lint "$repo/migrations"); code=$?
if [[ $code == 0 && $out == *"0 errors, 0 warnings, 0 info"* ]]; then ok "seed lints clean"; else fail "seed: $code $out"; fi

# Warnings only: exit 0.
mkdir -p "$work/warn"
printf 'CREATE INDEX profiles_email_idx ON profiles (email);\n' >"$work/warn/1_idx.up.sql"
printf 'DROP INDEX profiles_email_idx;\n' >"$work/warn/1_idx.down.sql"
out=$(lint "$work/warn"); code=$?
if [[ $code == 0 && $out == *"1_idx.up.sql:1: warning [index-not-concurrent]"* ]]; then ok "warning: exit 0"; else fail "warn: $code $out"; fi

# An unwaived error: exit 1, in every format; waived: exit 0.
mkdir -p "$work/error"
printf 'ALTER TABLE profiles DROP COLUMN timezone;\n' >"$work/error/1_drop.up.sql"
printf 'ALTER TABLE profiles ADD COLUMN timezone text;\n' >"$work/error/1_drop.down.sql"
for format in text json sarif; do
  out=$(lint "$work/error" --format "$format"); code=$?
  if [[ $code == 1 ]]; then ok "error: exit 1 ($format)"; else fail "error $format: exit $code"; fi
done
out=$(lint "$work/error" --format json)
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); f=d["migrations"][0]["findings"][0]
assert f["rule"]=="drop-column" and f["severity"]=="error" and f["level"]=="block" and f["line"]==1, f
assert d["summary"]["failed"] is True' "$out"; then ok "json"; else fail "json: $out"; fi
out=$(lint "$work/error" --format sarif)
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["version"]=="2.1.0"; r=d["runs"][0]
ids=[x["id"] for x in r["tool"]["driver"]["rules"]]; res=r["results"][0]
assert res["ruleId"]=="drop-column" and ids[res["ruleIndex"]]=="drop-column" and res["level"]=="error", res
loc=res["locations"][0]["physicalLocation"]; assert loc["artifactLocation"]["uri"].endswith("1_drop.up.sql")
assert loc["region"]["startLine"]==1' "$out"; then ok "sarif"; else fail "sarif: $out"; fi
printf -- '-- pgrail:allow drop-column the application stopped reading it in release 42\nALTER TABLE profiles DROP COLUMN timezone;\n' \
  >"$work/error/1_drop.up.sql"
out=$(lint "$work/error"); code=$?
if [[ $code == 0 && $out == *"(waived)"* && $out == *"release 42"* ]]; then ok "waived: exit 0"; else fail "waived: $code $out"; fi

# An invalid file: exit 1. A bad --format: exit non-zero with the choices.
printf 'ALTER TABLE profiles ADD COLUMN a text;\n' >"$work/warn/2_orphan.up.sql"
out=$(lint "$work/warn"); code=$?
if [[ $code == 1 && $out == *"invalid: no rollback script"* ]]; then ok "invalid file: exit 1"; else fail "invalid: $code $out"; fi
out=$(lint "$work/warn" --format xml 2>&1); code=$?
if [[ $code != 0 && $out == *"text, json or sarif"* ]]; then ok "bad --format"; else fail "format: $code $out"; fi

# 100 migrations (400 statements): the time is printed for the note, not asserted.
mkdir -p "$work/hundred"
for i in $(seq 1 100); do
  printf 'CREATE TABLE t%d (id bigint PRIMARY KEY, name text, at timestamptz DEFAULT now());\nCREATE INDEX t%d_name ON t%d (name);\nALTER TABLE profiles ADD COLUMN c%d text;\nALTER TABLE profiles ALTER COLUMN c%d SET DEFAULT %s;\n' \
    "$i" "$i" "$i" "$i" "$i" "'x'" >"$work/hundred/${i}_m${i}.up.sql"
  printf 'ALTER TABLE profiles DROP COLUMN c%d;\nDROP TABLE t%d;\n' "$i" "$i" >"$work/hundred/${i}_m${i}.down.sql"
done
start=$(date +%s%N)
out=$(lint "$work/hundred" --format sarif); code=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [[ $code == 0 ]]; then ok "100 migrations linted in ${elapsed_ms} ms (sarif)"; else fail "hundred: $code"; fi

if ((failures > 0)); then echo "$failures failure(s)"; exit 1; fi
echo "all passed"
