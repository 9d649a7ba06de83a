#!/usr/bin/env bash
# Interop: mcp-zt as each holder's OAuth client to an OAuth-protected MCP upstream built with
# the official MCP Python SDK's own authorization server (scripts/oauth_upstream.py; tokens
# live 60 s). Holders link in headless Chromium (Debian's `chromium`, driven by Playwright);
# the SDK's clients call through mcp-zt with client certificates.
#
# Shown: alice and bob link with `mcp-zt link` and call whoami in parallel for over two
# minutes, each answered with their own upstream account while tokens refresh; the upstream
# never sees a client's own Authorization header; an unlinked holder is asked to link with a
# URL elicitation (2025-11-25), input_required (2026-07-28) or a tool error; hostile links
# (another holder's certificate, a callback made elsewhere, a tampered or replayed state) are
# refused; an upstream that
# wants more scope gets one step-up, then a clear error; an upstream whose metadata points at
# another loopback address is refused; static per-holder secrets reach only their holder's
# child; the key rotates; revoking alice revokes her upstream tokens and bob keeps working; no
# token is in plain text in any file mcp-zt wrote; a secrets.key of mode 0644 stops the start.
#
# MCP_ZT_UPLINK_SECONDS sets the parallel phase (default 125).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

setup_browser
build_mcp_zt
seconds="${MCP_ZT_UPLINK_SECONDS:-125}"
work="$(mktemp -d)"
home="$work/pki"
shots="${MCP_ZT_SHOTS:-$work/shots}"
mkdir -p "$shots"
drive() { "$venv/bin/python" "$here/interop_upstream_oauth.py" "$@"; }

ups=()
upstream() { # upstream NAME ARGS...: starts scripts/oauth_upstream.py; sets UP_NAME port
  local name="$1"
  shift
  "$venv/bin/python" "$here/oauth_upstream.py" --port-file "$work/$name.port" \
    --auth-log "$work/$name.auth.log" --revocations-log "$work/$name.revoked.log" \
    --issued-log "$work/issued.log" "$@" >"$work/$name.out" 2>&1 &
  ups+=($!)
  for _ in $(seq 1 200); do [ -s "$work/$name.port" ] && return 0; sleep 0.05; done
  cat "$work/$name.out" >&2
  fail "upstream $name did not start"
}
trap 'stop_server; for p in "${ups[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
upstream gh --token-ttl 60
upstream greedy --insufficient-scope
upstream odd --metadata-host 127.0.0.2

zt ca init
for n in alice bob carol dave; do zt issue --role viewer --name "$n"; done
grant "$home/policy.toml" viewer '["tool:gh__*", "tool:greedy__*", "tool:kv__*"]'
cat >"$home/upstreams.toml" <<EOF
[upstreams.gh]
url = "http://127.0.0.1:$(cat "$work/gh.port")/mcp"
auth = "oauth"

[upstreams.greedy]
url = "http://127.0.0.1:$(cat "$work/greedy.port")/mcp"
auth = "oauth"

[upstreams.odd]
url = "http://127.0.0.1:$(cat "$work/odd.port")/mcp"
auth = "oauth"

[upstreams.kv]
command = "$venv/bin/python"
args = ["$here/gateway/env_upstream.py"]
share = "per-identity"
holder_secrets = ["KV_TOKEN"]
EOF
chmod 600 "$home/upstreams.toml"
printf 'alice-kv-secret-%s\n' "$RANDOM$RANDOM" >"$work/alice.secret"
printf 'bob-kv-secret-%s\n' "$RANDOM$RANDOM" >"$work/bob.secret"
zt secret set kv --name alice --env KV_TOKEN --from-file "$work/alice.secret"

start_server "$home" "$work"
trap 'stop_server; for p in "${ups[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
mcp="https://localhost:$PORT/mcp"
origin="https://localhost:$PORT"
[ "$(stat -c %a "$home/secrets.key")" = 600 ] || fail "secrets.key is not 0600"
echo "ok: serve started with per-holder OAuth upstreams; secrets.key created 0600"

echo "== linking with mcp-zt link (Chromium logs in to the upstream)"
drive link "$MCP_ZT" "$home" alice "$mcp" gh alice-gh "$shots"
drive link "$MCP_ZT" "$home" bob "$mcp" gh bob-gh "$shots"
zt links
grep -q '^alice	gh	read	' "$work/zt.out" && grep -q '^bob	gh	read	' "$work/zt.out" ||
  fail "links does not list alice and bob: $(cat "$work/zt.out")"
echo "ok: mcp-zt links lists alice and bob with scopes and expiry"

echo "== $seconds s of whoami, alice and bob in parallel (60 s tokens)"
drive parallel "$mcp" "$home/ca.crt" "$home" "$seconds" alice=alice-gh bob=bob-gh
refreshed=$(grep -c '"event":"upstream_token_refreshed"' "$home/audit.log" || true)
[ "$refreshed" -ge 2 ] || fail "only $refreshed refresh(es) in $seconds s"
echo "ok: $refreshed token refreshes audited meanwhile"
if grep -q canary "$work/gh.auth.log"; then fail "a client's header reached the upstream"; fi
python3 - "$work/gh.auth.log" "$work/issued.log" <<'PY'
import json, sys
issued = set(open(sys.argv[2]).read().split())
seen = [json.loads(l)["authorization"] for l in open(sys.argv[1])]
bearer = [a for a in seen if a]
bad = [a for a in bearer if not a.startswith("Bearer ") or a[7:] not in issued]
if bad or not bearer:
    sys.exit(f"FAIL: the upstream saw {len(bad)} Authorization value(s) it never issued")
print(f"ok: the upstream saw {len(bearer)} bearer tokens, every one its own (none from mcp-zt or a client)")
PY

echo "== an unlinked holder (carol) is asked to link"
url=$(drive legacy "$mcp" "$home/ca.crt" "$home" carol gh__whoami)
drive modern "$mcp" "$home/ca.crt" "$home" carol gh__whoami
drive plain "$mcp" "$home/ca.crt" "$home" carol gh__whoami >/dev/null

echo "== hostile links"
drive refused "$url" "$origin" "$home/ca.crt" "$home" bob "started for another holder" "$shots"
drive forged "$url" "$home/ca.crt" "$home" carol mallory-gh
url=$(drive legacy "$mcp" "$home/ca.crt" "$home" carol gh__whoami)
callback=$(drive browser "$url" "$origin" "$home/ca.crt" "$home" carol carol-gh "is linked" "$shots")
drive get "${callback/state=st_/state=st_X}" "$home/ca.crt" "$home" carol 403
drive get "$callback" "$home/ca.crt" "$home" carol 403
drive call "$mcp" "$home/ca.crt" "$home" carol gh__whoami carol-gh
grep -q '"event":"upstream_link_refused","name":"bob".*another holder' "$home/audit.log" ||
  fail "no upstream_link_refused line for the other holder's certificate"
echo "ok: refusals audited"

echo "== an upstream that answers insufficient_scope for ever: one step-up, then a clear error"
drive link "$MCP_ZT" "$home" dave "$mcp" greedy dave-gh "$shots"
step=$(drive error "$mcp" "$home/ca.crt" "$home" dave greedy__whoami "needs more scope")
grep -q '"event":"upstream_link_started","name":"dave".*scopes read more:scope' "$home/audit.log" ||
  fail "the step-up link does not ask for read and more:scope"
echo "ok: the step-up link asks for the union of the scopes (read more:scope)"
drive browser "$step" "$origin" "$home/ca.crt" "$home" dave dave-gh "is linked" "$shots" >/dev/null
drive error "$mcp" "$home/ca.crt" "$home" dave greedy__whoami "still answers insufficient_scope"

echo "== an upstream whose metadata points at another loopback address"
if "$MCP_ZT" --home "$home" link odd --url "$mcp" --name dave >"$work/odd.link" 2>&1; then
  fail "a link to odd started"
fi
grep -q "127.0.0.2 is not a public address" "$work/odd.link" || fail "odd: $(cat "$work/odd.link")"
echo "ok: refused before any request to 127.0.0.2: $(tail -1 "$work/odd.link")"

echo "== static per-holder secrets"
bobs=(--url "$mcp" --cert "$home/clients/bob.crt" --key "$home/clients/bob.key" --ca "$home/ca.crt")
if "$MCP_ZT" --home "$home" secret set kv "${bobs[@]}" --env LD_PRELOAD --from-file "$work/bob.secret" \
  2>"$work/preload.err"; then
  fail "a holder set LD_PRELOAD for their child"
fi
grep -q "holder_secrets lists (KV_TOKEN)" "$work/preload.err" || fail "LD_PRELOAD: $(cat "$work/preload.err")"
echo "ok: a name upstreams.toml does not list (LD_PRELOAD) is refused"
"$MCP_ZT" --home "$home" secret set kv "${bobs[@]}" --env KV_TOKEN --from-file "$work/bob.secret"
drive call "$mcp" "$home/ca.crt" "$home" alice kv__token "alice:$(cat "$work/alice.secret")"
drive call "$mcp" "$home/ca.crt" "$home" bob kv__token "bob:$(cat "$work/bob.secret")"
drive call "$mcp" "$home/ca.crt" "$home" carol kv__token "carol:<none>"
zt secret list
grep -q "^alice	kv	env	KV_TOKEN	" "$work/zt.out" && grep -q "^bob	kv	env	KV_TOKEN	" "$work/zt.out" &&
  ! grep -q "kv-secret" "$work/zt.out" ||
  fail "secret list: $(cat "$work/zt.out")"
echo "ok: secret list shows names and dates, never values"

echo "== secrets rotate-key"
old_id=$(sha256sum "$home/secrets.key")
zt secrets rotate-key
[ "$(sha256sum "$home/secrets.key")" != "$old_id" ] || fail "secrets.key did not change"
drive call "$mcp" "$home/ca.crt" "$home" bob gh__whoami bob-gh
echo "ok: $(tail -1 "$work/zt.out")"

echo "== revoking alice's certificate"
zt revoke alice
for _ in $(seq 1 100); do grep -q '"alice-gh"' "$work/gh.revoked.log" 2>/dev/null && break; sleep 0.1; done
python3 - "$work/gh.revoked.log" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
# The refresh token first (revoking it ends alice's whole grant there, so the access token
# that follows is already unknown), then the access token; nobody else's.
hints = [l["hint"] for l in lines]
first = lines[0] if lines else {}
if hints != ["refresh_token", "access_token"] or first.get("username") != "alice-gh" or not first.get("known"):
    sys.exit(f"FAIL: revocations at the upstream: {lines}")
print("ok: the upstream's revocation endpoint got alice's refresh token (her grant) and access token, nobody else's")
PY
zt links
if grep -q '^alice' "$work/zt.out"; then fail "alice's link is still stored"; fi
grep -q '"event":"upstream_token_revoked","name":"alice"' "$home/audit.log" || fail "no upstream_token_revoked line"
grep -q '"event":"secret_deleted","name":"alice"' "$home/audit.log" || fail "no secret_deleted line"
echo "ok: alice's link and secret deleted and audited"
drive call "$mcp" "$home/ca.crt" "$home" bob gh__whoami bob-gh

echo "== no token or secret in plain text in what mcp-zt wrote"
stop_server
python3 - "$work/issued.log" "$work/alice.secret" "$work/bob.secret" "$home" "$work/serve.out" "$work/serve.err" <<'PY'
import os, sys
secrets = open(sys.argv[1]).read().split() + [open(p).read().strip() for p in sys.argv[2:4]]
files = []
for root in sys.argv[4:]:
    if os.path.isdir(root):
        files += [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    else:
        files.append(root)
leaks = [(f, s[:6]) for f in files for s in secrets if s.encode() in open(f, "rb").read()]
if leaks:
    sys.exit(f"FAIL: plaintext found: {leaks[:5]}")
print(f"ok: none of {len(secrets)} tokens and secrets in {len(files)} files (ledger, audit log, server logs)")
PY

echo "== secrets.key readable by others stops the start"
chmod 644 "$home/secrets.key"
if "$MCP_ZT" --home "$home" serve --listen 127.0.0.1:0 >"$work/bad.out" 2>"$work/bad.err"; then
  fail "serve started with secrets.key 0644"
fi
grep -q "chmod 600" "$work/bad.err" || fail "serve: $(cat "$work/bad.err")"
echo "ok: refused: $(grep -m1 secrets.key "$work/bad.err")"
echo "interop-upstream-oauth: all checks passed (screenshots in $shots)"
