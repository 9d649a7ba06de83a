"""OAuth across a fleet (scripts/fleet-test.sh): a token issued by one replica works on another,
and revoking the holder's certificate through the first makes the second refuse the token
within 1 s. Standard library only.

Usage: fleet_oauth.py MCP_ZT HOME_A LEDGER CA CERT KEY NAME PORT_A PORT_B PUBLIC_PORT

Both replicas serve the same public names (https://localhost:PUBLIC_PORT/mcp and
https://127.0.0.1:PUBLIC_PORT, as behind one load balancer); each is reached directly on its
own port with those names in SNI and Host.
"""

import base64
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.parse

mcp_zt, home_a, ledger, ca, cert, key, name, port_a, port_b, pub = sys.argv[1:]
port_a, port_b, pub = int(port_a), int(port_b), int(pub)
MCP = f"https://localhost:{pub}/mcp"
LOGIN = f"https://127.0.0.1:{pub}"
VERIFIER = "fleet-oauth-verifier-" + "x" * 40
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fleet", "version": "1"}}})


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def request(port, host, method, path, body=None, headers=None, with_cert=False, sni="localhost"):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = sni != "127.0.0.1"
    if with_cert:
        ctx.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection(sni, port, context=ctx, timeout=10)
    h = {"Host": host}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


mcp_host = f"localhost:{pub}"
login_host = f"127.0.0.1:{pub}"

def obtain():
    """Registers a client and gets a token pair on replica A: (client_id, tokens)."""
    status, _, body = request(port_a, mcp_host, "POST", "/register",
                              json.dumps({"redirect_uris": ["http://127.0.0.1/cb"]}),
                              {"Content-Type": "application/json"})
    if status != 201:
        fail(f"register on replica A: {status} {body!r}")
    client_id = json.loads(body)["client_id"]
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1:9/cb",
        "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256", "resource": MCP})
    status, _, page = request(port_a, login_host, "GET", f"/authorize?{query}", with_cert=True,
                              sni="127.0.0.1")
    if status != 200:
        fail(f"consent page on replica A: {status} {page[:200]!r}")
    fields = {m.group(1): m.group(2).replace("&amp;", "&").replace("&quot;", '"')
              for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.decode())}
    fields["decision"] = "approve"
    status, headers, _ = request(port_a, login_host, "POST", "/authorize/decide",
                                 urllib.parse.urlencode(fields),
                                 {"Content-Type": "application/x-www-form-urlencoded", "Origin": LOGIN},
                                 with_cert=True, sni="127.0.0.1")
    if status != 303:
        fail(f"approval on replica A: {status}")
    code = urllib.parse.parse_qs(urllib.parse.urlparse(headers["location"]).query)["code"][0]
    status, _, body = request(port_a, mcp_host, "POST", "/token", urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb",
        "client_id": client_id, "code_verifier": VERIFIER}),
        {"Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        fail(f"token from replica A: {status} {body!r}")
    tokens = json.loads(body)
    return client_id, tokens


client_id, tokens = obtain()
ok("replica A issued a token pair")


def init_on(port, token):
    status, _, _ = request(port, mcp_host, "POST", "/mcp", INIT, {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"})
    return status


if init_on(port_b, tokens["access_token"]) != 200:
    fail("replica B refused the token replica A issued")
ok("the token replica A issued works on replica B")
status, _, body = request(port_b, mcp_host, "POST", "/token", urllib.parse.urlencode({
    "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}),
    {"Content-Type": "application/x-www-form-urlencoded"})
if status != 200:
    fail(f"refresh on replica B: {status} {body!r}")
access = json.loads(body)["access_token"]
status, _, body2 = request(port_a, mcp_host, "POST", "/token", urllib.parse.urlencode({
    "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}),
    {"Content-Type": "application/x-www-form-urlencoded"})
if status != 200 or json.loads(body2)["access_token"] != access:
    fail(f"the same refresh on replica A within the grace did not give the same pair: {status}")
ok("a refresh on replica B rotates; the same refresh on replica A within the grace gets the same pair")
if init_on(port_b, access) != 200:
    fail("the refreshed token does not work on replica B")

# A grant revoked through replica A ends an event stream open on replica B.
import threading

other_client, other = obtain()
status, headers, _ = request(port_b, mcp_host, "POST", "/mcp", INIT, {
    "Authorization": f"Bearer {other['access_token']}", "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream"})
sid = headers.get("mcp-session-id")
if status != 200 or not sid:
    fail(f"initialize on replica B with the second grant: {status}")
ctx = ssl.create_default_context(cafile=ca)
stream = http.client.HTTPSConnection("localhost", port_b, context=ctx, timeout=30)
stream.request("GET", "/mcp", headers={
    "Host": mcp_host, "Authorization": f"Bearer {other['access_token']}",
    "Accept": "text/event-stream", "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
resp = stream.getresponse()
if resp.status != 200:
    fail(f"event stream on replica B: {resp.status}")
ended = {}


def drain():
    try:
        while resp.read(1):
            pass
        ended["how"] = "ended"
    except Exception as e:  # a reset stream is the expected end
        ended["how"] = type(e).__name__
    ended["at"] = time.monotonic()


t = threading.Thread(target=drain, daemon=True)
t.start()
time.sleep(0.5)
if ended:
    fail("the event stream on replica B ended before the revocation")
revoke_at = time.monotonic()
subprocess.run([mcp_zt, "--home", home_a, "--ledger", ledger, "oauth", "revoke", "--client",
                other_client], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t.join(5)
if not ended:
    fail("replica B kept the event stream of a grant revoked through replica A for 5 s")
print(f"replica B cut the stream {ended['at'] - revoke_at:.2f} s after `oauth revoke` started "
      f"({ended['how']})", flush=True)
if init_on(port_b, other["access_token"]) != 401:
    fail("replica B still accepts the token of a grant revoked through replica A")
ok("a grant revoked through replica A: replica B cuts its open stream and refuses its token")

# Revoke through replica A; replica B must refuse the token within 1 s.
started = time.monotonic()
subprocess.run([mcp_zt, "--home", home_a, "--ledger", ledger, "revoke", name], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
revoked_at = time.monotonic()
while True:
    if init_on(port_b, access) == 401:
        break
    if time.monotonic() - revoked_at > 5:
        fail("replica B still accepts the token 5 s after the revocation")
    time.sleep(0.02)
took = time.monotonic() - revoked_at
print(f"replica B refused the token {took * 1000:.0f} ms after `revoke` returned "
      f"({(revoked_at - started) * 1000:.0f} ms for the command)", flush=True)
if took > 1.0:
    fail(f"replica B took {took:.2f} s (more than 1 s) to refuse the token")
ok("revoking the certificate through replica A: replica B refuses its token within 1 s")
