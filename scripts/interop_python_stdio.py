"""The official MCP Python SDK's stdio client launches `mcp-zt connect` and uses the server
through it; then the bridge's certificate is revoked and the next call must fail clearly.

Usage: interop_python_stdio.py MCP_ZT HOME NAME URL
"""

import asyncio
import json
import subprocess
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(exe: str, home: str, name: str, url: str) -> None:
    params = StdioServerParameters(
        command=exe, args=["--home", home, "connect", "--name", name, url]
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            print(f"python stdio: {name} sees {sorted(tools)} through mcp-zt connect")
            if "whoami" not in tools:
                raise SystemExit("whoami missing")
            who = json.loads((await session.call_tool("whoami", {})).content[0].text)
            print(f"python stdio: whoami -> {who['name']} ({who['role']})")
            if who["name"] != name:
                raise SystemExit(f"unexpected identity {who}")
            written = await session.call_tool("write_data", {"key": "k", "value": "v"})
            if written.is_error:
                raise SystemExit(f"write_data failed: {written}")
            # Revoke the bridge's certificate from another process, then call again.
            subprocess.run(
                [exe, "--home", home, "revoke", name, "--reason", "key-compromise"],
                check=True, capture_output=True,
            )
            start = time.monotonic()
            try:
                result = await asyncio.wait_for(session.call_tool("whoami", {}), 5)
            except Exception as exc:  # the SDK raises McpError for JSON-RPC errors
                elapsed = time.monotonic() - start
                message = str(exc)
                print(f"python stdio: after revocation ({elapsed:.2f}s): {message}")
                if "revoked" not in message:
                    raise SystemExit("the error does not name the revocation")
                if elapsed > 2:
                    raise SystemExit("the error took longer than 2 s")
            else:
                raise SystemExit(f"call after revocation succeeded: {result}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
