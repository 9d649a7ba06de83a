#!/usr/bin/env bash
# The architecture invariants of ARCHITECTURE.md, checked over src/ with grep and awk: no
# build, a few seconds. Each check prints "ok: NAME", or "FAIL: NAME: what must hold" with the
# offending lines; the script exits 1 if any check failed. The last check ("doc-markers")
# makes ARCHITECTURE.md and this script agree: every check the document names exists here,
# every check here is named there, and every test the document cites exists.
#
# Usage: scripts/arch-check.sh        (from the repository root or anywhere)
#
# These checks read the source as text. They are tripwires for the rules a reviewer would
# otherwise have to remember, not proofs: ARCHITECTURE.md says which rules are left to review.
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# grep that fails the script on a real error (exit 2), never on "no match".
match() {
  local rc=0
  grep "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then
    echo "arch-check: grep $* failed ($rc)" >&2
    exit 2
  fi
}

# Whether grep finds the pattern (status 0 or 1); a real error stops the script.
has() {
  local rc=0
  grep -q "$@" || rc=$?
  if [ "$rc" -gt 1 ]; then
    echo "arch-check: grep $* failed ($rc)" >&2
    exit 2
  fi
  return "$rc"
}

# The code the checks look at: every .rs file under src/ but the test files, without the
# test modules (rustfmt layout: `#[cfg(test)]` or `#[cfg(all(test, ...))]` before a module
# opened at column 0, which ends at the next line that is exactly `}`) and without lines that
# are only a comment. One line per source line: FILE:LINE:TEXT.
find src -name '*.rs' ! -name 'tests.rs' ! -name 'tests_*.rs' ! -path '*/tests/*' -print |
  LC_ALL=C sort >"$tmp/files"
if [ ! -s "$tmp/files" ]; then
  echo "arch-check: no Rust files under $root/src" >&2
  exit 2
fi
# shellcheck disable=SC2046
awk '
  FNR == 1 { intest = 0; pending = 0 }
  {
    if (intest) { if ($0 ~ /^}/) intest = 0; next }
    if ($0 ~ /^#\[cfg\((all\()?test/) { pending = 1; next }
    if (pending) {
      pending = 0
      if ($0 ~ /^(pub(\(crate\))? )?mod [A-Za-z0-9_]+ *\{/) { intest = 1; next }
      if ($0 ~ /^(pub(\(crate\))? )?mod [A-Za-z0-9_]+;/) next
    }
    if ($0 ~ /^[[:space:]]*\/\//) next
    print FILENAME ":" FNR ":" $0
  }' $(cat "$tmp/files") >"$tmp/code"

passed=0
failed=0
ran=()

# report NAME WHY: the check passes when $tmp/NAME is empty.
report() {
  local name="$1" why="$2"
  ran+=("$name")
  if [ -s "$tmp/$name" ]; then
    echo "FAIL: $name: $why"
    awk '{ print "    " $0 }' "$tmp/$name"
    failed=$((failed + 1))
  else
    echo "ok: $name"
    passed=$((passed + 1))
  fi
}

# Lines of the code listing whose file matches the regex $1 (FILE is the part before the
# first colon).
in_files() { RE="$1" awk -F: '$1 ~ ENVIRON["RE"]' "$tmp/code"; }
not_in_files() { RE="$1" awk -F: '$1 !~ ENVIRON["RE"]' "$tmp/code"; }

# One function's body in FILE: from the line declaring `fn NAME` to the next line that closes
# at the declaration's indentation. Prints LINE:TEXT.
fn_body() {
  awk -v name="$2" '
    !inside && $0 ~ ("fn " name "[<(]") {
      inside = 1; match($0, /^ */); indent = RLENGTH
      closing = "^" sprintf("%" indent "s", "") "}"
    }
    inside { print FNR ":" $0; if (FNR > start && $0 ~ closing) exit }
    inside && !start { start = FNR }
  ' "$1"
}

# --- no-unwrap ----------------------------------------------------------------------------
match -E '\.unwrap\(\)|\.expect\(' "$tmp/code" >"$tmp/no-unwrap"
report no-unwrap "no unwrap() or expect() outside tests: return the error (or use a default)"

# --- no-panics ----------------------------------------------------------------------------
# Allowed: refusing to go on when the system RNG fails (an all-zero secret would be worse), and
# the one AES key built from exactly 32 bytes.
match -E '(^|[^A-Za-z_])(panic|todo|unimplemented|unreachable)!' "$tmp/code" |
  match -vE 'panic!\("the system random number generator failed"\)|UnboundKey::new\(&AES_256_GCM, bytes\)\.unwrap_or_else\(\|_\| unreachable!\(\)\)' \
    >"$tmp/no-panics"
report no-panics "no panic!/todo!/unimplemented!/unreachable! outside tests, but the RNG-failure ones"

# --- forbid-unsafe ------------------------------------------------------------------------
{
  has -x '#!\[forbid(unsafe_code)\]' src/lib.rs ||
    echo "src/lib.rs: #![forbid(unsafe_code)] is gone"
  match -E '(^|[^A-Za-z_])unsafe +(\{|fn|impl|trait|extern)' "$tmp/code"
} >"$tmp/forbid-unsafe"
report forbid-unsafe "the library forbids unsafe code, and the binary has none"

# --- crypto-provider ----------------------------------------------------------------------
{
  # No crate feature that pulls in ring (the real proof is scripts/test.sh: cargo tree -i ring).
  match -nE '^[^#]*(^|[^A-Za-z_-])ring([^A-Za-z_-]|$)' Cargo.toml | awk '{ print "Cargo.toml:" $0 }'
  match -E 'crypto::ring|(^|[^A-Za-z_])ring::|use ring\b' "$tmp/code"
  # A rustls builder without a provider takes the process default: always name aws-lc-rs.
  match -E '(ServerConfig|ClientConfig|WebPkiClientVerifier|WebPkiServerVerifier)::builder\(\)|install_default\(|CryptoProvider::get_default' "$tmp/code"
  match -E 'default_provider\(\)' "$tmp/code" | match -v 'aws_lc_rs::default_provider()'
} >"$tmp/crypto-provider"
report crypto-provider "one crypto provider, aws-lc-rs, named explicitly (crate::tls::provider())"

# --- no-resumption ------------------------------------------------------------------------
awk -F: '
  /ServerConfig::builder/ { builds[$1] = 1 }
  /NoServerSessionStorage/ { storage[$1] = 1 }
  /send_tls13_tickets = 0/ { tickets[$1] = 1 }
  END {
    for (f in builds)
      if (!storage[f] || !tickets[f])
        print f ": builds a rustls ServerConfig without NoServerSessionStorage and send_tls13_tickets = 0"
  }' "$tmp/code" >"$tmp/no-resumption"
report no-resumption "every TLS server config turns resumption off (a resumed session skips the verifier)"

# --- layers -------------------------------------------------------------------------------
awk -F: '
  function bad(why) { print $0 "    <- " why }
  {
    f = $1
    if (f !~ /^src\/cli\// && $0 ~ /crate::cli([^A-Za-z_]|$)/) bad("only src/main.rs uses the CLI")
    core = f ~ /^src\/(fsutil|secrets|identity|policy|audit)\.rs$/ || f ~ /^src\/(pki|policy|tls|ledger|audit|oauth|ca)\//
    if (core && $0 ~ /crate::(mcp|upstream|server|console|cli|bridge)([^A-Za-z_]|$)/)
      bad("the core (pki, policy, identity, tls, ledger, ca, oauth, audit, secrets, fsutil) depends on no outer layer")
    if (f ~ /^src\/mcp\// && $0 ~ /crate::(upstream|server|console|cli|bridge)([^A-Za-z_]|$)/)
      bad("src/mcp/ sees upstreams only as providers and the server only through the gate")
    if (f ~ /^src\/upstream\// && $0 ~ /crate::(server|console|cli|bridge)([^A-Za-z_]|$)/)
      bad("src/upstream/ does not depend on the server, the console or the CLI")
    if (f ~ /^src\/bridge\//) {
      if ($0 ~ /crate::(mcp|upstream|console|cli)([^A-Za-z_]|$)/) bad("the holder side (bridge) stays apart from the server side")
      line = $0; gsub(/crate::server::certs::/, "", line)
      if (line ~ /crate::server([^A-Za-z_]|$)/) bad("the bridge may use crate::server::certs only")
    }
  }' "$tmp/code" >"$tmp/layers"
report layers "imports follow the layers: core < mcp < upstream < server, console < cli"

# --- pki-no-io ----------------------------------------------------------------------------
{
  in_files '^src/pki/' |
    match -E 'std::fs|tokio|std::process|std::env|TcpStream|TcpListener|UdpSocket|reqwest|sled|File::|OpenOptions|fsutil::(write|open|ensure|make|rename|set_file)|print!|println!|eprintln!|now_utc|SystemTime|Instant::now|thread::sleep' |
    match -vE '^src/pki/mod\.rs:[0-9]+:    let now = OffsetDateTime::now_utc\(\);$'
  in_files '^src/pki/' | match 'fsutil' | match -v '^src/pki/keyfile\.rs:'
} >"$tmp/pki-no-io"
report pki-no-io "src/pki/ builds and parses bytes; only keyfile.rs reads (key files, through fsutil); the clock is read in pki::now() alone"

# --- pure-cores ---------------------------------------------------------------------------
pure='^src/(identity\.rs|policy\.rs|policy/[a-z_]+\.rs|tls/foreign_crl\.rs|oauth/(redirect|addr|crypto|metadata)\.rs|mcp/(template|uri|ratelimit|envelope)\.rs|audit/coalesce\.rs|upstream/oauth/discover\.rs)$'
{
  for f in src/identity.rs src/policy.rs src/policy/rules.rs src/policy/trust.rs src/tls/foreign_crl.rs \
    src/oauth/redirect.rs src/oauth/addr.rs src/oauth/crypto.rs src/oauth/metadata.rs \
    src/mcp/template.rs src/mcp/uri.rs src/mcp/ratelimit.rs src/mcp/envelope.rs src/audit/coalesce.rs \
    src/upstream/oauth/discover.rs; do
    [ -f "$f" ] || echo "$f: listed as pure but missing (moved? update this list and ARCHITECTURE.md)"
  done
  in_files "$pure" |
    match -E 'std::fs|fsutil|tokio|std::net::(Tcp|Udp)|TcpStream|std::process|std::env|reqwest|sled|crate::ledger|print!|println!|eprintln!|Instant::now|SystemTime|now_utc|pki::now\(\)|thread::sleep|stdin\(\)'
} >"$tmp/pure-cores"
report pure-cores "the decision cores do no I/O and read no clock (time is a parameter)"

# --- wall-clock ---------------------------------------------------------------------------
match -E 'now_utc\(\)|SystemTime::now\(\)' "$tmp/code" |
  match -vE '^src/(pki/mod\.rs|audit\.rs|audit/writer\.rs|ledger/pg/tx\.rs|cli/serve\.rs):' \
    >"$tmp/wall-clock"
report wall-clock "wall-clock time comes from crate::pki::now() (the audit timestamps, the fleet's revoke time and audit --since aside)"

# --- fs-writes ----------------------------------------------------------------------------
# The control socket is bound in a fresh 0700 folder, made 0600 and renamed into HOME
# (ctl::bind); the audit writer renames its rotated files. Nothing else.
# (awk reads NR == FNR as "the first file": a sentinel line keeps it from being empty.)
{ echo "-:-"; fn_body src/server/ctl.rs bind | awk -F: '{ print "src/server/ctl.rs:" $1 }'; } >"$tmp/ctl.bind"
not_in_files '^src/fsutil\.rs$' |
  match -E 'fs::write\(|File::create|File::options|OpenOptions::new\(|set_permissions\(|fs::rename\(|fs::hard_link\(|fs::copy\(|create_dir(_all)?\(|DirBuilder|tokio::fs::(write|rename|copy|create_dir)' |
  awk -F: 'NR == FNR { skip[$0] = 1; next } !skip[$1 ":" $2]' "$tmp/ctl.bind" - |
  match -vE '^src/audit/writer\.rs:[0-9]+: .*std::fs::rename\(' \
    >"$tmp/fs-writes"
report fs-writes "files are written through src/fsutil.rs (temp file, fsync, rename); the control socket and the audit rotation aside"

# --- secret-files-0600 --------------------------------------------------------------------
# Each fsutil::write_new/write_atomic call (and ca init's new_file helper), read to its closing
# parenthesis: one whose arguments name a key, a secret, a password or a PKCS#12 file must
# pass SECRET_MODE (0600).
awk -F: '
  function scan(text,   i, c) {
    for (i = 1; i <= length(text); i++) {
      c = substr(text, i, 1)
      if (c == "(") depth++
      else if (c == ")") { depth--; if (depth == 0) return 1 }
    }
    return 0
  }
  function finish() {
    lower = tolower(call)
    if (lower ~ /key|secret|passw|p12/ && call !~ /SECRET_MODE|0o600/) print first
    open = 0
  }
  {
    text = $0; sub(/^[^:]*:[0-9]+:/, "", text)
    if (open) { call = call " " text; if (scan(text)) finish(); next }
    if (text ~ /fsutil::write_(new|atomic)\(/ || ($1 == "src/ca/init.rs" && text ~ /(^|[^a-z_])new_file\(/ && text !~ /let new_file/)) {
      first = $0; call = text; depth = 0; open = 1
      start = match(text, /(write_new|write_atomic|new_file)\(/)
      if (scan(substr(text, start))) finish()
    }
  }' "$tmp/code" >"$tmp/secret-files-0600"
report secret-files-0600 "a file holding a key, a secret or a password is written with SECRET_MODE (0600)"

# --- ledger-writes ------------------------------------------------------------------------
{
  not_in_files '^src/(ledger|ca)/' |
    match -E '\.(insert_new|insert_many|record_renewal|revoke_chain|set_ca_meta|init_ca_meta|next_crl_number|raise_crl_number|crl_snapshot)\(|ledger(\(\))?\.revoke\('
  not_in_files '^src/ledger/' | match -E '(INSERT INTO|UPDATE mcpzt|DELETE FROM|TRUNCATE|ALTER TABLE|DROP TABLE)'
  not_in_files '^src/ledger/' | match -E 'open_tree\(' | match -v 'open_tree("data")'
} >"$tmp/ledger-writes"
report ledger-writes "certificate state is written only by src/ledger/, called from src/ca/ (the demo data tree aside)"

# --- record-before-files ------------------------------------------------------------------
fn_body src/ca/authority.rs sign_and_record | awk -F: '
  /ledger\.insert_new\(/ && !rec { rec = $1 }
  /fsutil::write_/ && !file { file = $1 }
  END {
    if (!rec || !file) print "src/ca/authority.rs: sign_and_record: ledger.insert_new or the file writes not found"
    else if (rec > file) print "src/ca/authority.rs:" file ": a certificate file is written before its ledger record (line " rec ")"
  }' >"$tmp/record-before-files"
report record-before-files "the ledger records a certificate before any of its files exist"

# --- revoke-live-before-crl ---------------------------------------------------------------
for f in revoke retire; do
  fn_body src/server/state.rs "$f" | awk -F: -v fn="$f" '
    /apply_revocation\(/ && !live { live = $1 }
    /publish_crl/ && !crl { crl = $1 }
    END {
      if (!live || !crl) print "src/server/state.rs: fn " fn ": apply_revocation or the CRL publication not found"
      else if (live > crl) print "src/server/state.rs:" crl ": fn " fn " publishes the CRL before applying the revocation live (line " live ")"
    }'
done >"$tmp/revoke-live-before-crl"
report revoke-live-before-crl "a revocation is applied to the live server before the CRL is written"

# --- identity-origins ---------------------------------------------------------------------
{
  match -E '(^|[^A-Za-z_])Identity \{' "$tmp/code" | match -vE 'struct Identity|impl |-> Identity \{|for Identity \{' |
    match -vE '^src/(identity\.rs|server/oauth/bearer\.rs):'
  match -E '(^|[^A-Za-z_])ConnInfo \{' "$tmp/code" | match -vE 'struct ConnInfo|impl |-> ConnInfo \{' |
    match -vE '^src/server/(accept\.rs|oauth/bearer\.rs):'
  match -E 'Identity::stand_in\(' "$tmp/code" |
    match -vE '^src/(server/gateway\.rs|cli/upstream_check\.rs|console/views\.rs):'
} >"$tmp/identity-origins"
report identity-origins "an identity comes from a verified certificate (identity.rs, accept.rs) or a checked token (bearer.rs); stand-ins only list upstreams"

# --- handler-asks-identity ----------------------------------------------------------------
awk '
  /^impl ServerHandler for ZtMcp/ { inside = 1; found = 1; next }
  inside && /^}/ { if (name && !asked) print "src/mcp/mod.rs:" line ": " name; inside = 0; next }
  inside && /^    (async )?fn / {
    if (name && !asked) print "src/mcp/mod.rs:" line ": " name
    name = ""; asked = 0
    if ($0 ~ /^    async fn /) { name = $0; line = FNR; n++ }
    next
  }
  inside && /self\.ask\(/ { asked = 1 }
  END {
    if (!found) print "src/mcp/mod.rs: impl ServerHandler for ZtMcp not found"
    else if (!n) print "src/mcp/mod.rs: no async handler methods found"
  }' src/mcp/mod.rs >"$tmp/handler-asks-identity"
report handler-asks-identity "every MCP handler method takes the caller from the verified connection first (self.ask)"

# --- tool-call-gated ----------------------------------------------------------------------
{
  # The session handler: refusals audited, then the rate limit, then tool_allowed, then the
  # provider.
  fn_body src/mcp/mod.rs call_tool | awk -F: '
    /\.denied\(/ && !denied { denied = $1 }
    /\.rate\(/ && !rate { rate = $1 }
    /\.allowed\(/ && !allowed { allowed = $1 }
    /\.forward\(/ && !run { run = $1 }
    END {
      if (!denied || !rate || !allowed || !run)
        print "src/mcp/mod.rs: call_tool: gate.denied, gate.rate, gate.allowed or the forward to the provider not found"
      else if (!(denied < run && rate < allowed && allowed < run))
        print "src/mcp/mod.rs: call_tool: refusals, the rate limit and tool_allowed must come before the provider runs (lines " denied ", " rate ", " allowed ", " run ")"
    }'
  # The native transport's direct path: only a visible tool, and the same rate limit and
  # tool_allowed line before the provider's future is awaited (anything else is declined and
  # goes to the handler above).
  if [ -f src/mcp/direct.rs ]; then
    fn_body src/mcp/direct.rs tool_call | awk -F: '
      /find_tool\(/ && !find { find = $1 }
      /f\.visible/ && !visible { visible = $1 }
      /\.rate\(/ && !rate { rate = $1 }
      /\.allowed\(/ && !allowed { allowed = $1 }
      /run\.await/ && !run { run = $1 }
      END {
        if (!find || !visible || !rate || !allowed || !run)
          print "src/mcp/direct.rs: tool_call: find_tool with f.visible, gate.rate, gate.allowed or run.await not found"
        else if (!(find <= visible && visible < rate && rate < allowed && allowed < run))
          print "src/mcp/direct.rs: tool_call: visibility, the rate limit and tool_allowed must come before run.await (lines " visible ", " rate ", " allowed ", " run ")"
      }'
  fi
} >"$tmp/tool-call-gated"
report tool-call-gated "a tools/call is refused and audited, or rate-checked and audited as allowed, before a provider runs it"

# --- provider-calls -----------------------------------------------------------------------
{
  match -E '(^|[^A-Za-z_])Caller \{' "$tmp/code" | match -vE 'struct Caller|impl |-> Caller \{' |
    match -vE '^src/mcp/mod\.rs:'
  not_in_files '^src/mcp/' | match -E '\.(call_direct|relay_direct)\(|Provider::request\('
} >"$tmp/provider-calls"
report provider-calls "only the MCP handler (src/mcp/) makes the Caller a provider needs and calls providers"

# --- http-guard ---------------------------------------------------------------------------
{
  fn_body src/server/http.rs guard >"$tmp/guard.body"
  for need in 'state\.revoked\.contains\(&who\.serial\)' 'header::ORIGIN' 'sessions\.owned_by\(' 'sessions\.bind\('; do
    has -E "$need" "$tmp/guard.body" || echo "src/server/http.rs: fn guard no longer has $need"
  done
  fn_body src/server/http.rs router | awk -F: '
    /nest_service\("\/mcp"/ && !mcp { mcp = $1 }
    /from_fn_with_state\(state\.clone\(\), guard\)/ && !guard { guard = $1 }
    END {
      if (!mcp || !guard) print "src/server/http.rs: fn router: /mcp or the guard layer not found"
      else if (mcp > guard) print "src/server/http.rs:" mcp ": /mcp is added after the guard layer (it would not pass through it)"
    }'
} >"$tmp/http-guard"
report http-guard "every /mcp request passes the guard: revocation re-check, Origin, session bound to its certificate"

# --- console-gated ------------------------------------------------------------------------
{
  for f in src/console/pages.rs src/console/live.rs src/console/actions.rs; do
    awk -v F="$f" '
      function done() {
        if (!name) return
        if (!gated) print F ":" line ": " name "    <- no gate() or admit()"
        if (F ~ /actions/ && name !~ /fn bundle\(/ && !admitted) print F ":" line ": " name "    <- an action without admit()"
      }
      /^pub async fn / { done(); name = $0; line = FNR; gated = 0; admitted = 0; next }
      /^}/ { done(); name = ""; next }
      /(^|[^A-Za-z_])(gate|admit)\(/ { gated = 1 }
      /(^|[^A-Za-z_])admit\(/ { admitted = 1 }
    ' "$f"
  done
  fn_body src/console/actions.rs admit >"$tmp/admit.body"
  has 'gate(' "$tmp/admit.body" && has 'may_act(' "$tmp/admit.body" ||
    echo "src/console/actions.rs: fn admit must call gate() and may_act()"
  fn_body src/console/mod.rs router | match -E 'post\(' | match -v 'post(actions::'
} >"$tmp/console-gated"
report console-gated "every console page checks its own certificate (gate); every action also its role, Origin and CSRF token (admit)"

# --- audit-fields -------------------------------------------------------------------------
awk '
  /^pub struct Event \{/ { inside = 1; found = 1; next }
  inside && /^}/ { inside = 0 }
  inside && /^    pub [a-z_]+:/ {
    field = $2; sub(/:$/, "", field)
    if (field ~ /arg|param|token|secret|passw|key|pem|body|header|cookie/)
      print "src/audit.rs:" FNR ": " $0 "    <- the audit log never holds arguments, tokens or key material"
  }
  END { if (!found) print "src/audit.rs: pub struct Event not found" }' src/audit.rs >"$tmp/audit-fields"
report audit-fields "an audit line has fixed fields, none for tool arguments, tokens or key material"

# --- anyhow-at-edge -----------------------------------------------------------------------
match -E '(^|[^A-Za-z_])anyhow([^A-Za-z_]|$)' "$tmp/code" |
  match -vE '^src/(main\.rs|cli/[a-z_/]+\.rs|server/mod\.rs|server/gateway\.rs|server/oauth/mod\.rs):' \
    >"$tmp/anyhow-at-edge"
report anyhow-at-edge "anyhow only at the edge: the CLI, main.rs and serve's start-up; the library returns typed errors"

# --- child-env ----------------------------------------------------------------------------
awk -F: '
  $1 != file { if (want) print pending; file = $1; want = 0 }
  want && /env_clear\(\)/ { want = 0 }
  want && --left < 0 { print pending; want = 0 }
  $1 !~ /^src\/cli\// && /Command::new\(/ {
    pending = $0; want = 1; left = 2
    if ($0 ~ /env_clear\(\)/) want = 0
  }
  END { if (want) print pending }' "$tmp/code" >"$tmp/child-env"
report child-env "an upstream child starts with a cleared environment (then PATH, HOME and the like, and its own settings)"

# --- http-redirects -----------------------------------------------------------------------
{
  match -E 'reqwest::Client::new\(\)|ClientBuilder::new\(\)' "$tmp/code"
  awk -F: '
    $1 != file { if (open) print first; file = $1; open = 0 }
    /reqwest::Client::builder\(\)/ { first = $0; open = 1; seen = 0 }
    open && /\.redirect\(/ { seen = 1 }
    open && /\.build\(\)/ { if (!seen) print first; open = 0 }
    END { if (open) print first }' "$tmp/code"
} >"$tmp/http-redirects"
report http-redirects "every HTTP client mcp-zt builds sets its redirect policy (none, or filtered)"

# --- doc-markers --------------------------------------------------------------------------
{
  doc=ARCHITECTURE.md
  if [ ! -f "$doc" ]; then
    echo "ARCHITECTURE.md is missing"
  else
    printf '%s\n' - "${ran[@]}" doc-markers >"$tmp/ran"
    # The document wraps its lines: read it as one line.
    awk '{ printf "%s ", $0 }' "$doc" >"$tmp/doc.line"
    { echo "-"; match -oE 'check +"[a-z0-9-]+"' "$tmp/doc.line" | awk -F'"' '{ print $2 }'; } >"$tmp/named"
    awk 'NR == FNR { ran[$0] = 1; next } !ran[$0] { print "ARCHITECTURE.md names check \"" $0 "\", which scripts/arch-check.sh does not have" }' \
      "$tmp/ran" "$tmp/named"
    awk 'NR == FNR { named[$0] = 1; next } !named[$0] { print "scripts/arch-check.sh has check \"" $0 "\", which ARCHITECTURE.md never names" }' \
      "$tmp/named" "$tmp/ran"
    match -oE 'test +[A-Za-z0-9_./-]+\.rs::[A-Za-z0-9_:]+' "$tmp/doc.line" | awk '{ print $2 }' >"$tmp/tests"
    while IFS= read -r t; do
      file="${t%%::*}"
      name="${t##*::}"
      if [ ! -f "$file" ]; then
        echo "ARCHITECTURE.md cites test $t: no file $file"
      elif ! has -E "fn $name\(" "$file"; then
        echo "ARCHITECTURE.md cites test $t: no fn $name in $file"
      fi
    done <"$tmp/tests"
  fi
} >"$tmp/doc-markers"
report doc-markers "ARCHITECTURE.md and this script agree on the checks, and every test it cites exists"

echo "arch-check: $passed of $((passed + failed)) checks passed"
[ "$failed" -eq 0 ]
