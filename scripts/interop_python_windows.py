"""The official MCP Python SDK's stdio client launches the Windows build of `mcp-zt connect`
under Wine and uses the Linux server through it; then the certificate is revoked on the server
and the next call through the Windows bridge must fail, naming the revocation.

Usage: interop_python_windows.py WINE EXE CERT KEY CA URL NAME ROLE MCP_ZT HOME BRIDGE_ERR

EXE, CERT, KEY and CA are given as Linux paths and handed to the bridge as Windows paths (Wine
shows the Linux root as drive Z:). MCP_ZT and HOME are the Linux binary and the server's CA home
(for `revoke`). The bridge's stderr, Wine's own messages included, goes to BRIDGE_ERR: it is
shown when something fails and never parsed.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

# What Wine needs from the environment; the SDK passes on only a few variables by default.
WINE_ENV = ("WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES", "WINELOADER")


def windows_path(path: str) -> str:
    """A Linux absolute path as Wine's Z: drive shows it."""
    if not path.startswith("/"):
        raise SystemExit(f"not an absolute path: {path}")
    return "Z:" + path.replace("/", "\\")


async def main(wine, exe, cert, key, ca, url, name, role, mcp_zt, home, bridge_err) -> None:
    params = StdioServerParameters(
        command=wine,
        args=[
            windows_path(exe), "connect",
            "--cert", windows_path(cert),
            "--key", windows_path(key),
            "--ca", windows_path(ca),
            url,
        ],
        env={k: os.environ[k] for k in WINE_ENV if k in os.environ},
    )
    with open(bridge_err, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                # The first launch of Wine in a fresh prefix may still be setting it up.
                await asyncio.wait_for(session.initialize(), 120)
                tools = {t.name for t in (await session.list_tools()).tools}
                print(f"windows bridge: {name} sees {sorted(tools)} through mcp-zt.exe connect")
                if "whoami" not in tools:
                    raise SystemExit("whoami missing from the tool list")
                answer = await session.call_tool("whoami", {})
                if answer.is_error:
                    raise SystemExit(f"whoami failed: {answer}")
                who = json.loads(answer.content[0].text)
                print(f"windows bridge: whoami -> {who['name']} ({who['role']})")
                if who["name"] != name or who["role"] != role:
                    raise SystemExit(f"unexpected identity {who}, wanted {name} ({role})")

                # Revoked on the (Linux) server while the Windows bridge stays connected.
                subprocess.run(
                    [mcp_zt, "--home", home, "revoke", name, "--reason", "key-compromise"],
                    check=True, capture_output=True,
                )
                start = time.monotonic()
                try:
                    result = await asyncio.wait_for(session.call_tool("whoami", {}), 10)
                except Exception as exc:  # the SDK raises McpError for JSON-RPC errors
                    elapsed = time.monotonic() - start
                    message = str(exc)
                    print(f"windows bridge: after revocation ({elapsed:.2f}s): {message}")
                    if "refused" not in message or "revoked" not in message:
                        raise SystemExit("the error does not say the certificate was refused "
                                         "as revoked")
                else:
                    raise SystemExit(f"call after revocation succeeded: {result}")


if __name__ == "__main__":
    if len(sys.argv) != 12:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
