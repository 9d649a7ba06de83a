"""The gateway checks of interop-gateway.sh, with the official MCP Python SDK.

Usage:
  interop_python_gateway.py stdio-server                 a stdio MCP server: tool whoami_env
  interop_python_gateway.py http-server PORT             a streamable HTTP server: fast, slow
  interop_python_gateway.py ref URL HOME NAME            (A) a viewer in front of the reference server
  interop_python_gateway.py every URL HOME NAME1 NAME2   (B) stdio upstream, progress, sampling
  interop_python_gateway.py pid URL HOME MCP_ZT A B      (C) per-identity children, revocation
  interop_python_gateway.py flaky URL HOME NAME PORT PIDFILE   (D) an HTTP upstream killed

HOME is the CA home; client NAME uses HOME/clients/NAME.crt and .key. Every check raises
SystemExit with a message on failure.
"""

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

try:
    from mcp import types
except ImportError:  # pragma: no cover
    import mcp_types as types


def fail(msg: str) -> None:
    raise SystemExit(f"FAIL: {msg}")


@contextlib.asynccontextmanager
async def connect(url: str, home: str, name: str, **kwargs):
    ctx = ssl.create_default_context(cafile=f"{home}/ca.crt")
    ctx.load_cert_chain(f"{home}/clients/{name}.crt", f"{home}/clients/{name}.key")
    async with httpx2.AsyncClient(verify=ctx, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, **kwargs) as session:
                await session.initialize()
                yield session


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def error_of(coro, name: str):
    """(code, message with `name` replaced) of the JSON-RPC error coro must raise."""
    try:
        got = await coro
    except MCPError as exc:
        return exc.code, exc.message.replace(name, "<NAME>")
    fail(f"{name}: expected a JSON-RPC error, got {got}")


def audit(home: str) -> list[dict]:
    with open(f"{home}/audit.log") as f:
        return [json.loads(line) for line in f if line.strip()]


def audit_has(home: str, event: str, name: str, item: str) -> dict:
    # The audit writer reaches the disk within about 90 ms of an event (it gathers for 10 ms,
    # syncs within 80): look again for up to 2 s before calling a line missing.
    deadline = time.monotonic() + 2
    while True:
        for rec in audit(home):
            if rec.get("event") == event and name in json.dumps(rec) and item in json.dumps(rec):
                return rec
        if time.monotonic() > deadline:
            fail(f"audit.log has no {event} line naming {name} and {item}")
        time.sleep(0.05)


# ---------------------------------------------------------------- upstream servers


def stdio_server() -> None:
    try:
        from mcp.server.mcpserver import MCPServer as Server
    except ImportError:  # pragma: no cover
        from mcp.server.fastmcp import FastMCP as Server
    server = Server("pid")

    @server.tool()
    def whoami_env() -> str:
        """The caller's name as the gateway passed it, and this process's pid."""
        return json.dumps({"name": os.environ.get("MCP_ZT_NAME"), "role": os.environ.get("MCP_ZT_ROLE"),
                           "pid": os.getpid()})

    server.run()


def http_server(port: int) -> None:
    try:
        from mcp.server.mcpserver import MCPServer as Server
    except ImportError:  # pragma: no cover
        from mcp.server.fastmcp import FastMCP as Server
    server = Server("flaky")

    @server.tool()
    def fast() -> str:
        """Answers at once."""
        return "fast ok"

    @server.tool()
    async def slow() -> str:
        """Answers after 30 s."""
        await asyncio.sleep(30)
        return "slow ok"

    server.run("streamable-http", host="127.0.0.1", port=port)


# ---------------------------------------------------------------- (A)


async def step_ref(url: str, home: str, name: str) -> None:
    async with connect(url, home, name) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        want = {"whoami", "read_data", "list_keys", "test_simple_text"}
        print(f"A: viewer tools/list: {sorted(tools)}")
        if tools != want:
            fail(f"viewer tools/list: expected {sorted(want)}, got {sorted(tools)}")
        res = [str(r.uri) for r in (await s.list_resources()).resources]
        print(f"A: viewer resources/list: {res}")
        if res != ["test://static-text"]:
            fail(f"viewer resources/list: expected ['test://static-text'], got {res}")
        prompts = [p.name for p in (await s.list_prompts()).prompts]
        print(f"A: viewer prompts/list: {prompts}")
        if prompts:
            fail(f"viewer prompts/list: expected none, got {prompts}")
        ok = await s.call_tool("test_simple_text", {})
        if ok.is_error:
            fail(f"test_simple_text: {ok}")
        for kind, hidden, missing, call in [
            ("tools/call", "test_image_content", "no_such_tool_zz", lambda n: s.call_tool(n, {})),
            ("resources/read", "test://static-binary", "test://nope", lambda n: s.read_resource(n)),
            ("prompts/get", "test_simple_prompt", "nope", lambda n: s.get_prompt(n)),
        ]:
            h = await error_of(call(hidden), hidden)
            m = await error_of(call(missing), missing)
            print(f"A: {kind} {hidden} -> {h}; {missing} -> {m}")
            if h != m:
                fail(f"{kind}: hidden {hidden} answers {h}, missing {missing} answers {m}")
    for event, item in [("tool_denied", "test_image_content"), ("resource_denied", "test://static-binary"),
                        ("prompt_denied", "test_simple_prompt")]:
        rec = audit_has(home, event, name, item)
        print(f"A: audit: {json.dumps(rec)}")


# ---------------------------------------------------------------- (B)


async def step_every(url: str, home: str, name1: str, name2: str) -> None:
    answer = "SAMPLED-ANSWER-4242"
    sampled: list = []
    other: list = []

    async def sampling1(context, params):
        sampled.append(params)
        return types.CreateMessageResult(role="assistant", model="interop-test",
                                         content=types.TextContent(type="text", text=answer))

    async def sampling2(context, params):
        other.append(("sampling", params))
        return types.CreateMessageResult(role="assistant", model="wrong-client",
                                         content=types.TextContent(type="text", text="WRONG CLIENT"))

    async def handler2(message):
        method = getattr(getattr(message, "root", message), "method", None)
        if method and "progress" in method:
            other.append(("notification", message))

    async with connect(url, home, name2, sampling_callback=sampling2, message_handler=handler2) as s2, \
            connect(url, home, name1, sampling_callback=sampling1) as s1:
        tools = [t.name for t in (await s1.list_tools()).tools]
        every = sorted(t for t in tools if t.startswith("every__"))
        print(f"B: {len(every)} every__ tools: {every}")
        for need in ["every__echo", "every__trigger-long-running-operation"]:
            if need not in tools:
                fail(f"{need} not in tools/list: {tools}")
        echo = await s1.call_tool("every__echo", {"message": "hello gateway"})
        print(f"B: every__echo -> {text_of(echo)!r}")
        if echo.is_error or "hello gateway" not in text_of(echo):
            fail(f"every__echo: {echo}")
        progress: list = []

        async def on_progress(p, total, message):
            progress.append((p, total))

        long = await s1.call_tool("every__trigger-long-running-operation", {"duration": 1, "steps": 3},
                                  progress_callback=on_progress)
        print(f"B: long-running operation -> {text_of(long)!r}; progress {progress}")
        if long.is_error or not progress:
            fail(f"no progress notification reached the caller (result {long})")
        sampling_tool = "every__trigger-sampling-request"
        if sampling_tool not in tools:
            fail(f"{sampling_tool} not in tools/list (server-everything registers it only when the client "
                 f"declares sampling: the gateway did not pass the capability on): {every}")
        res = await s1.call_tool(sampling_tool, {"prompt": "say something", "maxTokens": 20})
        print(f"B: {sampling_tool} -> {text_of(res)[:120]!r}...; sampling requests seen: {len(sampled)}")
        if res.is_error or answer not in text_of(res) or len(sampled) != 1:
            fail(f"the sampling answer is not in the tool result: {res}")
        await asyncio.sleep(0.5)
        await s2.send_ping()
        if other:
            fail(f"the second client received what was not its own: {other}")
        print("B: the second client received no sampling request and no progress notification")


# ---------------------------------------------------------------- (C)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone as far as serving goes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


async def step_pid(url: str, home: str, mcp_zt: str, alice: str, bob: str) -> None:
    async def who(s):
        r = await s.call_tool("pid__whoami_env", {})
        if r.is_error:
            fail(f"pid__whoami_env: {r}")
        return json.loads(text_of(r))

    bob_pid: asyncio.Future = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def bob_session():
        # Its own task: the revocation cuts this connection, whatever the SDK makes of that.
        try:
            async with connect(url, home, bob) as sb:
                bob_pid.set_result(await who(sb))
                await release.wait()
        except BaseException as exc:  # noqa: BLE001
            if not bob_pid.done():
                bob_pid.set_exception(exc)

    async with connect(url, home, alice) as sa:
        bob_task = asyncio.ensure_future(bob_session())
        a, b = await who(sa), await bob_pid
        print(f"C: {alice} -> {a}; {bob} -> {b}")
        if a["name"] != alice or b["name"] != bob:
            fail(f"each child must see its caller's name: {a}, {b}")
        if a["pid"] == b["pid"]:
            fail(f"{alice} and {bob} share one child (pid {a['pid']})")
        if (await who(sa))["pid"] != a["pid"]:
            fail(f"{alice}'s second call went to another child")
        out = subprocess.run([mcp_zt, "--home", home, "revoke", bob], capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"mcp-zt revoke {bob}: {out.stdout}{out.stderr}")
        t0 = time.monotonic()
        while alive(b["pid"]) and time.monotonic() - t0 < 1.0:
            time.sleep(0.05)
        took = time.monotonic() - t0
        if alive(b["pid"]):
            fail(f"{bob}'s child {b['pid']} still runs 1 s after revoke")
        print(f"C: revoke {bob}: its child {b['pid']} gone after {took * 1000:.0f} ms")
        release.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(bob_task, 5)
        a2 = await who(sa)
        print(f"C: {alice} after the revocation -> {a2}")
        if a2["pid"] != a["pid"] or a2["name"] != alice:
            fail(f"{alice}'s child changed: {a} then {a2}")


# ---------------------------------------------------------------- (D)


async def step_flaky(url: str, home: str, name: str, port: str, pidfile: str) -> None:
    changed: list[float] = []

    async def handler(message):
        method = getattr(getattr(message, "root", message), "method", None)
        if method == "notifications/tools/list_changed":
            changed.append(time.monotonic())

    async with connect(url, home, name, message_handler=handler) as s:
        tools = [t.name for t in (await s.list_tools()).tools]
        print(f"D: tools/list has flaky__fast: {'flaky__fast' in tools}")
        if "flaky__fast" not in tools or "flaky__slow" not in tools:
            fail(f"flaky__fast/flaky__slow not in tools/list: {tools}")
        t0 = time.monotonic()
        call = asyncio.ensure_future(s.call_tool("flaky__slow", {}))
        await asyncio.sleep(1)
        if call.done():
            fail(f"flaky__slow ended before the upstream was killed: {call.result()}")
        pid = int(open(pidfile).read())
        os.kill(pid, 9)
        tk = time.monotonic()
        print(f"D: kill -9 {pid} (the upstream) 1 s into flaky__slow")
        try:
            res = await asyncio.wait_for(call, 15)
            outcome = f"isError={res.is_error} {text_of(res)[:100]!r}"
            ok = res.is_error
        except MCPError as exc:
            outcome, ok = f"JSON-RPC error {exc.code} {exc.message!r}", True
        except asyncio.TimeoutError:
            outcome, ok = "no answer within 15 s", False
        took = time.monotonic() - tk
        print(f"D: flaky__slow ended {took:.1f} s after the kill ({time.monotonic() - t0:.1f} s after the call): {outcome}")
        if not ok:
            fail(f"flaky__slow must end with an error after the upstream died: {outcome}")
        if took > 10:
            fail(f"flaky__slow took {took:.1f} s after the kill to fail (limit 10 s)")
        # The same port again.
        log = open(pidfile + ".log", "a")
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "http-server", port],
                                stdout=log, stderr=log, start_new_session=True)
        with open(pidfile, "w") as f:
            f.write(str(proc.pid))
        tr = time.monotonic()
        print(f"D: upstream restarted on port {port} (pid {proc.pid})")
        seen = 0
        while True:
            fresh = [t for t in changed if t >= tr]
            if len(fresh) > seen:
                seen = len(fresh)
                tools = [t.name for t in (await s.list_tools()).tools]
                if "flaky__fast" in tools:
                    break
            if time.monotonic() - tr > 40:
                fail(f"no notifications/tools/list_changed bringing flaky__fast back within 40 s "
                     f"(list_changed received at {[round(t - t0, 1) for t in changed]} s)")
            await asyncio.sleep(0.1)
        print(f"D: notifications/tools/list_changed {time.monotonic() - tr:.1f} s after the restart; "
              f"flaky__fast listed again")
        res = await s.call_tool("flaky__fast", {})
        print(f"D: flaky__fast -> {text_of(res)!r}")
        if res.is_error or "fast ok" not in text_of(res):
            fail(f"flaky__fast after the restart: {res}")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "stdio-server":
        stdio_server()
    elif cmd == "http-server":
        http_server(int(args[0]))
    elif cmd == "ref":
        asyncio.run(step_ref(*args))
    elif cmd == "every":
        asyncio.run(step_every(*args))
    elif cmd == "pid":
        asyncio.run(step_pid(*args))
    elif cmd == "flaky":
        asyncio.run(step_flaky(*args))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
