#!/bin/sh
# Throwaway certificates for the specs (EC P-256, valid 30 days).
#
#   sh spec/support/certs.sh DIR
#
# Writes into DIR:
#   ca.key ca.crt               the suite's CA, "kfsmtp test CA"
#   server.key server.crt       CN=localhost, DNS:localhost, IP:127.0.0.1, IP:::1,
#                               signed by ca
#   other-ca.key other-ca.crt   an unrelated CA (for "unknown issuer" specs)
#   wronghost.key wronghost.crt DNS:mail.example.net only, signed by ca
#
# Quiet on success; on failure prints openssl's messages and exits non-zero.
# Idempotent: does nothing when DIR/server.crt already exists (server.crt is
# put in place last, so its presence means every file is there).
set -e

dir=${1:?usage: sh certs.sh DIR}
[ -f "$dir/server.crt" ] && exit 0
mkdir -p "$dir"
cd "$dir"

days=30
err=certs.err

# run CMD...: run quietly; on failure show what openssl said and stop.
run() {
  if ! "$@" >"$err" 2>&1; then
    cat "$err" >&2
    rm -f "$err"
    exit 1
  fi
}

# ca NAME CN: a self-signed CA key and certificate.
ca() {
  run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -keyout "$1.key" -out "$1.crt" -days "$days" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME CN SAN OUT: a server key, and a certificate signed by ca written to OUT.
leaf() {
  cat >"$1.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $3
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  run openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key \
    -CAserial ca.srl -CAcreateserial -days "$days" -sha256 \
    -extfile "$1.ext" -out "$4"
  rm -f "$1.csr" "$1.ext"
}

ca ca "kfsmtp test CA"
ca other-ca "kfsmtp other test CA"
leaf wronghost mail.example.net "DNS:mail.example.net" wronghost.crt
leaf server localhost "DNS:localhost, IP:127.0.0.1, IP:::1" server.crt.tmp
rm -f "$err" ca.srl
mv server.crt.tmp server.crt
