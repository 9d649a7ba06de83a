#!/usr/bin/env bash
# Interop: mcp-zt's CA hierarchy and foreign trust, checked with tools mcp-zt did not write
# (OpenSSL, curl, the official MCP Python SDK) and a corporate CA made with OpenSSL alone.
#
#  1. hierarchy: a leaf verifies up to the root (ca.crt) through the intermediate, the CRL
#     verifies against the intermediate, the server sends its certificate and the
#     intermediate, and curl and the SDK connect with the root as their only trust anchor;
#  2. offline root: `ca init --offline-root DIR` leaves no root key in HOME, and
#     `ca rotate --root-key DIR/root.key` signs new leaves with a new intermediate while the
#     old leaves still verify through the old one;
#  3. foreign trust: certificates of the corporate CA get roles only from the [trust.corp]
#     rules (subject, SPIFFE URI); no matching rule is refused, even with mcp-zt's role
#     extension claiming admin; a certificate listed in a new CRL file is refused while the
#     server runs, and a CRL past its nextUpdate (grace 0 s) refuses every handshake;
#  4. import: mcp-zt runs as an intermediate under the corporate root; its leaves verify to
#     that root and curl connects trusting that root only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

need curl
need openssl
setup_python_sdk

build_mcp_zt
work="$(mktemp -d)"
started=$SECONDS

# run CMD...: runs a command quietly; its output is shown only when it fails.
run() {
  "$@" >"$work/run.out" 2>&1 || {
    cat "$work/run.out" >&2
    fail "$*"
  }
}

# post CA CERT KEY URL: an MCP initialize POST with curl; prints the HTTP status. Fails (and
# leaves curl's error in $work/curl.err) when the handshake or the request fails.
post() {
  curl -sS --max-time 10 --cacert "$1" --cert "$2" --key "$3" \
    -H 'Accept: application/json, text/event-stream' -H 'Content-Type: application/json' \
    -d "$MCP_INIT" -o /dev/null -w '%{http_code}' "$4" 2>"$work/curl.err"
}

# sdk CERT KEY ROLE: the Python SDK client at the server on $home, trusting $home/ca.crt only.
sdk() {
  "$venv/bin/python" "$here/interop_python_client.py" "https://localhost:$PORT/mcp" \
    "$home/ca.crt" "$1" "$2" "$3" >"$work/sdk.out" 2>&1 || {
    cat "$work/sdk.out" >&2
    fail "the Python SDK client did not connect as $3 with $1"
  }
}

# audit_wait STRING...: waits (up to 5 s) for a line of $home/audit.log holding every STRING,
# and prints it.
audit_wait() {
  local _ s lines
  for _ in $(seq 1 100); do
    lines=$(cat "$home/audit.log" 2>/dev/null || true)
    for s in "$@"; do
      lines=$(grep -F -- "$s" <<<"$lines" || true)
    done
    if [ -n "$lines" ]; then
      head -n1 <<<"$lines"
      return 0
    fi
    sleep 0.05
  done
  fail "no audit line holds: $*"
}

# refused NAME CERT KEY REASON: curl's handshake with CERT fails and the audit log has a
# handshake_rejected line for NAME (the certificate's CN) whose reason holds REASON.
refused() {
  local code
  alert=
  if code=$(post "$home/ca.crt" "$2" "$3" "$url"); then
    fail "$1 was accepted (HTTP $code)"
  fi
  audit_wait '"event":"handshake_rejected"' "\"claimed_name\":\"$1\"" "$4" >/dev/null
  alert=$(grep -o 'alert [a-z ]*' "$work/curl.err" || cat "$work/curl.err")
}

echo "== 1. hierarchy: root, intermediate, leaf"
home="$work/h1"
zt ca init
zt issue --role admin --name alice
run openssl verify -CAfile "$home/ca.crt" -untrusted "$home/intermediate.crt" -purpose sslclient \
  "$home/clients/alice.crt"
grep -q ': OK$' "$work/run.out" || fail "openssl verify: $(cat "$work/run.out")"
echo "ok: openssl verify alice through the intermediate to ca.crt"
run openssl crl -in "$home/crl.pem" -CAfile "$home/intermediate.crt" -noout
grep -q '^verify OK' "$work/run.out" || fail "openssl crl: $(cat "$work/run.out")"
echo "ok: openssl crl verifies crl.pem against the intermediate"

mkdir -p "$work/logs1"
start_server "$home" "$work/logs1"
url="https://localhost:$PORT/mcp"
timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -showcerts \
  -CAfile "$home/ca.crt" -cert "$home/clients/alice.crt" -key "$home/clients/alice.key" \
  </dev/null >"$work/s_client.out" 2>&1 || true
n=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$work/s_client.out" || true)
[ "$n" = 2 ] || fail "s_client: the server sent $n certificates, not 2: $(cat "$work/s_client.out")"
grep -q '^ *1 s:.*Intermediate' "$work/s_client.out" ||
  fail "s_client: the second certificate is not the intermediate"
grep -q 'Verify return code: 0 (ok)' "$work/s_client.out" ||
  fail "s_client: $(grep 'Verify return code' "$work/s_client.out")"
echo "ok: openssl s_client: chain of 2 (server + intermediate), verify return code 0"
code=$(post "$home/ca.crt" "$home/clients/alice.crt" "$home/clients/alice.key" "$url") ||
  fail "curl as alice: $(cat "$work/curl.err")"
[ "$code" = 200 ] || fail "curl as alice: HTTP $code"
echo "ok: curl --cacert ca.crt as alice: HTTP 200"
sdk "$home/clients/alice.crt" "$home/clients/alice.key" admin
echo "ok: Python SDK with ca.crt as its only anchor: alice is admin"
stop_server

echo "== 2. offline root and rotation"
home="$work/h2"
zt ca init --offline-root "$work/offline"
[ -z "$(find "$home" -name root.key)" ] || fail "a root.key is in HOME: $(find "$home" -name root.key)"
[ -s "$work/offline/root.key" ] || fail "no root key in the offline folder"
echo "ok: no root.key under HOME, the root key is in the offline folder"
zt issue --role viewer --name old
old=$(openssl x509 -in "$home/intermediate.crt" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
[ -s "$home/intermediates/$old.crt" ] || fail "no intermediates/$old.crt"
zt ca rotate --root-key "$work/offline/root.key"
zt issue --role viewer --name new
issuer_old=$(openssl x509 -in "$home/clients/old.crt" -noout -issuer)
issuer_new=$(openssl x509 -in "$home/clients/new.crt" -noout -issuer)
[ "$issuer_old" != "$issuer_new" ] || fail "the new leaf has the old issuer: $issuer_new"
run openssl verify -CAfile "$home/ca.crt" -untrusted "$home/intermediate.crt" -purpose sslclient \
  "$home/clients/new.crt"
echo "ok: new leaf verifies through the new intermediate ($issuer_new)"
run openssl verify -CAfile "$home/ca.crt" -untrusted "$home/intermediates/$old.crt" \
  -purpose sslclient "$home/clients/old.crt"
if openssl verify -CAfile "$home/ca.crt" -untrusted "$home/intermediate.crt" \
  "$home/clients/old.crt" >/dev/null 2>&1; then
  fail "the old leaf verified through the new intermediate"
fi
echo "ok: old leaf still verifies through intermediates/$old.crt ($issuer_old)"

echo "== 3. foreign trust: a corporate CA made with openssl"
corp="$work/corp"
mkdir -p "$corp"
: >"$corp/index.txt"
echo 1000 >"$corp/crlnumber"
cat >"$corp/openssl.cnf" <<EOF
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused

[ ca ]
default_ca = corp_ca
[ corp_ca ]
database = $corp/index.txt
crlnumber = $corp/crlnumber
certificate = $corp/root.pem
private_key = $corp/root.key
default_md = sha256
default_crl_days = 1
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always

[ root_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ intermediate_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ spiffe_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://corp.example/ns/prod/sa/api
# mcp-zt's role extension claiming admin, encoded as mcp-zt writes it (SEQUENCE OF UTF8String)
[ role_claim_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
2.25.2722895933408864092 = ASN1:SEQUENCE:role_claim
[ role_claim ]
role = UTF8String:admin
EOF
cnf="$corp/openssl.cnf"
corp_key() {
  run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$corp/$1.key"
}
serial=4096
# corp_cert NAME SUBJECT EXTENSIONS: NAME.key and NAME.pem, signed by the corporate root.
corp_cert() {
  serial=$((serial + 1))
  corp_key "$1"
  run openssl req -new -config "$cnf" -key "$corp/$1.key" -subj "$2" -out "$corp/$1.csr"
  run openssl x509 -req -in "$corp/$1.csr" -CA "$corp/root.pem" -CAkey "$corp/root.key" \
    -set_serial "$serial" -days 2 -sha256 -extfile "$cnf" -extensions "$3" -out "$corp/$1.pem"
}
# corp_crl FILE [openssl ca options]: a CRL of the corporate root, renamed into FILE at once.
corp_crl() {
  local dest="$1"
  shift
  run openssl ca -config "$cnf" -gencrl -out "$corp/crl.new" "$@"
  cp "$corp/crl.new" "$dest.new"
  mv "$dest.new" "$dest"
}
corp_key root
run openssl req -x509 -new -config "$cnf" -extensions root_ext -key "$corp/root.key" \
  -subj "/O=Example Corp/CN=Example Corp Root CA" -days 730 -sha256 -out "$corp/root.pem"
corp_cert sam "/O=Example Corp/OU=sre/CN=sam" client_ext
corp_cert api "/O=Example Corp/CN=api" spiffe_ext
corp_cert mia "/O=Example Corp/OU=marketing/CN=mia" client_ext
corp_cert mallory "/O=Other/CN=mallory" role_claim_ext
for leaf in sam api mia mallory; do
  run openssl verify -CAfile "$corp/root.pem" -purpose sslclient "$corp/$leaf.pem"
done
openssl x509 -in "$corp/mallory.pem" -noout -text | grep -A1 '2\.25\.2722895933408864092' |
  grep -q 'admin' || fail "mallory's certificate lacks the role extension"
# The same bytes as the extension in a certificate mcp-zt issues.
[ "$(openssl x509 -in "$corp/mallory.pem" -noout -text | grep -A1 '2\.25\.2722895933408864092')" = \
  "$(openssl x509 -in "$work/h1/clients/alice.crt" -noout -text | grep -A1 '2\.25\.2722895933408864092')" ] ||
  fail "mallory's role extension differs from the one mcp-zt writes"
echo "ok: openssl made the corporate root and 4 client certificates (mallory's claims admin)"

home="$work/h1"
cp "$corp/root.pem" "$home/corp-ca.pem"
corp_crl "$home/corp.crl"
cat >>"$home/policy.toml" <<'EOF'

[trust.corp]
ca = "corp-ca.pem"
crl = "corp.crl"
crl_grace = "0s"

[[trust.corp.roles]]
role = "admin"
match = { ou = "sre", o = "Example Corp" }

[[trust.corp.roles]]
role = "viewer"
match = { san_uri = "spiffe://corp.example/*" }
EOF
zt doctor
echo "ok: mcp-zt doctor accepts the home with [trust.corp]"
mkdir -p "$work/logs3"
start_server "$home" "$work/logs3"
url="https://localhost:$PORT/mcp"
sdk "$corp/sam.pem" "$corp/sam.key" admin
echo "ok: (a) sam (O=Example Corp, OU=sre): Python SDK connects as admin"
sdk "$corp/api.pem" "$corp/api.key" viewer
echo "ok: (b) api (URI spiffe://corp.example/ns/prod/sa/api): Python SDK connects as viewer"
refused mia "$corp/mia.pem" "$corp/mia.key" "no role rule"
echo "ok: (c) mia (OU=marketing) matches no rule: refused ($alert), audit: no role rule"
refused mallory "$corp/mallory.pem" "$corp/mallory.key" "no role rule"
echo "ok: (d) mallory's own admin role extension grants nothing: refused ($alert), audit: no role rule"

run openssl ca -config "$cnf" -revoke "$corp/sam.pem" -crl_reason keyCompromise
corp_crl "$home/corp.crl"
audit_wait '"event":"revocation_applied"' 'newly listed in the CRL of trust' >/dev/null
refused sam "$corp/sam.pem" "$corp/sam.key" "revoked"
code=$(post "$home/ca.crt" "$corp/api.pem" "$corp/api.key" "$url") ||
  fail "api after sam's revocation: $(cat "$work/curl.err")"
[ "$code" = 200 ] || fail "api after sam's revocation: HTTP $code"
echo "ok: (e) sam listed in the new CRL file while the server runs: refused ($alert), audit: revoked; api still HTTP 200"

loaded=$(grep -c '"event":"trust_loaded"' "$home/audit.log")
corp_crl "$home/corp.crl" -crlsec 3
next=$(date -d "$(openssl crl -in "$home/corp.crl" -noout -nextupdate | cut -d= -f2)" +%s)
for _ in $(seq 1 100); do
  [ "$(grep -c '"event":"trust_loaded"' "$home/audit.log")" -gt "$loaded" ] && break
  sleep 0.05
done
[ "$(grep -c '"event":"trust_loaded"' "$home/audit.log")" -gt "$loaded" ] ||
  fail "the server did not load the short-lived CRL"
while [ "$(date +%s)" -le $((next + 1)) ]; do sleep 0.2; done
refused api "$corp/api.pem" "$corp/api.key" "CRL is stale"
echo "ok: (f) the CRL passed its nextUpdate (grace 0 s): api refused ($alert), audit: CRL is stale"
stop_server

echo "== 4. import: mcp-zt as an intermediate of the corporate root"
corp_key inter
run openssl req -new -config "$cnf" -key "$corp/inter.key" \
  -subj "/O=Example Corp/OU=mcp-zt/CN=Example Corp mcp-zt CA" -out "$corp/inter.csr"
run openssl x509 -req -in "$corp/inter.csr" -CA "$corp/root.pem" -CAkey "$corp/root.key" \
  -set_serial 8192 -days 365 -sha256 -extfile "$cnf" -extensions intermediate_ext \
  -out "$corp/inter.pem"
run openssl pkcs8 -topk8 -nocrypt -in "$corp/inter.key" -out "$corp/inter.p8"
chmod 600 "$corp/inter.p8"
grep -q 'BEGIN PRIVATE KEY' "$corp/inter.p8" || fail "the intermediate key is not PKCS#8"
cat "$corp/inter.pem" "$corp/root.pem" >"$corp/chain.pem"
home="$work/h3"
zt ca init --import-cert "$corp/chain.pem" --import-key "$corp/inter.p8"
[ "$(openssl x509 -in "$home/ca.crt" -noout -fingerprint -sha256)" = \
  "$(openssl x509 -in "$corp/root.pem" -noout -fingerprint -sha256)" ] ||
  fail "ca.crt is not the corporate root"
zt issue --role editor --name ivy
run openssl verify -CAfile "$corp/root.pem" -untrusted "$home/intermediate.crt" -purpose sslclient \
  "$home/clients/ivy.crt"
grep -q ': OK$' "$work/run.out" || fail "openssl verify: $(cat "$work/run.out")"
echo "ok: ca.crt is the corporate root; ivy verifies to it through the imported intermediate"
mkdir -p "$work/logs4"
start_server "$home" "$work/logs4"
url="https://localhost:$PORT/mcp"
code=$(post "$corp/root.pem" "$home/clients/ivy.crt" "$home/clients/ivy.key" "$url") ||
  fail "curl as ivy: $(cat "$work/curl.err")"
[ "$code" = 200 ] || fail "curl as ivy: HTTP $code"
echo "ok: curl --cacert corp root.pem as ivy: HTTP 200"
stop_server
rm -rf "$work"
echo "interop-pki: ok ($((SECONDS - started)) s)"
