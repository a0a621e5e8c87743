#!/bin/sh
# tests/tls_certs.sh DIR: makes the certificates the TLS tests use, with
# openssl's command line, in DIR (created; nothing is committed):
#   ca.pem/ca.key          a test CA
#   server.pem/server.key  localhost + 127.0.0.1, signed by the CA, with
#                          the CA after it (the chain a server sends)
#   server6.pem            as server.pem, and ::1 too
#   expired.pem            signed by the CA, valid 2020-2021
#   notyet.pem             signed by the CA, valid from 2090
#   wrongname.pem          signed by the CA, for other.example only
#   nameonly.pem           signed by the CA, for the name localhost only (no
#                          IP): valid for https://localhost, not for 127.0.0.1
#   iponly.pem             signed by the CA, for 127.0.0.1 only (no name):
#                          the converse (the proxy tests' proxy is 127.0.0.1)
#   selfsigned.pem         localhost, signed by its own key
#   badusage.pem           signed by the CA, extended key usage clientAuth only
# Every leaf shares server.key. Exits non-zero on any failure.
set -eu
dir="$1"
mkdir -p "$dir"
cd "$dir"
ossl() { openssl "$@" >/dev/null 2>ossl.err || { cat ossl.err >&2; exit 1; }; }

ossl ecparam -name prime256v1 -genkey -noout -out ca.key
ossl ecparam -name prime256v1 -genkey -noout -out server.key
ossl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=asynckit test CA" \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

mkdir -p db
: >db/index.txt
echo 1000 >db/serial
cat >ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = db/index.txt
serial = db/serial
new_certs_dir = db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
CNF

# leaf NAME CN SAN EKU [startdate enddate] [selfsign]
leaf() {
  name="$1" cn="$2" san="$3" eku="$4" start="${5:-}" end="${6:-}"
  cat >"$name.ext" <<EXT
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = $eku
subjectAltName = $san
EXT
  ossl req -new -key server.key -subj "/CN=$cn" -out "$name.csr"
  if [ -n "$start" ]; then
    dates="-startdate $start -enddate $end"
  else
    dates="-days 825"
  fi
  # shellcheck disable=SC2086
  ossl ca -batch -notext -config ca.cnf $dates -extfile "$name.ext" -in "$name.csr" \
    -out "$name.pem"
}

leaf server localhost "DNS:localhost,IP:127.0.0.1" serverAuth
cat ca.pem >>server.pem
leaf server6 localhost "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
cat ca.pem >>server6.pem
leaf expired localhost "DNS:localhost,IP:127.0.0.1" serverAuth 20200101000000Z 20210101000000Z
leaf notyet localhost "DNS:localhost,IP:127.0.0.1" serverAuth 20900101000000Z 20910101000000Z
leaf wrongname other.example "DNS:other.example" serverAuth
leaf nameonly localhost "DNS:localhost" serverAuth
leaf iponly 127.0.0.1 "IP:127.0.0.1" serverAuth
leaf badusage localhost "DNS:localhost,IP:127.0.0.1" clientAuth
ossl req -x509 -new -key server.key -sha256 -days 825 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out selfsigned.pem
rm -f ossl.err ./*.csr ./*.ext
