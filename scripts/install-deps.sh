#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of pgrail on Debian 12 (idempotent).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-system1.81-dev libssl-dev zlib1g-dev libpg-query-dev
  postgresql-server-dev-15   # PostgreSQL 15's node headers: src/sql/parse_tree_reader.cpp
  libyaml-cpp-dev libspdlog-dev libfmt-dev libpqxx-dev libpq-dev libicu-dev
  nlohmann-json3-dev libcli11-dev catch2
  postgresql-15 postgresql-client-15 pgbouncer procps iproute2
  valgrind   # bench/instructions.sh: callgrind counts the proxies' instructions per transaction
  liburing-dev   # bench/relay_floor_bench: its io_uring loop (floor_uring in bench/run.sh)
  clang libclang-rt-14-dev llvm   # scripts/fuzz.sh: libFuzzer, clang's sanitizer runtimes, llvm-symbolizer
  # scripts/package_test.sh: cpack's dependency scan (dpkg-shlibdeps, file), the maintainer
  # scripts (adduser), systemd-analyze, curl, and scripts/check_kubernetes.py (PyYAML)
  dpkg-dev file binutils adduser systemd curl python3 python3-yaml
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done

# The agent loop through a real MCP server from npm, and the migration tools test (node-pg-migrate,
# knex: tests/integration/ledger_truth_test.cpp, [migration_tools]): node and npm from Debian,
# unless the machine already has both (e.g. a nodejs package that bundles npm and conflicts with
# Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages (and node, npm) already installed"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
# Refresh the package lists only when they are absent or the install fails on stale ones.
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null) ]]; then
  "${sudo[@]}" apt-get update
fi
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Debian's postgresql package starts a default cluster on 5432; pgrail's scripts use their
# own throwaway clusters, so the default one is left as the package set it up.
echo "install-deps: done"
