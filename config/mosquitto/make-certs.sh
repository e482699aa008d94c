#!/bin/sh
# A private CA and the broker's TLS certificate for the edge-ids Mosquitto setup.
#
#   make-certs.sh <dir> <broker DNS name or IP>...
#
# Writes <dir>/ca.crt (give it to every client as mqtt.tls.ca_file), <dir>/ca.key (keep it offline),
# <dir>/server.crt and <dir>/server.key (the broker's; the first name is the subject, every name a
# subjectAltName, so clients verify the host they connect to). ECDSA P-256, server certificate valid 825 days.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 <dir> <broker name or IP>..." >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
san=""
for name in "$@"; do
    if printf '%s' "$name" | grep -Eq '^[0-9.]+$|:'; then kind=IP; else kind=DNS; fi
    san="${san:+$san,}$kind:$name"
done
umask 077
if [ ! -f "$dir/ca.key" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -subj "/CN=edge-ids broker CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/CN=$1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
ext=$(mktemp)
trap 'rm -f "$ext" "$dir/server.csr"' EXIT
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" >"$ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -sha256 \
    -days 825 -extfile "$ext" -out "$dir/server.crt" 2>/dev/null
chmod 0644 "$dir/ca.crt" "$dir/server.crt"
chmod 0640 "$dir/server.key"
chgrp mosquitto "$dir/server.key" 2>/dev/null || true
echo "CA $dir/ca.crt, server certificate $dir/server.crt for $san"
