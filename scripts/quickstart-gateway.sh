#!/usr/bin/env bash
# mcp-zt in front of an MCP server you already run: a stdio document server (written with the
# official MCP Python SDK) becomes the upstream `docs`; an admin and a viewer see it through
# mcp-zt with the rights their certificates' roles give them. Every step is checked.
#
# Usage: scripts/quickstart-gateway.sh [HOME]   (default: a new temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

need curl
need python3 python3
venv="${MCP_ZT_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'from mcp.server.mcpserver import MCPServer' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2.3,<3'
build_mcp_zt
work="$(mktemp -d)"
home="${1:-$work/pki}"
say() { printf '\n== %s\n' "$*"; }

say "1. a CA, an admin (alice) and a viewer (bob)"
"$MCP_ZT" --home "$home" ca init --trust-domain demo.local
"$MCP_ZT" --home "$home" issue --role admin --name alice
"$MCP_ZT" --home "$home" issue --role viewer --name bob

say "2. the upstream: a stdio MCP server, run by mcp-zt as a child"
"$MCP_ZT" --home "$home" upstream add docs -- "$venv/bin/python" "$here/gateway/demo_upstream.py"
"$MCP_ZT" --home "$home" upstream list

say "3. rights: viewers may search and read public docs; admins everything but deleting"
python3 - "$home/policy.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("[roles.viewer]\n", '[roles.viewer]\nallow = ["tool:docs__search", "resource:docs://public/*"]\n', 1)
s = s.replace('[roles.admin]\ninherits = ["editor"]\n',
              '[roles.admin]\ninherits = ["editor"]\nallow = ["tool:*", "prompt:*", "resource:*"]\ndeny = ["tool:docs__delete_*"]\n', 1)
open(p, "w").write(s)
PY
grep -A3 '^\[roles\.' "$home/policy.toml"

say "4. upstream check: what docs offers and what each role would see"
"$MCP_ZT" --home "$home" upstream check

say "5. serve"
start_server "$home" "$work"
url="https://localhost:$PORT/mcp"
echo "server at $url (pid $SERVER_PID)"

call() { # call WHO SESSION METHOD PARAMS
  mcp "$1" "$url" -H "Mcp-Session-Id: $2" -d "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"$3\",\"params\":$4}"
}

say "6. bob (viewer): sees docs__search and the public resource only"
bob=$(session bob)
out=$(call bob "$bob" tools/list '{}')
echo "$out" | grep -q '"name":"docs__search"' || fail "bob does not see docs__search: $out"
echo "$out" | grep -q 'docs__delete_doc' && fail "bob sees docs__delete_doc: $out"
echo "bob's tools: $(echo "$out" | grep -o '"name":"[a-z_]*"' | tr '\n' ' ')"
out=$(call bob "$bob" tools/call '{"name":"docs__search","arguments":{"query":"identity"}}')
echo "$out" | grep -q 'certificate identity' || fail "docs__search: $out"
echo "docs__search: $(echo "$out" | grep -o 'mcp-zt puts[^"\\]*')"
out=$(call bob "$bob" tools/call '{"name":"docs__delete_doc","arguments":{"doc_id":"1"}}')
echo "$out" | grep -q '"tool not found"' || fail "bob's delete was not refused: $out"
echo "docs__delete_doc: tool not found (as for a tool that does not exist)"
out=$(call bob "$bob" resources/read '{"uri":"docs://private/salaries"}')
echo "$out" | grep -q '"resource not found"' || fail "bob read a private resource: $out"
out=$(call bob "$bob" resources/read '{"uri":"docs://public/readme"}')
echo "$out" | grep -q 'Public notes' || fail "bob cannot read the public readme: $out"
echo "resources: public readable, private answers 'resource not found'"

say "7. alice (admin): everything but deleting; the prompt too"
alice=$(session alice)
out=$(call alice "$alice" prompts/get '{"name":"docs__summarize","arguments":{"doc_id":"2"}}')
echo "$out" | grep -q 'Rotate keys yearly' || fail "docs__summarize: $out"
out=$(call alice "$alice" tools/call '{"name":"docs__delete_doc","arguments":{"doc_id":"1"}}')
echo "$out" | grep -q '"tool not found"' || fail "deny did not win over allow: $out"
echo "docs__summarize: ok; docs__delete_doc: denied (deny wins)"

say "8. the audit log: forwarded calls and refusals"
"$MCP_ZT" --home "$home" audit --event upstream_call --event tool_denied --event resource_denied
grep -q '"event":"upstream_call".*"upstream":"docs"' "$home/audit.log" || fail "no upstream_call line"
stop_server
say "done: CA, certificates and upstreams.toml are in $home"
