#!/bin/sh
# Makes a private CA, the collector's certificate and a shared agent token with
# openssl alone (no cert-manager). Usage:
#   make-certs.sh OUT_DIR [DNS_NAME_OR_IP ...]
# Default names: preflight-collector.preflight.svc (the base deployment's Service),
# preflight-collector, localhost, 127.0.0.1. Writes into OUT_DIR:
#   ca.crt ca.key        the CA (keep ca.key offline; only ca.crt goes to agents)
#   tls.crt tls.key      the collector's pair (tls.key readable by the collector only)
#   token                a random shared token for auth.mode token-file
# Rotate: run again with the same ca.crt/ca.key present (kept, only the leaf is
# re-issued) and copy tls.crt/tls.key over the old ones; the collector re-reads them.
set -eu
out=${1:?usage: make-certs.sh OUT_DIR [NAME ...]}
shift
[ "$#" -gt 0 ] || set -- preflight-collector.preflight.svc preflight-collector localhost 127.0.0.1
mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 -subj "/CN=preflight-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi
san=""
for name in "$@"; do
  case "$name" in
    *[!0-9.]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;
  esac
  san="${san:+$san,}$entry"
done
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$out/tls.key.new" -out "$out/tls.csr" -subj "/CN=$1" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" \
  > "$out/tls.ext"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -out "$out/tls.crt.new" -days 90 -extfile "$out/tls.ext" 2>/dev/null
# Key first, then certificate, each by rename: a reader never sees half a file.
mv "$out/tls.key.new" "$out/tls.key"
mv "$out/tls.crt.new" "$out/tls.crt"
rm -f "$out/tls.csr" "$out/tls.ext" "$out/ca.srl"
[ -f "$out/token" ] || openssl rand -base64 32 | tr -d '\n' > "$out/token"
chmod 0644 "$out/ca.crt" "$out/tls.crt"
cat <<MSG
Wrote $out/{ca.crt,ca.key,tls.crt,tls.key,token}. For the Kubernetes base:
  kubectl -n preflight create secret tls preflight-collector-tls --cert=$out/tls.crt --key=$out/tls.key
  kubectl -n preflight create configmap preflight-collector-ca --from-file=ca.crt=$out/ca.crt
MSG
