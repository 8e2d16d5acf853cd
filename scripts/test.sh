#!/usr/bin/env bash
# Builds pgrail and every test, then runs them all (unit tests and the integration tests
# against a throwaway PostgreSQL 15 that the CTest fixture starts and stops).
#   scripts/test.sh            # build into ./build and run ctest
#   BUILD_DIR=... scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900 "$@"
