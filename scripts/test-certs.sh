#!/usr/bin/env bash
# Makes the certificates the TLS tests use (openssl CLI), every key mode 0600:
#
#   test-certs.sh DIR
#
#   ca.crt, ca.key                   the test CA
#   server.crt, server.key           signed by ca: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   client.crt, client.key           signed by ca: CN=certuser (a client certificate, clientAuth)
#   wrong-ca.crt, wrong-ca.key       a second CA, unrelated to ca
#   wrong-server.crt, wrong-server.key   signed by wrong-ca, same names as server (a "wrong certificate")
#   wrong-client.crt, wrong-client.key   signed by wrong-ca: CN=certuser
#
# ECDSA P-256 keys signed with SHA-256 (fast to make, accepted by PostgreSQL 15, libpq and OpenSSL 3
# at security level 2); valid for ten years, so a long-lived checkout's certificates do not expire.
# An existing DIR is refreshed: every file is made again.
set -euo pipefail

die() { echo "test-certs: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: $0 DIR"
command -v openssl >/dev/null || die "the openssl command is needed (apt-get install openssl)"

dir=$1
mkdir -p "$dir"
umask 077
work=$(mktemp -d "$dir/.certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# new_ca NAME CN
new_ca() {
  new_key "$work/$1.key"
  openssl req -x509 -new -key "$work/$1.key" -sha256 -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$work/$1.crt" 2>/dev/null
}

# new_leaf NAME CA CN EXTENSIONS
new_leaf() {
  local name=$1 ca=$2 cn=$3 ext=$4
  new_key "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/CN=$cn" -out "$work/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$work/$ca.crt" -CAkey "$work/$ca.key" -CAcreateserial \
    -sha256 -days 3650 -extfile "$work/$name.ext" -out "$work/$name.crt" 2>/dev/null
}

server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

new_ca ca "pgrail test CA"
new_ca wrong-ca "pgrail unrelated test CA"
new_leaf server ca localhost "$server_ext"
new_leaf client ca certuser "$client_ext"
new_leaf wrong-server wrong-ca localhost "$server_ext"
new_leaf wrong-client wrong-ca certuser "$client_ext"

for name in ca wrong-ca server client wrong-server wrong-client; do
  chmod 0644 "$work/$name.crt"
  chmod 0600 "$work/$name.key"
  mv -f "$work/$name.crt" "$work/$name.key" "$dir/"
done
# What the chain checks must give: each leaf verifies against its own CA and not the other.
openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" "$dir/client.crt" >/dev/null || die "a leaf does not verify against ca.crt"
openssl verify -CAfile "$dir/wrong-ca.crt" "$dir/wrong-server.crt" "$dir/wrong-client.crt" >/dev/null \
  || die "a wrong-* leaf does not verify against wrong-ca.crt"
echo "test-certs: CA, server, client and wrong-CA certificates in $dir"
