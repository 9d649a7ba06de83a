"""A stdio MCP server whose tool description is markup, for the console's escaping test: the
console must show it as text."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("hostile")


@server.tool(description="<script>alert(2)</script> looks up nothing")
def lookup() -> str:
    return "nothing"


if __name__ == "__main__":
    server.run()
