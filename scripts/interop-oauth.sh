#!/usr/bin/env bash
# Interop: the official MCP Python SDK's OAuth client (OAuthClientProvider) against
# `mcp-zt serve --oauth`, once with dynamic client registration and once with a client ID
# metadata document served over HTTPS on loopback. The holder approves in headless Chromium
# (Debian's `chromium`, driven by Playwright for Python) that presents the holder's client
# certificate on the login name. Then the holder's certificate is revoked: the next call gets
# 401, the open stream is cut, a refresh gets invalid_grant.
#
# Screenshots of the consent and no-certificate pages go to $MCP_ZT_SHOTS (default: a
# temporary folder, printed at the end).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

setup_browser
need openssl openssl

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
shots="${MCP_ZT_SHOTS:-$work/shots}"
mkdir -p "$shots"
zt ca init
zt issue --role admin --name alice
zt issue --role viewer --name vic
zt issue --role admin --name cleo
zt upstream add docs -- "$venv/bin/python" "$here/gateway/demo_upstream.py"
python3 - "$home/policy.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("[roles.viewer]\n", '[roles.viewer]\nallow = ["tool:docs__search"]\n', 1)
s = s.replace('[roles.admin]\ninherits = ["editor"]\n',
              '[roles.admin]\ninherits = ["editor"]\nallow = ["tool:*"]\ndeny = ["tool:docs__delete_*"]\n', 1)
open(p, "w").write(s)
PY

# The metadata document's server: HTTPS on loopback with a certificate from a throwaway CA,
# which mcp-zt is told to trust (--oauth-cimd-ca).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=cimd test CA" -keyout "$work/cimd-ca.key" -out "$work/cimd-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/cimd.key" -out "$work/cimd.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  >"$work/cimd.ext"
openssl x509 -req -in "$work/cimd.csr" -CA "$work/cimd-ca.crt" -CAkey "$work/cimd-ca.key" \
  -CAcreateserial -days 2 -extfile "$work/cimd.ext" -out "$work/cimd.crt" 2>/dev/null
python3 "$here/cimd_server.py" "$work/cimd.crt" "$work/cimd.key" "$work/cimd.port" &
cimd_pid=$!
for _ in $(seq 1 100); do [ -s "$work/cimd.port" ] && break; sleep 0.05; done
cimd_port=$(cat "$work/cimd.port")

PORT=$(free_port)
mcp_url="https://localhost:$PORT/mcp"
login_url="https://127.0.0.1:$PORT"
"$MCP_ZT" --home "$home" serve --listen "127.0.0.1:$PORT" --oauth --public-url "$mcp_url" \
  --login-url "$login_url" --oauth-allow-private-cimd --oauth-cimd-ca "$work/cimd-ca.crt" \
  >"$work/serve.out" 2>"$work/serve.err" &
SERVER_PID=$!
trap 'stop_server; kill "$cimd_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^listening ' "$work/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$work/serve.err" >&2; fail "serve --oauth did not start"; }
  sleep 0.05
done

client() { # client MODE NAME ROLE [CIMD_URL]
  "$venv/bin/python" "$here/interop_python_oauth.py" "$1" "$mcp_url" "$login_url" \
    "$home/ca.crt" "$home/clients/$2.crt" "$home/clients/$2.key" "$3" "$MCP_ZT" "$home" \
    "$shots" ${4:+"$4"}
}
echo "== DCR, alice (admin)"
client dcr alice admin
echo "== CIMD, vic (viewer)"
client cimd vic viewer "https://localhost:$cimd_port/client.json"
echo "== DCR, approved from the command line by cleo (admin), the browser has no certificate"
client cli cleo admin

audit="$home/audit.log"
for event in client_registered cimd_fetched authorization_shown authorization_approved \
  code_exchanged authorization_needs_certificate; do
  grep -q "\"event\":\"$event\"" "$audit" || fail "no $event line in the audit log"
done
grep -q '"event":"tool_allowed".*"tool":"docs__search".*"via":"oauth"' "$audit" ||
  fail "the upstream call through a token is not audited with via: oauth"
grep -q '"event":"token_refused".*"name":"alice".*"reason":"certificate revoked"' "$audit" ||
  fail "the refused token of the revoked certificate is not audited with its holder"
if grep -q 'mzt_at_\|mzt_rt_\|mzt_ac_' "$audit"; then
  fail "a token or code is in the audit log"
fi
grep -q '"event":"authorization_approved".*"name":"cleo".*command line, approval code' "$audit" ||
  fail "the command-line approval is not audited"
ls "$shots"/consent-dcr.png "$shots"/consent-cimd.png "$shots"/no-certificate-dcr.png >/dev/null
echo "screenshots: $shots"
echo "interop-oauth: ok"
