"""Obtains an OAuth access token from `mcp-zt serve --oauth` for the benchmark: registers a
client, approves it with the holder's certificate (the consent form, as a browser would post
it) and exchanges the code. Standard library only; loopback only.

Usage: oauth_token.py CA CERT KEY PORT     (public URL https://localhost:PORT/mcp, login name
                                            https://127.0.0.1:PORT); prints the access token.
"""

import base64
import hashlib
import http.client
import json
import re
import ssl
import sys
import urllib.parse

ca, cert, key, port = sys.argv[1:]
port = int(port)
login = f"https://127.0.0.1:{port}"
verifier = "bench-verifier-" + "v" * 40
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def call(method, path, body=None, headers=None, sni="localhost", with_cert=False):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = sni != "127.0.0.1"
    if with_cert:
        ctx.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection(sni, port, context=ctx, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status >= 400:
        sys.exit(f"{method} {path}: {r.status} {data[:200]!r}")
    return r, data


_, body = call("POST", "/register", json.dumps({"redirect_uris": ["http://127.0.0.1/cb"]}),
               {"Content-Type": "application/json"})
client_id = json.loads(body)["client_id"]
q = urllib.parse.urlencode({
    "response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1:9/cb",
    "code_challenge": challenge, "code_challenge_method": "S256",
    "resource": f"https://localhost:{port}/mcp"})
_, page = call("GET", f"/authorize?{q}", sni="127.0.0.1", with_cert=True)
fields = {m.group(1): m.group(2).replace("&amp;", "&")
          for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.decode())}
fields["decision"] = "approve"
r, _ = call("POST", "/authorize/decide", urllib.parse.urlencode(fields),
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": login},
            sni="127.0.0.1", with_cert=True)
code = urllib.parse.parse_qs(urllib.parse.urlparse(r.getheader("location")).query)["code"][0]
_, body = call("POST", "/token", urllib.parse.urlencode({
    "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb",
    "client_id": client_id, "code_verifier": verifier}),
    {"Content-Type": "application/x-www-form-urlencoded"})
print(json.loads(body)["access_token"])
