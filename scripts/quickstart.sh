#!/usr/bin/env bash
# From nothing to a running mTLS MCP server: a CA, an admin and a viewer certificate, the
# server, a tool call that is allowed, one that is denied, a revocation and the refused
# reconnect. Every step is checked; the script fails loudly if mcp-zt misbehaves.
#
# Usage: scripts/quickstart.sh [HOME]   (default: a new temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

need curl
need openssl
build_mcp_zt
work="$(mktemp -d)"
home="${1:-$work/pki}"
say() { printf '\n== %s\n' "$*"; }

say "1. create the CA in $home"
"$MCP_ZT" --home "$home" ca init --trust-domain demo.local

say "2. issue an admin (alice) and a viewer (bob) certificate"
"$MCP_ZT" --home "$home" issue --role admin --name alice
"$MCP_ZT" --home "$home" issue --role viewer --name bob
# The root is the trust anchor; the intermediate that signed them follows each leaf in its file.
openssl verify -CAfile "$home/ca.crt" -untrusted "$home/intermediate.crt" -purpose sslclient \
  "$home/clients/alice.crt" "$home/clients/bob.crt"

say "3. start the server (client certificates required)"
start_server "$home" "$work"
url="https://localhost:$PORT/mcp"
echo "server at $url (pid $SERVER_PID)"

init="$MCP_INIT"

say "4. alice (admin) calls write_data and whoami: allowed"
alice=$(session alice)
out=$(mcp alice "$url" -H "Mcp-Session-Id: $alice" \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_data","arguments":{"key":"greeting","value":"hello"}}}')
echo "$out" | grep '^data: {' || fail "write_data: $out"
echo "$out" | grep -q '"written":true' || fail "write_data was not allowed: $out"
out=$(mcp alice "$url" -H "Mcp-Session-Id: $alice" \
  -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}')
echo "$out" | grep -q '"role\\":\\"admin\\"' || fail "whoami: $out"
echo "whoami: admin"

say "5. bob (viewer) reads it, then calls delete_data: denied (looks like an unknown tool)"
bob=$(session bob)
out=$(mcp bob "$url" -H "Mcp-Session-Id: $bob" \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_data","arguments":{"key":"greeting"}}}')
echo "$out" | grep -q '"value":"hello"' || fail "read_data: $out"
echo "read_data: hello"
out=$(mcp bob "$url" -H "Mcp-Session-Id: $bob" \
  -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_data","arguments":{"key":"greeting"}}}')
echo "$out" | grep '^data: {'
echo "$out" | grep -q '"tool not found"' || fail "delete_data was not denied: $out"

say "6. revoke bob while his session stream is open: it is cut, and his reconnect is refused"
# Bob keeps a server-sent-events stream open, as MCP clients do.
seen=$(grep -c '"event":"handshake_ok".*"name":"bob"' "$home/audit.log")
mcp bob -N -X GET -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $bob" "$url" \
  >/dev/null 2>"$work/sse.err" &
sse=$!
for _ in $(seq 1 100); do
  [ "$(grep -c '"event":"handshake_ok".*"name":"bob"' "$home/audit.log")" -gt "$seen" ] && break
  sleep 0.05
done
"$MCP_ZT" --home "$home" revoke bob --reason key-compromise
for _ in $(seq 1 100); do kill -0 "$sse" 2>/dev/null || break; sleep 0.01; done
kill -0 "$sse" 2>/dev/null && fail "bob's open stream survived the revocation"
echo "bob's open stream: closed by the server ($(tr -d '\n' <"$work/sse.err"))"
if mcp bob "$url" -d "$init" >/dev/null 2>"$work/curl.err"; then
  fail "bob's revoked certificate was accepted"
fi
echo "bob's reconnect: $(cat "$work/curl.err")"
if openssl verify -crl_check -CRLfile "$home/crl.pem" -CAfile "$home/ca.crt" \
  -untrusted "$home/intermediate.crt" "$home/clients/bob.crt" >"$work/verify.out" 2>&1; then
  fail "openssl accepted bob against the CRL"
fi
grep -q "certificate revoked" "$work/verify.out" || fail "openssl refused bob, but not as revoked: $(cat "$work/verify.out")"
echo "openssl: bob's certificate is revoked in crl.pem"
mcp alice "$url" -d "$init" -o /dev/null -w 'alice still connects: HTTP %{http_code}\n'

say "7. the audit log"
"$MCP_ZT" --home "$home" audit --event tool_allowed --event tool_denied --event revocation_applied \
  --event connection_cut --event handshake_rejected
stop_server
say "done: CA and certificates are in $home"
