#!/usr/bin/env bash
# The Debian package, end to end (docs/operations.md "Packages"; CI step `package`):
#   scripts/package_test.sh [BUILD_DIR]      # default build/; as root (dpkg -i), under a minute
# builds pgrail_<version>_amd64.deb with CPack from BUILD_DIR (packaging/package.cmake), checks
# its control data and files, installs it, smoke-tests the installed pgrail (--version, check,
# serve with the installed /etc/pgrail/pgrail.yaml as the pgrail user), the unit
# (systemd-analyze verify), the user and its directories, validates the Kubernetes example
# (scripts/check_kubernetes.py), then purges the package and checks nothing is left behind.
# Exits non-zero at the first failure, with a line saying what failed. Refuses to run when
# pgrail is already installed or a `pgrail` user exists (the purge would remove them).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
started=$SECONDS
installed=0
work=$(mktemp -d /tmp/pgrail-package.XXXXXX)

say() { echo "package_test: $*"; }
fail() {
  echo "package_test: FAILED: $*" >&2
  exit 1
}
cleanup() {
  local status=$?
  if [[ -n ${serve_pid:-} ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -INT "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -f /etc/pgrail/package-test.yaml
  # A failed run leaves no package behind for the next one.
  if ((installed)) && dpkg-query -W pgrail >/dev/null 2>&1; then
    dpkg --purge pgrail >/dev/null 2>&1 || echo "package_test: could not purge pgrail: run dpkg --purge pgrail" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

[[ $(id -u) -eq 0 ]] || fail "run as root: the test installs the package with dpkg -i"
for tool in cmake cpack dpkg-deb dpkg-shlibdeps adduser systemd-analyze setpriv curl python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/install-deps.sh installs it)"
done
[[ -f $build/CMakeCache.txt ]] || fail "$build is not a build directory (cmake -S . -B $build, or scripts/test.sh)"
if dpkg-query -W -f='${Status}' pgrail 2>/dev/null | grep -q 'installed'; then
  fail "pgrail is already installed: dpkg --purge pgrail first (this test installs and purges it)"
fi
getent passwd pgrail >/dev/null && fail "a pgrail user exists without the package: the purge would delete it"

# --- build ----------------------------------------------------------------------------------
say "building pgrail and the package from $build"
cmake "$build" >/dev/null # picks up packaging/package.cmake in a build directory configured before it
cmake --build "$build" --target pgrail -j"$(nproc)" >/dev/null || fail "cmake --build $build --target pgrail"
(cd "$build" && cpack -G DEB -B "$work/deb") >"$work/cpack.log" 2>&1 || {
  cat "$work/cpack.log" >&2
  fail "cpack -G DEB in $build"
}
deb=$(find "$work/deb" -maxdepth 1 -name 'pgrail_*.deb' -print -quit)
[[ -n $deb ]] || fail "cpack wrote no pgrail_*.deb into $work/deb"
say "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# --- the package's control data and files ------------------------------------------------------
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
info=$(dpkg-deb --info "$deb")
echo "$info" | sed 's/^/  /'
grep -q '^ Package: pgrail$' <<<"$info" || fail "control: Package is not pgrail"
grep -q "^ Version: ${version}\$" <<<"$info" || fail "control: Version is not the project's $version"
grep -q '^ Maintainer: .' <<<"$info" || fail "control: no Maintainer"
depends=$(sed -n 's/^ Depends: //p' <<<"$info")
depends_names=$(tr ',' '\n' <<<"$depends" | sed -E 's/^ +//; s/[ (].*//')
# dpkg-shlibdeps' names for the libraries pgrail links (Boost.System is header-only in 1.81).
for dependency in adduser libc6 libstdc++6 libgcc-s1 libssl3 libpq5 libpqxx-6.4 libyaml-cpp0.7 libfmt9 \
  libspdlog1.10-fmt9 zlib1g; do
  grep -qxF "$dependency" <<<"$depends_names" || fail "control: Depends lacks $dependency ($depends)"
done
for script in postinst prerm postrm conffiles; do
  grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +[* ] +${script}( |$)" <<<"$info" || fail "control: no $script"
done
conffiles=$(dpkg-deb --info "$deb" conffiles)
expected_conffiles=(/etc/pgrail/pgrail.yaml /etc/logrotate.d/pgrail)
for policy in policies/*.yaml; do expected_conffiles+=("/etc/pgrail/$policy"); done
for conffile in "${expected_conffiles[@]}"; do
  grep -qx "$conffile" <<<"$conffiles" || fail "conffiles does not list $conffile"
done

dpkg-deb --contents "$deb" >"$work/contents"
sed 's/^/  /' "$work/contents"
expected_files=(/usr/bin/pgrail /lib/systemd/system/pgrail.service /usr/share/doc/pgrail/README.md
  "${expected_conffiles[@]}")
for doc in docs/*.md; do expected_files+=("/usr/share/doc/pgrail/$doc"); done
for file in "${expected_files[@]}"; do
  grep -Eq " \.${file//./\\.}\$" "$work/contents" || fail "the package does not contain $file"
done
grep -q ' \./usr/local/' "$work/contents" && fail "the package ships /usr/local"
owners=$(awk '{print $2}' "$work/contents" | sort -u)
[[ $owners == root/root ]] || fail "files not owned by root/root: $owners"
grep -Eq '^-rwxr-xr-x .* \./usr/bin/pgrail$' "$work/contents" || fail "/usr/bin/pgrail is not mode 0755"
grep -Eq '^-rw-r--r-- .* \./etc/pgrail/pgrail\.yaml$' "$work/contents" || fail "/etc/pgrail/pgrail.yaml is not mode 0644"

# --- install and smoke-test --------------------------------------------------------------------
say "dpkg -i $(basename "$deb")"
installed=1
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log" >&2
  fail "dpkg -i $(basename "$deb")"
}
[[ $(command -v pgrail) == /usr/bin/pgrail ]] || fail "pgrail on PATH is $(command -v pgrail), not /usr/bin/pgrail"
/usr/bin/pgrail --version | grep -qF "$version" || fail "pgrail --version does not print $version"
say "pgrail --version: $(/usr/bin/pgrail --version)"
/usr/bin/pgrail check --policy /etc/pgrail/policies/default.yaml >"$work/check.log" 2>&1 || {
  cat "$work/check.log" >&2
  fail "pgrail check --policy /etc/pgrail/policies/default.yaml"
}
say "pgrail check --policy /etc/pgrail/policies/default.yaml: ok"

getent passwd pgrail >/dev/null || fail "no pgrail user after install"
getent group pgrail >/dev/null || fail "no pgrail group after install"
[[ $(getent passwd pgrail | cut -d: -f7) == /usr/sbin/nologin ]] || fail "the pgrail user has a login shell"
(($(id -u pgrail) < 1000)) || fail "the pgrail user is not a system user (uid $(id -u pgrail))"
for dir in /var/log/pgrail /var/lib/pgrail; do
  [[ $(stat -c %U:%G "$dir" 2>/dev/null) == pgrail:pgrail ]] || fail "$dir is not owned by pgrail:pgrail"
done
[[ $(stat -c %U:%G:%a /etc/pgrail/pgrail.yaml) == root:pgrail:640 ]] ||
  fail "/etc/pgrail/pgrail.yaml is $(stat -c %U:%G:%a /etc/pgrail/pgrail.yaml), not root:pgrail:640"
say "user pgrail (uid $(id -u pgrail)) owns /var/log/pgrail and /var/lib/pgrail"

# The unit, offline (no running systemd needed); its binary must be the package's.
grep -q '^ExecStart=/usr/bin/pgrail serve --config /etc/pgrail/pgrail.yaml$' /lib/systemd/system/pgrail.service ||
  fail "the unit's ExecStart is not /usr/bin/pgrail serve --config /etc/pgrail/pgrail.yaml"
if ! systemd-analyze verify /lib/systemd/system/pgrail.service >"$work/verify.log" 2>&1 || [[ -s $work/verify.log ]]; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify /lib/systemd/system/pgrail.service"
fi
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/pgrail.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for pgrail.service: \([0-9.]*\).*/\1/p')
say "systemd-analyze verify: clean; security exposure ${exposure:-?} (10 is none of the hardening)"

# The installed configuration as `pgrail serve` reads it, as the pgrail user: only its ports moved
# (a copy beside it, so relative paths resolve as in the original), audit log as installed.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listen_port=$(free_port)
http_port=$(free_port)
grep -c '^  port: 6432$' /etc/pgrail/pgrail.yaml | grep -qx 1 || fail "/etc/pgrail/pgrail.yaml: no single 'port: 6432' (listen)"
grep -Ec '^  port: 0( |$)' /etc/pgrail/pgrail.yaml | grep -qx 1 || fail "/etc/pgrail/pgrail.yaml: no single 'port: 0' (http)"
sed -E "s/^  port: 6432\$/  port: $listen_port/; s/^  port: 0( .*)?\$/  port: $http_port/" \
  /etc/pgrail/pgrail.yaml >/etc/pgrail/package-test.yaml
chown root:pgrail /etc/pgrail/package-test.yaml
chmod 0640 /etc/pgrail/package-test.yaml
# setpriv execs pgrail itself (runuser would stay its parent and not pass on SIGINT).
setpriv --reuid=pgrail --regid=pgrail --init-groups \
  /usr/bin/pgrail serve --config /etc/pgrail/package-test.yaml >"$work/serve.log" 2>&1 &
serve_pid=$!
healthz=''
for _ in $(seq 50); do
  kill -0 "$serve_pid" 2>/dev/null || break
  healthz=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/healthz" || true)
  [[ $healthz == 200 ]] && break
  sleep 0.2
done
if [[ $healthz != 200 ]]; then
  cat "$work/serve.log" >&2
  fail "pgrail serve --config /etc/pgrail/pgrail.yaml (installed, ports moved) did not come up: /healthz ${healthz:-none}"
fi
kill -INT "$serve_pid"
for _ in $(seq 100); do
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$serve_pid" 2>/dev/null; then
  kill -KILL "$serve_pid"
  fail "pgrail serve did not stop within 10 s of SIGINT"
fi
serve_status=0
wait "$serve_pid" || serve_status=$?
serve_pid=''
((serve_status == 0)) || {
  cat "$work/serve.log" >&2
  fail "pgrail serve exited $serve_status after SIGINT"
}
grep -q "policy /etc/pgrail/policies/default.yaml loaded" "$work/serve.log" ||
  fail "pgrail serve did not load /etc/pgrail/policies/default.yaml: $(cat "$work/serve.log")"
[[ $(stat -c %U /var/log/pgrail/audit.jsonl 2>/dev/null) == pgrail ]] ||
  fail "pgrail serve as pgrail did not make /var/log/pgrail/audit.jsonl"
rm -f /etc/pgrail/package-test.yaml
say "pgrail serve as user pgrail accepted /etc/pgrail/pgrail.yaml (policy loaded, /healthz 200, audit file made)"

# --- the Kubernetes example, with the installed pgrail -------------------------------------------
python3 scripts/check_kubernetes.py --pgrail /usr/bin/pgrail deploy/kubernetes || fail "scripts/check_kubernetes.py deploy/kubernetes"

# --- purge ------------------------------------------------------------------------------------
dpkg --purge pgrail >"$work/purge.log" 2>&1 || {
  cat "$work/purge.log" >&2
  fail "dpkg --purge pgrail"
}
installed=0
dpkg-query -W -f='${Status}' pgrail 2>/dev/null | grep -q 'installed' && fail "pgrail is still installed after the purge"
left=()
while read -r path; do
  [[ -e /$path || -L /$path ]] && left+=("/$path")
done < <(awk '$1 !~ /^d/ {print $NF}' "$work/contents" | sed 's|^\./||')
for path in /etc/pgrail /var/log/pgrail /var/lib/pgrail /usr/share/doc/pgrail; do
  [[ -e $path ]] && left+=("$path")
done
((${#left[@]} == 0)) || fail "the purge left ${left[*]}"
getent passwd pgrail >/dev/null && fail "the purge left the pgrail user"
getent group pgrail >/dev/null && fail "the purge left the pgrail group"
say "dpkg --purge pgrail: no file, directory, user or group left"

say "ok in $((SECONDS - started)) s"
