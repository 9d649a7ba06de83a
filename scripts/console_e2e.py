"""The console (`serve --console`) in headless Chromium (Debian's `chromium`, driven by
Playwright for Python) with client certificates, and the official MCP Python SDK as the holder
being revoked.

Usage: console_e2e.py MCP_ZT HOME CONSOLE_ORIGIN MCP_URL EVIL_ORIGIN SHOTS

HOME has certificates adm (console admin), aud (console read), vic (viewer: no console); the
server runs with --oauth (so a browser without a certificate reaches the login name) and
--console. EVIL_ORIGIN serves pages from another origin (scripts/console_evil.py). Prints
`ok: ...` per check; exits non-zero on the first failure.
"""

import asyncio
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import httpx2
from playwright.async_api import async_playwright

MCP_ZT, HOME, ORIGIN, MCP_URL, EVIL, SHOTS = sys.argv[1:7]
CA = f"{HOME}/ca.crt"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}", flush=True)


def ctx_for(name):
    c = ssl.create_default_context(cafile=CA)
    c.load_cert_chain(f"{HOME}/clients/{name}.crt", f"{HOME}/clients/{name}.key")
    return c


def cert(name):
    return {"origin": ORIGIN, "certPath": f"{HOME}/clients/{name}.crt", "keyPath": f"{HOME}/clients/{name}.key"}


def serial_of(name):
    out = subprocess.run([MCP_ZT, "--home", HOME, "show", name, "--json"], capture_output=True, text=True)
    m = re.search(r'"serial":\s*"([0-9a-f]+)"', out.stdout)
    return m.group(1) if m else None


async def browser_for(pw, name=None):
    b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    opts = {"ignore_https_errors": True}
    if name:
        opts["client_certificates"] = [cert(name)]
    context = await b.new_context(**opts)
    dialogs = []

    def on_dialog(d):
        # The console's own confirmations are accepted; any other dialog is a script that
        # should not have run.
        if d.type == "confirm":
            asyncio.ensure_future(d.accept())
        else:
            dialogs.append(d.message)
            asyncio.ensure_future(d.dismiss())

    context.on("dialog", on_dialog)
    return b, context, dialogs


def holder_stream(name, seconds, result):
    """An MCP session of NAME (2025-11-25) holding its GET event stream; result['ended'] is
    set to the time the stream ended."""
    c = ctx_for(name)
    h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}
    with httpx2.Client(verify=c, timeout=seconds) as http:
        r = http.post(MCP_URL, json=init, headers=h)
        sid = r.headers.get("mcp-session-id")
        http.post(MCP_URL, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                  headers={**h, "Mcp-Session-Id": sid})
        result["open"] = True
        try:
            with http.stream("GET", MCP_URL, headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid}) as s:
                for _ in s.iter_bytes():
                    pass
        except Exception as e:  # noqa: BLE001 - the cut is what is being waited for
            result["error"] = type(e).__name__
    result["ended"] = time.monotonic()


async def sdk_tools(name):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(verify=ctx_for(name), timeout=30) as http:
        async with streamable_http_client(MCP_URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                return {t.name for t in (await s.list_tools()).tools}


async def main():
    async with async_playwright() as pw:
        b, ctx, dialogs = await browser_for(pw, "adm")
        page = await ctx.new_page()
        for path, title in [("", "Overview"), ("certs", "Certificates"), ("sessions", "Sessions"),
                            ("audit", "Audit"), ("access", "Access"), ("upstreams", "Upstreams"), ("oauth", "OAuth")]:
            r = await page.goto(f"{ORIGIN}/console/{path}")
            check(r.status == 200 and await page.text_content("h1") == title, f"admin: {title} page")
            await page.screenshot(path=f"{SHOTS}/{path or 'overview'}.png", full_page=True)

        # Issue carol; the bundle opens with the password shown once.
        await page.goto(f"{ORIGIN}/console/certs")
        await page.fill("input[name=name]", "carol")
        await page.select_option("select[name=role]", "viewer")
        await page.click("form[action='/console/certs/issue'] button")
        password = await page.text_content("#password")
        async with page.expect_download() as d:
            await page.click("#bundle")
        download = await d.value
        p12 = f"{tempfile.mkdtemp()}/carol.p12"  # never beside the screenshots (docs/console)
        await download.save_as(p12)
        await page.screenshot(path=f"{SHOTS}/issued.png")
        out = subprocess.run(["openssl", "pkcs12", "-in", p12, "-passin", f"pass:{password}", "-nokeys"],
                             capture_output=True, text=True)
        check(out.returncode == 0 and "CN=carol" in out.stdout.replace(" = ", "="),
              "issued carol in the console; her PKCS#12 opens with the password shown once (openssl)")
        again = await ctx.request.get(f"{ORIGIN}{await page.get_attribute('#bundle', 'href')}")
        check(again.status == 400, "the bundle downloads once")

        # carol holds a stream; the admin revokes her; everything is cut.
        stream = {}
        t = threading.Thread(target=holder_stream, args=("carol", 60, stream), daemon=True)
        t.start()
        for _ in range(100):
            if stream.get("open"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        serial = serial_of("carol")
        audit = await ctx.new_page()
        await audit.goto(f"{ORIGIN}/console/audit")
        await page.goto(f"{ORIGIN}/console/certs/{serial}")
        # Selectors, not wait_for_function: the console's CSP forbids eval, even Playwright's.
        await page.wait_for_selector("[data-live-sessions][data-count='1']", timeout=5000)
        check(True, "carol's live session is on her certificate's page")
        await page.screenshot(path=f"{SHOTS}/certificate.png", full_page=True)
        await page.fill("input[name=confirm]", "carol")
        t0 = time.monotonic()
        await page.click("form[action$='/revoke'] button")
        await page.wait_for_selector("[data-live-sessions][data-count='0']", timeout=1000)
        check(True, f"the console's session list is empty {time.monotonic() - t0:.2f}s after the revoke")
        await audit.locator("#live li", has_text="certificate_revoked").filter(has_text="carol").first.wait_for(timeout=1000)
        check(True, f"the live audit shows the revocation {time.monotonic() - t0:.2f}s after it")
        await audit.screenshot(path=f"{SHOTS}/audit-live.png", full_page=True)
        t.join(5)
        check("ended" in stream and stream["ended"] - t0 < 2, f"carol's open event stream was cut ({stream.get('error', 'closed')})")
        try:
            await sdk_tools("carol")
            refused = False
        except Exception:  # noqa: BLE001
            refused = True
        check(refused, "carol's next handshake (official Python SDK) is refused")

        # Check a policy change: viewers lose read_data.
        before = await sdk_tools("vic")
        await page.goto(f"{ORIGIN}/console/access")
        text = await page.input_value("textarea[name=policy]")
        changed = text.replace('[tools.read_data]\nroles = ["viewer"]', '[tools.read_data]\nroles = ["editor"]')
        at = text.find("read_data")
        check(changed != text, f"the policy on the page has [tools.read_data] for viewers ({text[max(0, at - 20):at + 40]!r})")
        await page.fill("textarea[name=policy]", changed)
        await page.click("form[action='/console/access/check'] button")
        diff = await page.text_content("#diff")
        check("viewer" in diff and "read_data" in diff and "disappears" in diff, "the check shows read_data disappearing for viewers")
        await page.screenshot(path=f"{SHOTS}/access-check.png", full_page=True)
        await page.click("form[action='/console/access/apply'] button")
        await page.wait_for_selector("#done")
        after = await sdk_tools("vic")
        check("read_data" in before and "read_data" not in after, "applied: the viewer's tools/list lost read_data")

        # Hostile text renders as text.
        for path in ["audit?q=onerror", "upstreams"]:
            await page.goto(f"{ORIGIN}/console/{path}")
        body = await page.text_content("main")
        check("<script>alert(2)</script>" in body, "an upstream tool description with <script> is text on the upstreams page")
        await page.goto(f"{ORIGIN}/console/audit?q=onerror")
        found = await page.text_content("#found")
        check("<img src=x onerror=alert(1)>" in found, "a certificate named <img src=x onerror=alert(1)> is text in the audit search")
        await page.goto(f"{ORIGIN}/console/audit?q=ctl-evil")
        found = await page.text_content("#found")
        check("\\u001b" in found and "\x1b" not in found, "an audit line with control characters shows them escaped")
        check(not dialogs, f"no script ran (dialogs: {dialogs})")

        # Another origin: a form posted to the console, and a frame of it.
        evil = await ctx.new_page()
        await evil.goto(f"{EVIL}/post.html?target={ORIGIN}/console/certs/issue")
        await evil.wait_for_load_state("load")
        await evil.wait_for_timeout(1500)
        frame_text = await evil.text_content("body")
        listed = subprocess.run([MCP_ZT, "--home", HOME, "list", "--json"], capture_output=True, text=True).stdout
        check("mallory" not in listed, f"a cross-origin form POST with the admin's certificate issued nothing ({frame_text.strip()[:80]!r})")
        framed = await ctx.new_page()
        await framed.goto(f"{EVIL}/frame.html?target={ORIGIN}/console/")
        await framed.wait_for_timeout(1500)
        inner = framed.frames[1] if len(framed.frames) > 1 else None
        content = (await inner.content()) if inner else ""
        check("Overview" not in content, "the console cannot be framed by another origin")
        await b.close()

        # read role, no console role, no certificate.
        b, ctx, _ = await browser_for(pw, "aud")
        page = await ctx.new_page()
        r = await page.goto(f"{ORIGIN}/console/certs")
        check(r.status == 200 and await page.query_selector("form[method=post]") is None, "a read role sees the pages, with no action forms")
        await b.close()
        b, ctx, _ = await browser_for(pw, "vic")
        page = await ctx.new_page()
        r = await page.goto(f"{ORIGIN}/console/")
        check(r.status == 403 and "no console access" in await page.text_content("#why"), "a role without console access gets the 403 page")
        await page.screenshot(path=f"{SHOTS}/no-access.png")
        await b.close()
        b, ctx, _ = await browser_for(pw, None)
        page = await ctx.new_page()
        r = await page.goto(f"{ORIGIN}/console/")
        check(r.status == 401 and "client certificate" in await page.text_content("#why"), "a browser without a certificate gets the explanation page")
        await page.screenshot(path=f"{SHOTS}/no-certificate.png")
        await b.close()

        # Revoking the admin's own certificate ends their console at the next request.
        b, ctx, _ = await browser_for(pw, "adm2")
        page = await ctx.new_page()
        r = await page.goto(f"{ORIGIN}/console/")
        check(r.status == 200, "adm2 uses the console")
        subprocess.run([MCP_ZT, "--home", HOME, "revoke", "adm2"], check=True, capture_output=True)
        try:
            r = await page.goto(f"{ORIGIN}/console/")
            ok = r is None or r.status != 200
        except Exception:  # noqa: BLE001 - a refused handshake is the expected end
            ok = True
        check(ok, "revoking adm2's certificate ends adm2's console at the next request")
        await b.close()


def matrix():
    """role x page x action, table-driven: (status for GETs, status for POSTs)."""
    pages = ["", "certs", "sessions", "audit", "access", "upstreams", "oauth"]
    actions = ["/console/certs/issue", "/console/sessions/00/cut", "/console/access/check",
               "/console/access/apply", "/console/oauth/grants/none/revoke", "/console/certs/00/revoke"]
    expect = {"adm": (200, None), "aud": (200, 403), "vic": (403, 403)}
    host = ORIGIN.split("//", 1)[1]
    for name, (get_status, post_status) in expect.items():
        with httpx2.Client(verify=ctx_for(name), timeout=30) as http:
            for p in pages:
                r = http.get(f"{ORIGIN}/console/{p}", headers={"Host": host})
                check(r.status_code == get_status, f"matrix: {name} GET /console/{p} -> {r.status_code}")
            for a in actions:
                r = http.post(f"{ORIGIN}{a}", data={"csrf": "forged"}, headers={"Origin": ORIGIN})
                want = post_status or 403  # the admin without a real token is refused too
                check(r.status_code == want, f"matrix: {name} POST {a} (forged token) -> {r.status_code}")
    # The admin with a token made for another action, and without Origin.
    with httpx2.Client(verify=ctx_for("adm"), timeout=30) as http:
        page = http.get(f"{ORIGIN}/console/certs").text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = http.post(f"{ORIGIN}/console/access/apply", data={"csrf": token, "policy": ""}, headers={"Origin": ORIGIN})
        check(r.status_code == 403, "a token made for another action is refused")
        r = http.post(f"{ORIGIN}/console/certs/issue", data={"csrf": token, "name": "x1", "role": "viewer", "ttl": "1h"})
        check(r.status_code == 403, "a POST without Origin is refused")
        r = http.post(f"{ORIGIN}/console/certs/issue", data={"csrf": token, "name": "x1", "role": "viewer", "ttl": "1h"},
                      headers={"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"})
        check(r.status_code == 403, "Sec-Fetch-Site: cross-site is refused")
        r = http.post(f"{ORIGIN}/console/certs/issue", data={"csrf": token, "name": "x1", "role": "viewer", "ttl": "1h"},
                      headers={"Origin": ORIGIN})
        check(r.status_code == 200 and "Bundle password" in r.text, "the same POST with its token and Origin issues")
        h = http.get(f"{ORIGIN}/console/").headers
        check("frame-ancestors 'none'" in h.get("content-security-policy", "") and h.get("x-frame-options") == "DENY"
              and h.get("referrer-policy") == "no-referrer", "CSP frame-ancestors 'none', X-Frame-Options DENY, no referrer")


if __name__ == "__main__":
    matrix()
    asyncio.run(main())
