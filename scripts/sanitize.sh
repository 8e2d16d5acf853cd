#!/usr/bin/env bash
# The tests under sanitizers, each sanitizer build in a directory of its own (never ./build):
#
#   scripts/sanitize.sh asan   # build-asan: AddressSanitizer (with LeakSanitizer) + UndefinedBehaviorSanitizer;
#                              #   every unit test and the whole integration suite, against an
#                              #   instrumented pgrail (less the few test cases of asan_exclusions below)
#   scripts/sanitize.sh tsan   # build-tsan: ThreadSanitizer; pgrail and the integration tests that
#                              #   drive many sessions at once (TSAN_TAGS)
#   scripts/sanitize.sh        # both, asan first
#
# A sanitizer report in any instrumented process (a test, the cluster's pgrail, a pgrail a test
# starts) fails the run: every process writes its reports to BUILD_DIR/sanitizer-reports/, which
# must be empty afterwards, and they are printed. Suppressions, each with its reason:
# scripts/sanitizers/*.supp.
# Environment:
#   ASAN_BUILD_DIR, TSAN_BUILD_DIR   build directories (default build-asan, build-tsan)
#   TSAN_TAGS    Catch2 test spec of the integration tests run under TSan
#   JOBS         parallel compile jobs (default 2); builds take /tmp/pgrail-build.lock
#   SANITIZE_CXX_FLAGS   optimisation and debug flags of the sanitizer builds (default -O1 -g1:
#                compiles faster than RelWithDebInfo and still gives file:line in every trace)
# Extra arguments after the mode go to ctest (asan) or to integration_tests (tsan).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-build-tsan}
# The proxy's concurrency: sessions, cancels and disconnects ([session]), startup and framing
# under many connections ([protocol]), in-band commands and migrations on the thread pool,
# reloads and the chaos test ([inband]), the audit writer shared by 20 sessions and analysis off
# the I/O thread ([policy]), concurrent migration runs ([migrations]) and server-side failures
# ([upstream]).
TSAN_TAGS=${TSAN_TAGS:-[session],[protocol],[inband],[policy],[upstream],[migrations]}
JOBS=${JOBS:-2}
SANITIZE_CXX_FLAGS=${SANITIZE_CXX_FLAGS:--O1 -g1}
SUPPRESSIONS=$ROOT/scripts/sanitizers
# ccache across checkouts (CI builds a fresh clone in another directory): paths relative to the
# tree, the build directory not hashed (debug info may then name the checkout that compiled first).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}

mode=${1:-all}
[[ $# -gt 0 ]] && shift
case $mode in
  asan|tsan) ;;
  all) [[ $# -eq 0 ]] || { echo "sanitize: extra arguments need a mode (asan or tsan)" >&2; exit 2; } ;;
  *) echo "usage: $0 [asan [ctest arguments] | tsan [Catch2 arguments] | all]" >&2; exit 2 ;;
esac

log() { echo "sanitize: $*"; }

configure() {
  local dir=$1 sanitizers=$2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGRAIL_SANITIZE="$sanitizers" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$SANITIZE_CXX_FLAGS" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$SANITIZE_CXX_FLAGS" >/dev/null
}

build() {
  local dir=$1
  shift
  flock /tmp/pgrail-build.lock cmake --build "$dir" -j"$JOBS" --target "$@"
}

# Every unit test executable the configured tree has (one per module with tests).
unit_targets() {
  cmake --build "$1" --target help | sed -n 's/^\(unit_[a-z_]*\): .*/\1/p'
}

# Fails (and prints them) if any instrumented process left a report.
check_reports() {
  local reports=$1 what=$2
  shopt -s nullglob
  local files=("$reports"/*)
  shopt -u nullglob
  if ((${#files[@]} > 0)); then
    for file in "${files[@]}"; do
      echo "===== $file"
      cat "$file"
    done
    log "$what: ${#files[@]} sanitizer report(s), above"
    return 1
  fi
  log "$what: no sanitizer reports"
}

fresh_reports() {
  local reports=$1
  rm -rf "$reports"
  mkdir -p "$reports"
}

# Test cases that measure the uninstrumented build's resources, which no instrumented build can
# meet: left out of the ASan run only (Catch2 exclusions, one argument each).
#   integration: pgrail's whole VmRSS under 64 MiB while 100 MB stream (ASan's shadow memory and
#     allocator alone take about 78 MiB).
#   unit_audit: group commit's batching (fewer than one fdatasync per 10 records written as fast
#     as one thread can): instrumented, a record takes longer than a sync, so batches are smaller.
declare -A asan_exclusions=(
  [unit_audit]='~record_async: completes once synced*'
  [integration]='~COPY FROM STDIN of 100 MB*|~COPY TO STDOUT of 100 MB*|~an error that quotes a huge value streams through*'
)
exclusions_of() {
  local spec=${asan_exclusions[$1]:-}
  [[ -n $spec ]] && tr '|' '\n' <<<"$spec"
  return 0
}

run_asan() {
  local dir=$ASAN_BUILD_DIR reports=$ROOT/$ASAN_BUILD_DIR/sanitizer-reports started=$SECONDS status=0
  configure "$dir" address,undefined
  # shellcheck disable=SC2046
  build "$dir" pgrail integration_tests $(unit_targets "$dir")
  log "asan: built in $((SECONDS - started)) s"
  fresh_reports "$reports"
  local run_started=$SECONDS cluster=$ROOT/$dir/test-cluster
  # halt_on_error: the first report ends the process (a test then fails, a pgrail stops serving).
  # detect_leaks: LeakSanitizer at every exit, pgrail's after SIGTERM included.
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$reports/asan:log_exe_name=1:suppressions=$SUPPRESSIONS/asan.supp"
  export LSAN_OPTIONS="suppressions=$SUPPRESSIONS/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan:log_exe_name=1:suppressions=$SUPPRESSIONS/ubsan.supp"
  # What has exclusions runs on its own below; ctest runs the rest as scripts/test.sh does (new
  # unit test executables, the script tests and their cluster fixture included).
  local excluded
  excluded=$(IFS='|'; echo "${!asan_exclusions[*]}")
  ctest --test-dir "$dir" --output-on-failure --timeout 1800 -E "^($excluded)\$" "$@" || status=$?
  local name args
  for name in "${!asan_exclusions[@]}"; do
    [[ $name == integration ]] && continue
    mapfile -t args < <(exclusions_of "$name")
    log "asan: $name without: ${args[*]}"
    "$dir/tests/$name" "${args[@]}" || status=1
  done
  mapfile -t args < <(exclusions_of integration)
  log "asan: integration without: ${args[*]}"
  trap 'scripts/test-cluster.sh stop "$cluster" >/dev/null 2>&1 || true' EXIT
  scripts/test-cluster.sh start "$cluster" "$dir/pgrail"
  PGRAIL_CLUSTER_DIR=$cluster PGRAIL_BIN=$ROOT/$dir/pgrail "$dir/tests/integration_tests" "${args[@]}" || status=1
  scripts/test-cluster.sh stop "$cluster"
  trap - EXIT
  log "asan: tests ran in $((SECONDS - run_started)) s (exit $status)"
  check_reports "$reports" asan || status=1
  return "$status"
}

run_tsan() {
  local dir=$TSAN_BUILD_DIR reports=$ROOT/$TSAN_BUILD_DIR/sanitizer-reports started=$SECONDS status=0
  configure "$dir" thread
  build "$dir" pgrail integration_tests
  log "tsan: built in $((SECONDS - started)) s"
  fresh_reports "$reports"
  local run_started=$SECONDS cluster=$ROOT/$dir/test-cluster
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:log_path=$reports/tsan:log_exe_name=1:suppressions=$SUPPRESSIONS/tsan.supp"
  trap 'scripts/test-cluster.sh stop "$cluster" >/dev/null 2>&1 || true' EXIT
  scripts/test-cluster.sh start "$cluster" "$dir/pgrail"
  PGRAIL_CLUSTER_DIR=$cluster PGRAIL_BIN=$ROOT/$dir/pgrail \
    "$dir/tests/integration_tests" "$TSAN_TAGS" "$@" || status=$?
  scripts/test-cluster.sh stop "$cluster"
  trap - EXIT
  log "tsan: tests ran in $((SECONDS - run_started)) s (integration_tests exit $status)"
  check_reports "$reports" tsan || status=1
  return "$status"
}

status=0
if [[ $mode == asan || $mode == all ]]; then run_asan "$@" || status=1; fi
if [[ $mode == tsan || $mode == all ]]; then run_tsan "$@" || status=1; fi
exit "$status"
