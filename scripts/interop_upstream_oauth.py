"""Per-holder upstream OAuth through mcp-zt, driven with the official MCP Python SDK's clients
and headless Chromium (Debian's `chromium`, driven by Playwright).

The upstream is scripts/oauth_upstream.py (the SDK's own authorization server); mcp-zt is each
holder's OAuth client to it. Subcommands (all print `ok: ...` lines on stderr and exit
non-zero on a failed check):

  link MCP_ZT HOME NAME MCP_URL UPSTREAM USER SHOTS
      `mcp-zt link` with NAME's certificate; Chromium logs in to the upstream as USER.
  call MCP_URL CA PKI NAME TOOL EXPECTED
      One call of TOOL as NAME; it must answer EXPECTED. The client also sends its own
      Authorization header and a canary header, which must never reach the upstream.
  error MCP_URL CA PKI NAME TOOL TEXT
      One call of TOOL as NAME; it must be a tool error containing TEXT. Prints the link in it.
  parallel MCP_URL CA PKI SECONDS NAME=EXPECTED...
      Every NAME calls whoami in a loop, all at once, for SECONDS; every answer must be the
      NAME's own upstream account.
  legacy MCP_URL CA PKI NAME TOOL
      A 2025-11-25 client with URL-mode elicitation: the call must bring elicitation/create
      with mode "url" pointing at the upstream's authorization endpoint. Prints the URL.
  modern MCP_URL CA PKI NAME TOOL
      A 2026-07-28 client: the call must answer input_required carrying that elicitation.
  plain MCP_URL CA PKI NAME TOOL
      A client without elicitation: a tool error with the link and the `mcp-zt link` command.
  browser URL ORIGIN CA PKI NAME USER EXPECT SHOTS
      Chromium with NAME's certificate for ORIGIN opens URL (a link from an elicitation),
      logs in to the upstream as USER, and lands on mcp-zt's callback page, whose text must
      contain EXPECT. Prints the callback URL it landed on.
  refused URL ORIGIN CA PKI NAME EXPECT SHOTS
      Chromium with NAME's certificate opens URL (someone else's link page): mcp-zt's page
      must refuse with EXPECT, before anything reaches the upstream.
  forged LINK_URL CA PKI NAME USER
      The link page opened with NAME's certificate by a client that then logs in to the
      upstream as USER and hands the callback URL on (the way an attacker would send a victim
      a callback made with the attacker's account): the callback without the link page's
      cookie must be refused.
  get URL CA PKI NAME EXPECT_STATUS
      One GET with NAME's certificate (a replayed or tampered callback); prints the body.
"""

import asyncio
import re
import ssl
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx2
from mcp import Client, ClientSession, types
from mcp.client.streamable_http import streamable_http_client


def check(cond, what):
    """Checks go to stderr; stdout carries only what a caller captures (a URL)."""
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}", file=sys.stderr, flush=True)


def context(ca, pki, name):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(f"{pki}/clients/{name}.crt", f"{pki}/clients/{name}.key")
    return ctx


def text_of(result):
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def upstream_login(page, url, user, shots, label):
    """On the upstream's login page (after the authorize redirect): log in as USER."""
    await page.goto(url)
    await page.wait_for_selector("input[name=username]", timeout=15000)
    await page.fill("input[name=username]", user)
    await page.screenshot(path=f"{shots}/{label}-upstream-login.png")
    await page.click("#login")


async def link(mcp_zt, home, name, mcp_url, upstream, user, shots):
    from playwright.async_api import async_playwright

    proc = subprocess.Popen(
        [mcp_zt, "--home", home, "link", upstream, "--url", mcp_url, "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    check(url.startswith("http") and "code_challenge_method=S256" in url and "resource=" in url,
          f"{name}: mcp-zt link printed the upstream's authorization URL (PKCE S256, resource)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = await browser.new_page()
        await upstream_login(page, url, user, shots, name)
        await page.wait_for_url(re.compile(r"http://127\.0\.0\.1:\d+/callback\?"), timeout=15000)
        body = await page.text_content("body")
        await page.screenshot(path=f"{shots}/{name}-loopback.png")
        await browser.close()
    check("Back to the terminal" in (body or ""), f"{name}: the browser came back to mcp-zt link's loopback page")
    out, err = proc.communicate(timeout=60)
    check(proc.returncode == 0 and f"linked {upstream} for {name}" in err,
          f"{name}: mcp-zt link finished: {err.strip().splitlines()[-1] if err.strip() else err!r}")


CANARY = {"Authorization": "Bearer canary-from-the-client", "X-Canary": "canary-from-the-client"}


def link_http(mcp_zt, home, ledger, name, mcp_url, upstream, user):
    proc = subprocess.Popen(
        [mcp_zt, "--home", home, "--ledger", ledger, "link", upstream, "--url", mcp_url, "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    with httpx2.Client(follow_redirects=False, timeout=30) as http:
        login = http.get(url).headers["location"]
        form = http.get(login).text
        txn = re.search(r'name="txn" value="([^"]+)"', form).group(1)
        back = http.post(login.split("?")[0], data={"txn": txn, "username": user}).headers["location"]
        check(http.get(back).status_code == 200, f"{name}: the upstream sent the code to mcp-zt link's loopback port")
    _, err = proc.communicate(timeout=60)
    check(proc.returncode == 0 and f"linked {upstream} for {name}" in err,
          f"{name}: {err.strip().splitlines()[-1] if err.strip() else err!r}")


async def call(mcp_url, ctx, tool, **kw):
    async with httpx2.AsyncClient(verify=ctx, timeout=60, headers=CANARY) as http:
        async with Client(streamable_http_client(mcp_url, http_client=http), **kw) as client:
            return await client.call_tool(tool, {})


async def call_one(mcp_url, ca, pki, name, tool, expected):
    r = await call(mcp_url, context(ca, pki, name), tool, mode="legacy")
    check(text_of(r) == expected and not r.is_error, f"{name}: {tool} answers {text_of(r)!r}")


async def error(mcp_url, ca, pki, name, tool, text):
    r = await call(mcp_url, context(ca, pki, name), tool, mode="legacy")
    t = text_of(r)
    check(r.is_error and text in t, f"{name}: {tool} -> tool error {t[:200]!r}")
    link = re.search(r"Link: (\S+)", t)
    if link:
        print(link.group(1))


async def parallel(mcp_url, ca, pki, seconds, pairs):
    deadline = time.monotonic() + seconds
    counts = {}

    async def one(name, expected):
        ctx = context(ca, pki, name)
        n = 0
        async with httpx2.AsyncClient(verify=ctx, timeout=60, headers=CANARY) as http:
            async with Client(streamable_http_client(mcp_url, http_client=http), mode="legacy") as client:
                while time.monotonic() < deadline:
                    r = await client.call_tool("gh__whoami", {})
                    got = text_of(r)
                    if r.is_error or got != expected:
                        raise SystemExit(f"FAIL: {name} got {got!r} (error {r.is_error}) after {n} calls")
                    n += 1
                    await asyncio.sleep(0.2)
        counts[name] = n

    await asyncio.gather(*(one(*p.split("=", 1)) for p in pairs))
    check(all(n > 0 for n in counts.values()),
          f"{seconds}s in parallel, every answer the caller's own account: {counts}")


async def legacy(mcp_url, ca, pki, name, tool):
    asked = []

    async def elicit(_ctx, params):
        asked.append(params)
        return types.ElicitResult(action="decline")

    async with httpx2.AsyncClient(verify=context(ca, pki, name), timeout=60) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicit) as session:
                init = await session.initialize()
                check(init.protocol_version == "2025-11-25", f"{name}: 2025-11-25 session")
                r = await session.call_tool(tool, {})
    check(len(asked) == 1, f"{name}: one elicitation/create arrived on the session")
    p = asked[0]
    check(getattr(p, "mode", None) == "url" and "/link/go/" in p.url and p.elicitation_id,
          f"{name}: URL-mode elicitation to mcp-zt's link page")
    check(r.is_error and "not linked yet" in text_of(r), f"{name}: declined -> {text_of(r)!r}")
    print(p.url)


async def modern(mcp_url, ca, pki, name, tool):
    async with httpx2.AsyncClient(verify=context(ca, pki, name), timeout=60) as http:
        async def elicit(_ctx, params):
            return types.ElicitResult(action="decline")

        async with Client(streamable_http_client(mcp_url, http_client=http), mode="2026-07-28",
                          elicitation_callback=elicit) as client:
            check(client.protocol_version == "2026-07-28", f"{name}: 2026-07-28 client")
            r = await client.session.call_tool(tool, {}, allow_input_required=True)
    check(getattr(r, "result_type", None) == "input_required", f"{name}: input_required")
    q = (r.input_requests or {}).get("link")
    params = q.params if q else None
    check(q is not None and q.method == "elicitation/create" and getattr(params, "mode", None) == "url"
          and "/link/go/" in params.url, f"{name}: it carries a URL-mode elicitation/create")
    check(bool(r.request_state), f"{name}: with a requestState")


async def plain(mcp_url, ca, pki, name, tool):
    r = await call(mcp_url, context(ca, pki, name), tool, mode="legacy")
    t = text_of(r)
    check(r.is_error and "/link/go/" in t and "mcp-zt link gh" in t,
          f"{name}: a client without URL elicitation gets a tool error with the link and the command")
    print(re.search(r"Link: (\S+)", t).group(1))


async def browser(url, origin, ca, pki, name, user, expect, shots):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        ctx = await b.new_context(ignore_https_errors=True, client_certificates=[
            {"origin": origin, "certPath": f"{pki}/clients/{name}.crt", "keyPath": f"{pki}/clients/{name}.key"}])
        page = await ctx.new_page()
        await upstream_login(page, url, user, shots, f"{name}-browser")
        await page.wait_for_url(re.compile(re.escape(origin) + r"/oauth/callback\?"), timeout=20000)
        body = await page.text_content("body") or ""
        await page.screenshot(path=f"{shots}/{name}-callback.png")
        landed = page.url
        await b.close()
    check(expect in body, f"{name}: mcp-zt's callback page says {body.strip()[:160]!r}")
    print(landed)


async def refused(url, origin, ca, pki, name, expect, shots):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        ctx = await b.new_context(ignore_https_errors=True, client_certificates=[
            {"origin": origin, "certPath": f"{pki}/clients/{name}.crt", "keyPath": f"{pki}/clients/{name}.key"}])
        page = await ctx.new_page()
        resp = await page.goto(url)
        body = await page.text_content("body") or ""
        await page.screenshot(path=f"{shots}/{name}-refused.png")
        await b.close()
    check(resp.status == 403 and expect in body and page.url.startswith(origin),
          f"{name}: mcp-zt's link page refuses: {body.strip()[:120]!r}")


def forged(link_url, ca, pki, name, user):
    ctx = context(ca, pki, name)
    with httpx2.Client(verify=ctx, follow_redirects=False, timeout=30) as mine:
        authorize = mine.get(link_url).headers["location"]
    with httpx2.Client(follow_redirects=False, timeout=30) as other:
        login = other.get(authorize).headers["location"]
        txn = re.search(r'name="txn" value="([^"]+)"', other.get(login).text).group(1)
        callback = other.post(login.split("?")[0], data={"txn": txn, "username": user}).headers["location"]
    r = httpx2.get(callback, verify=ctx, timeout=30)
    check(r.status_code == 403 and "did not open the link page" in r.text,
          f"{name}: a callback made elsewhere (upstream account {user}) is refused without the link page's cookie")


def get(url, ca, pki, name, status):
    r = httpx2.get(url, verify=context(ca, pki, name), timeout=30)
    body = re.sub(r"<[^>]+>", " ", r.text)
    body = re.sub(r"\s+", " ", body).strip()
    check(r.status_code == int(status), f"{name}: GET {urlparse(url).path} -> {r.status_code}: {body[-160:]!r}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "link":
        asyncio.run(link(*args))
    elif cmd == "link-http":
        link_http(*args)
    elif cmd == "call":
        asyncio.run(call_one(*args))
    elif cmd == "error":
        asyncio.run(error(*args))
    elif cmd == "parallel":
        asyncio.run(parallel(args[0], args[1], args[2], float(args[3]), args[4:]))
    elif cmd == "legacy":
        asyncio.run(legacy(*args))
    elif cmd == "modern":
        asyncio.run(modern(*args))
    elif cmd == "plain":
        asyncio.run(plain(*args))
    elif cmd == "browser":
        asyncio.run(browser(*args))
    elif cmd == "refused":
        asyncio.run(refused(*args))
    elif cmd == "forged":
        forged(*args)
    elif cmd == "get":
        get(*args)
    else:
        raise SystemExit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
