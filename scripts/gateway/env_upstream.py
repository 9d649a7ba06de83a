"""A stdio MCP server that tells what it was started with: one tool, `token`, answers the
value of its KV_TOKEN environment variable and the holder mcp-zt started it for. mcp-zt runs
it with share = "per-identity", so each holder's child gets that holder's own secret
(`mcp-zt secret set --env KV_TOKEN`), and no other's."""

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("kv")


@server.tool()
def token() -> str:
    """The KV_TOKEN this child was started with, and for whom."""
    return f"{os.environ.get('MCP_ZT_NAME', '?')}:{os.environ.get('KV_TOKEN', '<none>')}"


if __name__ == "__main__":
    server.run()
