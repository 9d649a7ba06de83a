"""Drives mcp-zt with the official MCP Python SDK over mutual TLS, or over plain HTTP through
`mcp-zt connect --listen` (then the URL is the bridge's secret URL and CA CERT KEY are "-").

Usage: interop_python_client.py URL CA CERT KEY EXPECT_ROLE

Lists the tools, checks the list matches what the role may see, calls whoami and a tool the
role may not call, and exits non-zero on any mismatch.
"""

import asyncio
import json
import ssl
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

EXPECTED = {
    "viewer": {"whoami", "read_data", "list_keys"},
    "editor": {"whoami", "read_data", "list_keys", "write_data"},
    "admin": {
        "whoami", "read_data", "list_keys", "write_data", "delete_data", "list_certs",
        "revoke_cert",
    },
}


async def main(url: str, ca: str, cert: str, key: str, role: str) -> None:
    if ca == "-":
        # The local bridge: plain HTTP on loopback; the bridge holds the certificate.
        verify = True
    else:
        verify = ssl.create_default_context(cafile=ca)
        verify.load_cert_chain(cert, key)
    async with httpx2.AsyncClient(verify=verify) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                names = {t.name for t in listed.tools}
                print(f"python sdk: {role} sees {sorted(names)}")
                if names != EXPECTED[role]:
                    raise SystemExit(f"expected {sorted(EXPECTED[role])}, got {sorted(names)}")
                who = await session.call_tool("whoami", {})
                text = who.content[0].text
                identity = json.loads(text)
                print(f"python sdk: whoami -> {identity['name']} ({identity['role']})")
                if identity["role"] != role or who.is_error:
                    raise SystemExit(f"whoami returned {text}")
                if role != "admin":
                    try:
                        denied = await session.call_tool("delete_data", {"key": "x"})
                    except Exception as exc:  # the SDK raises on JSON-RPC errors
                        print(f"python sdk: delete_data denied: {exc}")
                    else:
                        raise SystemExit(f"delete_data should be denied, got {denied}")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
