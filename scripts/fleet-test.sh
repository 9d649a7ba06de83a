#!/usr/bin/env bash
# A fleet on loopback: PostgreSQL (a throwaway cluster of Debian's package, TLS on), three
# `mcp-zt serve` replicas sharing it as their ledger, and HAProxy in TCP mode sending PROXY v2
# in front. fleet_check.py then drives 32 clients through HAProxy and checks:
#
#  1. /metrics of every replica parses (prometheus_client's OpenMetrics parser) and counts
#     exactly the calls the clients made; the audit logs show the clients' real address;
#  2. N revocations from the CLI (an admin HOME with no server, writing the ledger directly)
#     cut the certificate's connections on every replica and refuse the reconnect: p50/p99 of
#     revoke-to-cut, p99 <= 1 s, zero calls accepted after the cut;
#  3. kill -9 of one replica under load: the clients come back through HAProxy; no revoked
#     certificate is accepted; `doctor` on the ledger afterwards;
#  4. PostgreSQL stopped: known-good clients keep calling; `revoke` is refused with a clear
#     error (not queued); once the database is back a revocation cuts everywhere within 1 s;
# then, apart:
#  5. a foreign trust on two more replicas: a serial one replica's CRL lists is refused by the
#     other, whose CRL leaves it out (the ledger shares what was seen revoked);
#  6. `ledger migrate` of a sled ledger of M records into a second database: `doctor` green on
#     both, `list --json` equal, and the CRL published from each ledger lists the same serials.
#
# Usage: scripts/fleet-test.sh [short|full]
#   short (CI):  32 clients, 10 revocations, database down 4 s, 2,000-record migration;
#                revoke-to-cut p99 <= 2 s (CI runs debug builds, and the figure includes the
#                `revoke` process itself)
#   full:        32 clients, 20 revocations, database down 10 s, 10,000-record migration;
#                revoke-to-cut p99 <= 1 s (release build, MCP_ZT_PROFILE=release)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

mode="${1:-full}"
case "$mode" in
  short) revocations=10 down=4 records=2000 budget=2 ;;
  full) revocations=20 down=10 records=10000 budget=1 ;;
  *) fail "usage: $0 [short|full]" ;;
esac
clients=32

need openssl
need haproxy
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$pgbin/initdb" ] || fail "PostgreSQL server binaries not found (apt-get install postgresql)"

root="$(cd "$here/.." && pwd)"
if [ -n "${MCP_ZT_BIN:-}" ]; then
  MCP_ZT="$MCP_ZT_BIN"
  seed="$(dirname "$MCP_ZT_BIN")/examples/seed_ledger"
  contract="$(dirname "$MCP_ZT_BIN")/examples/ledger_contract"
  [ -x "$seed" ] && [ -x "$contract" ] ||
    (cd "$root" && cargo build --locked --quiet --example seed_ledger --example ledger_contract)
else
  build_tools "${MCP_ZT_PROFILE:-release}"
  seed="$TOOLS/examples/seed_ledger"
  contract="$TOOLS/examples/ledger_contract"
fi

venv="${MCP_ZT_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import prometheus_client' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'prometheus-client>=0.20'

work="$(mktemp -d)"
# PostgreSQL runs as the postgres user when this runs as root: its folder must be its own.
pgdir="$(mktemp -d /tmp/mcpzt-pg.XXXXXX)"
chmod 755 "$pgdir"
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$work/extra.pids" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl -D $pgdir/data -m immediate stop" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work" "$pgdir"
}
trap cleanup EXIT

as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

# --- PostgreSQL with TLS (its certificate from a throwaway openssl CA) ---
pgport=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=fleet db CA" \
  -keyout "$work/dbca.key" -out "$work/dbca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$pgdir/server.key" -out "$work/db.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/db.ext"
openssl x509 -req -in "$work/db.csr" -CA "$work/dbca.crt" -CAkey "$work/dbca.key" -days 1 \
  -extfile "$work/db.ext" -out "$pgdir/server.crt" 2>/dev/null
chmod 600 "$pgdir/server.key"
[ "$(id -u)" = 0 ] && chown -R postgres "$pgdir"
as_pg "$pgbin/initdb -D $pgdir/data -A trust -U postgres" >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log" >&2; fail "initdb"; }
pg_start="$pgbin/pg_ctl -D $pgdir/data -l $pgdir/pg.log -w -o '-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$pgdir/server.crt -c ssl_key_file=$pgdir/server.key' start"
pg_stop="$pgbin/pg_ctl -D $pgdir/data -m fast -w stop"
as_pg "$pg_start" >/dev/null || { cat "$pgdir/pg.log" >&2; fail "PostgreSQL did not start"; }
# For fleet_check.py, which stops and starts the database mid-run.
for verb in start stop; do
  if [ "$verb" = start ]; then cmd="$pg_start"; else cmd="$pg_stop"; fi
  if [ "$(id -u)" = 0 ]; then
    printf '#!/usr/bin/env bash\nexec su postgres -s /bin/sh -c %q\n' "$cmd" >"$work/pg-$verb.sh"
  else
    printf '#!/usr/bin/env bash\nexec sh -c %q\n' "$cmd" >"$work/pg-$verb.sh"
  fi
  chmod 700 "$work/pg-$verb.sh"
done
as_pg "$pgbin/psql -h $pgdir -p $pgport -U postgres -qc 'CREATE DATABASE mcpzt' -c 'CREATE DATABASE migrated' -c 'CREATE DATABASE contract'" >/dev/null
ledger="postgres://postgres@127.0.0.1:$pgport/mcpzt?sslmode=require"
export MCP_ZT_LEDGER_CA="$work/dbca.crt"
echo "== PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport (TLS), HAProxy $(haproxy -v | awk 'NR==1 {print $3}')" >&2

# --- the ledger's contract on PostgreSQL: races between connections, enforced by the database ---
"$contract" "postgres://postgres@127.0.0.1:$pgport/contract?sslmode=require" "$work/dbca.crt" >"$work/contract.out" 2>&1 ||
  { cat "$work/contract.out" >&2; fail "ledger contract on PostgreSQL"; }
sed 's/^/   /' "$work/contract.out" >&2
# The schema refuses what no mcp-zt code path does: un-revoking, lowering the CRL number.
for sql in "UPDATE mcpzt_certs SET revoked = false, revocation_seq = NULL WHERE revoked" \
  "UPDATE mcpzt_crl_number SET n = 0"; do
  if as_pg "$pgbin/psql -h $pgdir -p $pgport -U postgres -d contract -qc '$sql'" >"$work/sql.out" 2>&1; then
    fail "the database accepted: $sql"
  fi
  grep -Eq 'cannot be undone|cannot go down' "$work/sql.out" || { cat "$work/sql.out" >&2; fail "$sql failed for another reason"; }
done
echo "ok: the database itself refuses un-revoking and a lower CRL number" >&2

# --- the CA: an admin HOME (never serves) and three replica HOMEs copied from it ---
admin="$work/admin"
"$MCP_ZT" --home "$admin" --ledger "$ledger" ca init --crl-url http://crl.fleet.test/crl >/dev/null 2>&1 ||
  fail "ca init on PostgreSQL"
"$MCP_ZT" --home "$admin" --ledger "$ledger" ca init >"$work/reinit.out" 2>&1 &&
  fail "a second ca init on the same ledger was accepted"
for i in $(seq 0 $((clients - 1))); do
  "$MCP_ZT" --home "$admin" --ledger "$ledger" issue --role viewer --name "$(printf 'fleet-%02d' "$i")" >/dev/null 2>&1 ||
    fail "issue fleet-$i"
done
openssl x509 -in "$admin/clients/fleet-00.crt" -noout -ext crlDistributionPoints 2>/dev/null |
  grep -q 'URI:http://crl.fleet.test/crl' || fail "issued certificates lack the --crl-url distribution point"
replicas_json=""
for r in 1 2 3; do
  h="$work/r$r"
  mkdir -m 700 "$h"
  (cd "$admin" && tar cf - --exclude=clients --exclude='*.sock' --exclude='audit.log*' .) | (cd "$h" && tar xf -)
  "$MCP_ZT" --home "$h" --ledger "$ledger" serve --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 \
    --proxy-protocol-from 127.0.0.2 --lockout-threshold 0 --max-handshakes-per-address 0 \
    --max-connections-per-cert 0 >"$work/r$r.out" 2>"$work/r$r.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 400); do
    grep -q '^ops ' "$work/r$r.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/r$r.err" >&2; fail "replica $r did not start"; }
    sleep 0.05
  done
  port=$(sed -n 's/^listening 127\.0\.0\.1://p' "$work/r$r.out")
  ops=$(sed -n 's/^ops //p' "$work/r$r.out")
  [ -n "$port" ] && [ -n "$ops" ] || { cat "$work/r$r.err" >&2; fail "replica $r printed no ports"; }
  eval "port$r=$port ops$r=$ops"
  replicas_json="$replicas_json${replicas_json:+,}{\"name\":\"replica$r\",\"port\":$port,\"ops\":\"$ops\",\"pid\":$pid,\"audit\":\"$h/audit.log\"}"
done
curl -sf "http://$ops1/readyz" >/dev/null || fail "replica 1 is not ready"
# fleet_check.py brings replica 3 back after killing it, on the same ports, with a short
# --revocation-max-stale: it must refuse new handshakes once the database is gone that long.
cat >"$work/restart-r3.sh" <<SH
#!/usr/bin/env bash
"$MCP_ZT" --home "$work/r3" --ledger "$ledger" serve --listen 127.0.0.1:$port3 --ops-listen $ops3 \
  --proxy-protocol-from 127.0.0.2 --lockout-threshold 0 --max-handshakes-per-address 0 \
  --max-connections-per-cert 0 --revocation-max-stale 2s >"$work/r3b.out" 2>"$work/r3b.err" &
echo \$! >>"$work/extra.pids"
echo \$!
SH
chmod 700 "$work/restart-r3.sh"
curl -sf "http://$ops1/crl" -o "$work/crl.der" || fail "GET /crl"
openssl crl -inform DER -in "$work/crl.der" -CAfile "$admin/intermediate.crt" -noout 2>&1 | grep -q 'verify OK' ||
  fail "/crl is not a DER CRL that verifies against the intermediate"
echo "ok: certificates carry the --crl-url distribution point; /crl serves a DER CRL openssl verifies" >&2

# --- HAProxy: TCP, round robin, PROXY v2 from 127.0.0.2, health from each replica's /serving ---
hport=$(free_port)
cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend mcp
  bind 127.0.0.1:$hport
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /serving
  default-server send-proxy-v2 source 127.0.0.2 check inter 300 fall 2 rise 1
  server replica1 127.0.0.1:$port1 port ${ops1##*:}
  server replica2 127.0.0.1:$port2 port ${ops2##*:}
  server replica3 127.0.0.1:$port3 port ${ops3##*:}
CFG
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do (: <"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break; sleep 0.05; done

cat >"$work/fleet.json" <<JSON
{"mcp_zt": "$MCP_ZT", "admin_home": "$admin", "ledger": "$ledger", "ledger_ca": "$work/dbca.crt",
 "ca": "$admin/ca.crt", "clients_dir": "$admin/clients", "clients": $clients,
 "revocations": $revocations, "cut_budget_secs": $budget, "warm_calls": 5, "haproxy_port": $hport,
 "client_source": "127.0.0.3", "balancer_source": "127.0.0.2", "pg_down_secs": $down,
 "pg_stop": "$work/pg-stop.sh", "pg_start": "$work/pg-start.sh", "restart_r3": "$work/restart-r3.sh",
 "replicas": [$replicas_json]}
JSON
"$venv/bin/python" "$here/fleet_check.py" "$work/fleet.json" || fail "fleet checks (above)"

"$MCP_ZT" --home "$admin" --ledger "$ledger" doctor >"$work/doctor.out" 2>&1 ||
  { cat "$work/doctor.out" >&2; fail "doctor on the shared ledger after the run"; }
echo "ok: doctor on the shared ledger after kill -9 and the database restart: green" >&2

# --- foreign revocations are shared: what one replica's trust CRL lists, every replica refuses ---
# An openssl-made corporate CA; replica 4's CRL lists sam, replica 5's (an old one) lists nobody.
corp="$work/corp"
mkdir -p "$corp/db"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=Example Corp/CN=Example Corp Root" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$corp/ca.key" -out "$corp/ca.pem" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$corp/leaf.ext"
for who in sam carol; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
    -keyout "$corp/$who.key" -out "$corp/$who.csr" 2>/dev/null
  openssl x509 -req -in "$corp/$who.csr" -CA "$corp/ca.pem" -CAkey "$corp/ca.key" -CAcreateserial \
    -days 1 -extfile "$corp/leaf.ext" -out "$corp/$who.crt" 2>/dev/null
done
: >"$corp/db/index.txt"
echo 01 >"$corp/db/crlnumber"
printf '[ca]\ndefault_ca = corp\n[corp]\ndatabase = %s\ncrlnumber = %s\ndefault_md = sha256\ndefault_crl_days = 1\n' \
  "$corp/db/index.txt" "$corp/db/crlnumber" >"$corp/ca.cnf"
corp_crl() { openssl ca -gencrl -config "$corp/ca.cnf" -keyfile "$corp/ca.key" -cert "$corp/ca.pem" -out "$1" 2>/dev/null; }
corp_crl "$corp/empty.crl"
openssl ca -config "$corp/ca.cnf" -keyfile "$corp/ca.key" -cert "$corp/ca.pem" -revoke "$corp/sam.crt" 2>/dev/null ||
  fail "openssl ca -revoke"
corp_crl "$corp/sam.crl"
for r in 4 5; do
  h="$work/r$r"
  mkdir -m 700 "$h"
  (cd "$admin" && tar cf - --exclude=clients --exclude='*.sock' --exclude='audit.log*' .) | (cd "$h" && tar xf -)
  cp "$corp/ca.pem" "$h/corp-ca.pem"
  if [ "$r" = 4 ]; then cp "$corp/sam.crl" "$h/corp.crl"; else cp "$corp/empty.crl" "$h/corp.crl"; fi
  printf '\n[trust.corp]\nca = "corp-ca.pem"\ncrl = "corp.crl"\n[[trust.corp.roles]]\nrole = "viewer"\nmatch = { cn = "*" }\n' >>"$h/policy.toml"
done
"$MCP_ZT" --home "$work/r4" --ledger "$ledger" serve --listen 127.0.0.1:0 >"$work/r4.out" 2>"$work/r4.err" &
pids+=("$!")
for _ in $(seq 1 200); do grep -q 'newly listed in the CRL of trust' "$work/r4/audit.log" 2>/dev/null && break; sleep 0.05; done
grep -q 'newly listed in the CRL of trust' "$work/r4/audit.log" 2>/dev/null || { cat "$work/r4.err" >&2; fail "replica 4 did not apply its trust's CRL"; }
"$MCP_ZT" --home "$work/r5" --ledger "$ledger" serve --listen 127.0.0.1:0 >"$work/r5.out" 2>"$work/r5.err" &
pids+=("$!")
for _ in $(seq 1 200); do grep -q '^listening ' "$work/r5.out" 2>/dev/null && break; sleep 0.05; done
port5=$(sed -n 's/^listening 127\.0\.0\.1://p' "$work/r5.out")
[ -n "$port5" ] || { cat "$work/r5.err" >&2; fail "replica 5 did not start"; }
corp_call() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$admin/ca.crt" \
    --cert "$corp/$1.crt" --key "$corp/$1.key" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    --data '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleet","version":"1"}}}' \
    "https://localhost:$port5/mcp" || true
}
[ "$(corp_call carol)" = 200 ] || fail "replica 5 refused carol, whom no CRL lists"
[ "$(corp_call sam)" != 200 ] || fail "replica 5 admitted sam, whom replica 4 saw revoked"
for _ in $(seq 1 100); do
  grep '"handshake_rejected"' "$work/r5/audit.log" | grep -q 'revoked' && break
  sleep 0.05
done
grep '"handshake_rejected"' "$work/r5/audit.log" | grep -q 'revoked' ||
  { tail -5 "$work/r5/audit.log" >&2; fail "replica 5 did not audit sam's refusal as revoked"; }
echo "ok: a foreign serial replica 4's trust CRL lists is refused by replica 5, whose own CRL (an old one) lists nobody" >&2

# --- OAuth across replicas: a token replica 6 issued works on replica 7; revoking the holder's
# certificate through replica 6 makes replica 7 refuse it within 1 s ---
"$MCP_ZT" --home "$admin" --ledger "$ledger" issue --role viewer --name oauth-holder \
  --out "$work/holder" >/dev/null 2>&1 || fail "issue oauth-holder"
pub=$(free_port)
for r in 6 7; do
  h="$work/r$r"
  mkdir -m 700 "$h"
  (cd "$admin" && tar cf - --exclude=clients --exclude='*.sock' --exclude='audit.log*' .) | (cd "$h" && tar xf -)
  "$MCP_ZT" --home "$h" --ledger "$ledger" serve --listen 127.0.0.1:0 --oauth \
    --public-url "https://localhost:$pub/mcp" --login-url "https://127.0.0.1:$pub" \
    --lockout-threshold 0 >"$work/r$r.out" 2>"$work/r$r.err" &
  pids+=("$!")
  for _ in $(seq 1 200); do grep -q '^listening ' "$work/r$r.out" 2>/dev/null && break; sleep 0.05; done
  p=$(sed -n 's/^listening 127\.0\.0\.1://p' "$work/r$r.out")
  [ -n "$p" ] || { cat "$work/r$r.err" >&2; fail "replica $r (OAuth) did not start"; }
  eval "port$r=$p"
done
python3 "$here/fleet_oauth.py" "$MCP_ZT" "$work/r6" "$ledger" "$admin/ca.crt" \
  "$work/holder/oauth-holder.crt" "$work/holder/oauth-holder.key" oauth-holder "$port6" "$port7" "$pub" ||
  fail "OAuth across replicas (above)"

# --- per-holder upstream links across replicas: a link made through replica 8 is used on
# replica 9 (tokens sealed in the shared ledger; both replicas hold the same secrets.key) ---
"$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2.3,<3'
"$venv/bin/python" "$here/oauth_upstream.py" --port-file "$work/up.port" --auth-log "$work/up.auth" \
  --revocations-log "$work/up.revoked" >"$work/up.out" 2>&1 &
pids+=("$!")
for _ in $(seq 1 200); do [ -s "$work/up.port" ] && break; sleep 0.05; done
[ -s "$work/up.port" ] || { cat "$work/up.out" >&2; fail "the OAuth upstream did not start"; }
"$MCP_ZT" --home "$admin" --ledger "$ledger" issue --role viewer --name link-holder >/dev/null 2>&1 ||
  fail "issue link-holder"
for r in 8 9; do
  h="$work/r$r"
  mkdir -m 700 "$h"
  (cd "$admin" && tar cf - --exclude=clients --exclude='*.sock' --exclude='audit.log*' .) | (cd "$h" && tar xf -)
  printf '[upstreams.gh]\nurl = "http://127.0.0.1:%s/mcp"\nauth = "oauth"\n' "$(cat "$work/up.port")" >"$h/upstreams.toml"
  chmod 600 "$h/upstreams.toml"
  grant "$h/policy.toml" viewer '["tool:gh__*"]'
  # Replica 8 creates secrets.key at its start; replica 9 gets a copy, as every replica must.
  [ "$r" = 9 ] && cp -p "$work/r8/secrets.key" "$h/secrets.key"
  "$MCP_ZT" --home "$h" --ledger "$ledger" serve --listen 127.0.0.1:0 --lockout-threshold 0 \
    >"$work/r$r.out" 2>"$work/r$r.err" &
  pids+=("$!")
  for _ in $(seq 1 200); do grep -q '^listening ' "$work/r$r.out" 2>/dev/null && break; sleep 0.05; done
  p=$(sed -n 's/^listening 127\.0\.0\.1://p' "$work/r$r.out")
  [ -n "$p" ] || { cat "$work/r$r.err" >&2; fail "replica $r (upstream links) did not start"; }
  eval "port$r=$p"
done
"$venv/bin/python" "$here/interop_upstream_oauth.py" link-http "$MCP_ZT" "$admin" "$ledger" link-holder \
  "https://localhost:$port8/mcp" gh link-gh >&2 || fail "link through replica 8"
"$venv/bin/python" "$here/interop_upstream_oauth.py" call "https://localhost:$port9/mcp" "$admin/ca.crt" \
  "$admin" link-holder gh__whoami link-gh >&2 || fail "the link made on replica 8 is not used on replica 9"
grep -q '"event":"upstream_linked","name":"link-holder"' "$work/r8/audit.log" ||
  fail "replica 8 did not audit the link"
echo "ok: a link made through replica 8 serves the holder's calls on replica 9" >&2

# --- ledger migrate: a sled ledger of $records records into the second database ---
mig="$work/sled"
"$MCP_ZT" --home "$mig" ca init >/dev/null 2>&1 || fail "ca init (sled)"
for n in a b c d e f; do "$MCP_ZT" --home "$mig" issue --role viewer --name "m-$n" >/dev/null 2>&1 || fail "issue m-$n"; done
for n in a b c; do "$MCP_ZT" --home "$mig" revoke "m-$n" >/dev/null 2>&1 || fail "revoke m-$n"; done
"$seed" "$mig" $((records - 6)) 2>/dev/null || fail "seed_ledger"
target="postgres://postgres@127.0.0.1:$pgport/migrated?sslmode=require"
# For the CRL comparison: the sled side as it was before the move, without its CRL.
mkdir -m 700 "$work/crl-sled"
(cd "$mig" && tar cf - --exclude=./crl.pem .) | (cd "$work/crl-sled" && tar xf -)
"$MCP_ZT" --home "$mig" ledger migrate --to "$target" >"$work/migrate.out" 2>&1 ||
  { cat "$work/migrate.out" >&2; fail "ledger migrate"; }
sed 's/^/   /' "$work/migrate.out" >&2
"$MCP_ZT" --home "$mig" ledger migrate --to "$target" >"$work/migrate2.out" 2>&1 ||
  { cat "$work/migrate2.out" >&2; fail "a second ledger migrate (verify only)"; }
grep -q '^verified' "$work/migrate2.out" || fail "a second migrate did not just verify"
"$MCP_ZT" --home "$mig" revoke m-d >"$work/moved.out" 2>&1 && fail "the migrated sled ledger still took a revocation"
grep -q 'read-only' "$work/moved.out" || { cat "$work/moved.out" >&2; fail "unclear refusal on the migrated sled ledger"; }
"$MCP_ZT" --home "$mig" doctor >"$work/d1.out" 2>&1 || { cat "$work/d1.out" >&2; fail "doctor (sled)"; }
"$MCP_ZT" --home "$mig" --ledger "$target" doctor >"$work/d2.out" 2>&1 ||
  { cat "$work/d2.out" >&2; fail "doctor (PostgreSQL)"; }
"$MCP_ZT" --home "$mig" list --json >"$work/l1.json"
"$MCP_ZT" --home "$mig" --ledger "$target" list --json >"$work/l2.json"
cmp -s "$work/l1.json" "$work/l2.json" || fail "list --json differs between sled and PostgreSQL"
total=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/l2.json")
[ "$total" = "$records" ] || fail "PostgreSQL lists $total records, expected $records"
# The CRL published from each ledger: HOME copies without their CRL, repaired by doctor.
mkdir -m 700 "$work/crl-pg"
(cd "$mig" && tar cf - --exclude=./ledger --exclude=./crl.pem .) | (cd "$work/crl-pg" && tar xf -)
for side in sled pg; do
  c="$work/crl-$side"
  if [ "$side" = sled ]; then arg=(); else arg=(--ledger "$target"); fi
  "$MCP_ZT" --home "$c" "${arg[@]}" doctor --repair >/dev/null 2>&1 || true
  "$MCP_ZT" --home "$c" "${arg[@]}" doctor >"$work/dc.out" 2>&1 ||
    { cat "$work/dc.out" >&2; fail "doctor after --repair ($side)"; }
  openssl crl -in "$c/crl.pem" -noout -text | sed -n 's/^ *Serial Number: *//p' | sort >"$work/serials-$side"
done
cmp -s "$work/serials-sled" "$work/serials-pg" || fail "the CRLs from sled and PostgreSQL list different serials"
echo "ok: ledger migrate of $records records: doctor green on both, list --json equal, both CRLs list the same $(wc -l <"$work/serials-pg") serials" >&2
echo "fleet-test ($mode): all checks passed" >&2
