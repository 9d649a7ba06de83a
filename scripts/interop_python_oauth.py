"""The official MCP Python SDK's OAuth client against `mcp-zt serve --oauth`, with the holder's
approval given in headless Chromium (Debian's `chromium`, driven by Playwright) that presents
the holder's client certificate on the login name.

Usage: interop_python_oauth.py MODE MCP_URL LOGIN_URL CA CERT KEY ROLE MCP_ZT HOME SHOTS [CIMD_URL]

MODE is `dcr` (dynamic client registration), `cimd` (CIMD_URL is the client ID metadata
document's URL) or `cli` (DCR, approved with `mcp-zt oauth approve CODE` while a browser
without a certificate waits). The client lists tools (the role's view exactly), calls whoami; then the
holder's certificate is revoked with `mcp-zt revoke`, and the next call must get 401
invalid_token, the open SSE stream must be cut, and a refresh must get invalid_grant.
Screenshots of the consent page and of the no-certificate page go to SHOTS.
"""

import asyncio
import json
import ssl
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from playwright.async_api import async_playwright

# The role's view: the built-in tools and the upstream `docs` (scripts/gateway/demo_upstream.py)
# as the test's policy allows (viewers may search; admins everything but deleting).
EXPECTED = {
    "viewer": {"whoami", "read_data", "list_keys", "docs__search"},
    "admin": {
        "whoami", "read_data", "list_keys", "write_data", "delete_data", "list_certs",
        "revoke_cert", "docs__search",
    },
}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client_info = client_info


class Callback:
    """A loopback redirect target: takes one request, hands its query to the flow."""

    def __init__(self):
        self.result = asyncio.get_running_loop().create_future()
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        line = (await reader.readline()).decode("latin-1")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        target = line.split(" ")[1] if " " in line else "/"
        query = parse_qs(urlparse(target).query)
        if not self.result.done():
            self.result.set_result(query)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n"
                     b"connection: close\r\n\r\ndone\n")
        await writer.drain()
        writer.close()


async def main(mode, mcp_url, login_url, ca, cert, key, role, mcp_zt, home, shots, cimd_url):
    holder_name = cert.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    verify = ssl.create_default_context(cafile=ca)
    storage = Memory()
    callback = Callback()
    await callback.start()
    redirect_uri = f"http://127.0.0.1:{callback.port}/callback"

    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    login_origin = login_url.rstrip("/")
    with_cert = await browser.new_context(
        ignore_https_errors=True,
        client_certificates=[{"origin": login_origin, "certPath": cert, "keyPath": key}],
    )
    without_cert = await browser.new_context(ignore_https_errors=True)
    seen = {"consent": 0}

    async def redirect_handler(url: str):
        seen["consent"] += 1
        if seen["consent"] > 1:
            raise SystemExit("FAIL: the client asked for a second authorization")
        q = parse_qs(urlparse(url).query)
        check(q.get("code_challenge_method") == ["S256"], "the SDK sends PKCE S256")
        check(q.get("resource") == [mcp_url], "the SDK sends resource = --public-url")
        # The no-certificate page, in a browser that has none.
        page = await without_cert.new_page()
        resp = await page.goto(url)
        check(resp.status == 403, f"no certificate: page status {resp.status}")
        body = await page.content()
        check("client certificate is needed" in body, "no-certificate page says what to do")
        code = (await page.inner_text("#code")).strip()
        command = await page.inner_text("#approve-command")
        check(len(code) == 8 and code in command, f"the page shows an approval code: {command!r}")
        await page.screenshot(path=f"{shots}/no-certificate-{mode}.png", full_page=True)
        if mode == "cli":
            # The holder approves from the command line; the waiting page goes on by itself.
            done = subprocess.run(
                [mcp_zt, "--home", home, "oauth", "approve", code, "--url", login_url,
                 "--name", holder_name],
                input="y\n", capture_output=True, text=True, timeout=30)
            print(done.stderr.strip())
            check(done.returncode == 0, "mcp-zt oauth approve succeeded")
            check("answer goes to: 127.0.0.1:" in done.stderr, "the command shows the redirect host")
            await page.wait_for_url(f"http://127.0.0.1:{callback.port}/**", timeout=15000)
            check(True, "the waiting browser page went on to the client by itself")
            await page.close()
            return
        await page.close()
        # The consent page, with the holder's certificate.
        page = await with_cert.new_page()
        resp = await page.goto(url)
        check(resp.status == 200, f"consent page status {resp.status}")
        holder = await page.inner_text("#holder")
        check(role in holder, f"consent page shows the holder: {holder!r}")
        host = await page.inner_text("#redirect-host")
        check(host == f"127.0.0.1:{callback.port}", f"consent page shows the redirect host {host!r}")
        csp = resp.headers.get("content-security-policy", "")
        check("frame-ancestors 'none'" in csp, "consent page forbids framing")
        await page.screenshot(path=f"{shots}/consent-{mode}.png", full_page=True)
        await page.click("#approve")
        await page.wait_for_url(f"http://127.0.0.1:{callback.port}/**")
        await page.close()

    async def callback_handler():
        q = await asyncio.wait_for(callback.result, 30)
        check("code" in q, "the browser came back with a code")
        return AuthorizationCodeResult(
            code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0]
        )

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=f"mcp-zt interop ({mode})",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=cimd_url if mode == "cimd" else None,
    )
    async with httpx2.AsyncClient(auth=provider, verify=verify,
                                  timeout=httpx2.Timeout(30, read=60)) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                print(f"oauth ({mode}): {role} sees {sorted(names)}")
                check(names == EXPECTED[role], f"the token sees exactly the {role} view")
                who = json.loads((await session.call_tool("whoami", {})).content[0].text)
                check(who["role"] == role, f"whoami through the token: {who['name']} ({who['role']})")
                found = await session.call_tool("docs__search", {"query": "readme"})
                check(not found.is_error, f"the upstream tool through the token: {found.content[0].text[:60]!r}")
    check(seen["consent"] == 1, "one browser approval")
    if mode == "cimd":
        check(storage.client_info.client_id == cimd_url, "the CIMD URL is the client_id")
    tokens = storage.tokens
    check(tokens is not None and tokens.refresh_token, "the client holds an access and a refresh token")
    await browser.close()
    await pw.stop()

    # With the tokens alone: a session, an open SSE stream, then the revocation.
    bearer = {"authorization": f"Bearer {tokens.access_token}",
              "accept": "application/json, text/event-stream",
              "mcp-protocol-version": "2025-11-25"}
    async with httpx2.AsyncClient(verify=verify, timeout=httpx2.Timeout(10, read=30)) as raw:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}
        r = await raw.post(mcp_url, json=init, headers=bearer)
        check(r.status_code == 200, f"initialize with the access token: {r.status_code}")
        sid = r.headers["mcp-session-id"]
        h = dict(bearer, **{"mcp-session-id": sid})
        await raw.post(mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=h)
        cut = asyncio.get_running_loop().create_future()

        async def listen():
            try:
                async with raw.stream("GET", mcp_url, headers=h) as s:
                    async for _ in s.aiter_bytes():
                        pass
                cut.set_result("ended")
            except Exception as e:  # a reset stream is the expected end
                cut.set_result(f"reset: {type(e).__name__}")

        task = asyncio.create_task(listen())
        await asyncio.sleep(1.0)
        check(not cut.done(), "the SSE stream is open")
        name = who["name"]
        started = time.monotonic()
        subprocess.run([mcp_zt, "--home", home, "revoke", name], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        how = await asyncio.wait_for(cut, 5)
        check(True, f"the open stream was cut {time.monotonic() - started:.2f}s after revoke ({how})")
        await task
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "whoami", "arguments": {}}}
        r = await raw.post(mcp_url, json=call, headers=h)
        check(r.status_code == 401, f"the next call gets 401 ({r.status_code})")
        check('error="invalid_token"' in r.headers.get("www-authenticate", ""),
              "with error=invalid_token")
        token_url = mcp_url.rsplit("/mcp", 1)[0] + "/token"
        r = await raw.post(token_url, data={
            "grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
            "client_id": storage.client_info.client_id})
        check(r.status_code == 400 and r.json().get("error") == "invalid_grant",
              f"a refresh gets invalid_grant ({r.status_code} {r.text})")
    print(f"interop-python-oauth ({mode}): ok")


if __name__ == "__main__":
    if len(sys.argv) not in (11, 12):
        raise SystemExit(__doc__)
    args = sys.argv[1:] + ([None] if len(sys.argv) == 11 else [])
    asyncio.run(main(*args))
