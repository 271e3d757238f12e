#!/usr/bin/env bash
# Makes the certificates for mutual TLS between the services (components/mtls):
# a private CA and, for each of trainer, sampler, evaluator and gateway, a key
# and a certificate for both server and client use, named for its Service.
#
#   k8s/scripts/make-certs.sh OUT_DIR [NAMESPACE]            write the files
#   k8s/scripts/make-certs.sh --apply OUT_DIR [NAMESPACE]    and create/update the Secrets
#
# OUT_DIR/ca.key and OUT_DIR/ca.crt are the CA (keep ca.key offline, or
# delete it and make a new CA at the next rotation); OUT_DIR/<service>/ holds
# tls.crt, tls.key and ca.crt, the layout of the Secrets "synth-<service>-tls"
# (the same as cert-manager's). An existing CA in OUT_DIR is reused, so running
# it again renews the service certificates under the same CA.
#
# Environment: DAYS (certificate lifetime, default 365), EXTRA_SANS (more
# subjectAltName entries for every certificate, e.g. "IP:127.0.0.2,DNS:x";
# the tests use it for loopback addresses).
set -euo pipefail

apply=0
if [ "${1:-}" = "--apply" ]; then
  apply=1
  shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
out=$1
namespace=${2:-synth}
days=${DAYS:-365}
services="trainer sampler evaluator gateway"

umask 077
mkdir -p "$out"
if [ ! -s "$out/ca.crt" ] || [ ! -s "$out/ca.key" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days $((days * 3)) -subj "/CN=synth internal CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for svc in $services; do
  dir="$out/$svc"
  mkdir -p "$dir"
  sans="DNS:$svc,DNS:$svc.$namespace,DNS:$svc.$namespace.svc,DNS:$svc.$namespace.svc.cluster.local"
  if [ -n "${EXTRA_SANS:-}" ]; then
    sans="$sans,$EXTRA_SANS"
  fi
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" -subj "/CN=$svc" 2>/dev/null
  cat > "$dir/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EOF
  openssl x509 -req -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$dir/ext.cnf" -out "$dir/tls.crt" 2>/dev/null
  cp "$out/ca.crt" "$dir/ca.crt"
  rm -f "$dir/tls.csr" "$dir/ext.cnf"
  if [ "$apply" = 1 ]; then
    kubectl -n "$namespace" create secret generic "synth-$svc-tls" \
      --from-file=tls.crt="$dir/tls.crt" --from-file=tls.key="$dir/tls.key" --from-file=ca.crt="$dir/ca.crt" \
      --dry-run=client -o yaml | kubectl apply -f -
  fi
done
echo "certificates for: $services (namespace $namespace) in $out"
