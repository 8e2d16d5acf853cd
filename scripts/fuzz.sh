#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan + UBSan, in build-fuzz) and runs each for
# a bounded time, starting from its checked-in seed corpus (tests/fuzz/corpus/<target>/) and the
# inputs of crashes found before (tests/fuzz/crashes/<target>/, which must not crash any more).
#
#   scripts/fuzz.sh                          # every target, 60 s each (what CI runs)
#   scripts/fuzz.sh --time 3600 analyze      # one target for an hour
#   scripts/fuzz.sh --time 1800 --jobs 2 --corpus-out /tmp/pgrail-corpus   # longer, keep what it found
#   scripts/fuzz.sh --parallel 2             # two targets at a time (CI: one per core)
#   scripts/fuzz.sh --build-only
#
# Targets: frame startup literal_shape policy analyze masking auth. A crash, leak, timeout (a single input
# running over 10 s) or sanitizer report fails the run; libFuzzer writes the input that did it to
# BUILD_DIR/artifacts/<target>/ and the script prints it as hex. Reproduce with
#   build-fuzz/tests/fuzz/<target>_fuzz FILE
# and, once fixed, keep it as a regression input in tests/fuzz/crashes/<target>/.
# New seeds: python3 tests/fuzz/make_corpus.py. Merge what a long run found into a small corpus:
#   build-fuzz/tests/fuzz/<target>_fuzz -merge=1 NEW_DIR /tmp/pgrail-corpus/<target>
# Environment: BUILD_DIR (default build-fuzz), JOBS (compile jobs, default 2; builds take
# /tmp/pgrail-build.lock), FUZZ_RSS_LIMIT_MB (default 4096).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-2}
all_targets=(frame startup literal_shape policy analyze masking auth)
# ccache across checkouts (CI builds a fresh clone in another directory): paths relative to the
# tree, the build directory not hashed (debug info may then name the checkout that compiled first).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}

seconds=60
fuzz_jobs=1
parallel=1
corpus_out=
build_only=0
targets=()
while (($#)); do
  case $1 in
    --time) seconds=$2; shift 2 ;;
    --jobs) fuzz_jobs=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --corpus-out) corpus_out=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "fuzz: no target $target (${all_targets[*]})" >&2; exit 2; }
done

log() { echo "fuzz: $*"; }

started=$SECONDS
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGRAIL_FUZZ=ON \
  -DPGRAIL_SANITIZE=address,undefined -DBUILD_TESTING=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >/dev/null
flock /tmp/pgrail-build.lock cmake --build "$BUILD_DIR" -j"$JOBS" --target "${targets[@]/%/_fuzz}"
log "built in $((SECONDS - started)) s"
((build_only)) && exit 0

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:suppressions=$ROOT/scripts/sanitizers/asan.supp"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/scripts/sanitizers/ubsan.supp"

# One target's bounded run; its report goes to stdout, its whole log to BUILD_DIR/artifacts/<target>/log.
run_target() {
  local target=$1
  local binary artifacts seeds crashes work inputs options dict target_started
  binary=$BUILD_DIR/tests/fuzz/${target}_fuzz
  artifacts=$ROOT/$BUILD_DIR/artifacts/$target
  seeds=$ROOT/tests/fuzz/corpus/$target
  crashes=$ROOT/tests/fuzz/crashes/$target
  work=${corpus_out:+$corpus_out/$target}
  work=${work:-$ROOT/$BUILD_DIR/corpus/$target}
  rm -rf "$artifacts"
  mkdir -p "$artifacts" "$work"
  inputs=("$work" "$seeds")
  [[ -d $crashes ]] && inputs+=("$crashes")
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-4096}" -print_final_stats=1
           -artifact_prefix="$artifacts/")
  dict=$ROOT/tests/fuzz/dict/$target.dict
  [[ $target == literal_shape ]] && dict=$ROOT/tests/fuzz/dict/analyze.dict
  [[ -f $dict ]] && options+=(-dict="$dict")
  if ((fuzz_jobs > 1)); then options+=(-fork="$fuzz_jobs" -ignore_crashes=0); fi
  target_started=$SECONDS
  log "$target: ${seconds} s from $(find "${inputs[@]}" -type f | wc -l) inputs"
  local target_status=0
  "$binary" "${options[@]}" "${inputs[@]}" >"$artifacts/log" 2>&1 || target_status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$artifacts/log" |
    tail -4 | sed "s/^/fuzz: $target: /" || true
  if ((target_status != 0)); then
    tail -n 80 "$artifacts/log"
    for file in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/slow-unit-*; do
      [[ -f $file ]] || continue
      log "$target: input $(basename "$file") ($(stat -c %s "$file") bytes):"
      od -An -tx1 -v "$file" | head -n 40
    done
    log "$target: FAILED after $((SECONDS - target_started)) s (exit $target_status; log $artifacts/log)"
    return 1
  else
    log "$target: ok in $((SECONDS - target_started)) s"
  fi
}

# Up to `parallel` targets at once (each is one process: two cores fuzz two targets).
status=0
pids=()
for target in "${targets[@]}"; do
  run_target "$target" &
  pids+=($!)
  if ((${#pids[@]} >= parallel)); then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
log "total $((SECONDS - started)) s"
exit "$status"
