"""An MCP server on the official Python SDK 1.x (protocol 2025-11-25, before 2026-07-28):
its tool `haiku` asks the client for a sample (sampling/createMessage) in the middle of the
call and returns what the client answered. Used as an upstream of mcp-zt to show that clients
of both revisions can call it.

Usage: legacy_upstream.py            (stdio)
       legacy_upstream.py http PORT  (streamable HTTP on 127.0.0.1:PORT/mcp)
"""

import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import SamplingMessage, TextContent

app = FastMCP("legacy-upstream", host="127.0.0.1", port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000)


@app.tool()
async def haiku(topic: str, ctx: Context) -> str:
    """Asks the client's model for a haiku about `topic`, mid-call."""
    answer = await ctx.session.create_message(
        messages=[
            SamplingMessage(role="user", content=TextContent(type="text", text=f"A haiku about {topic}"))
        ],
        max_tokens=64,
        # On the response stream of this call (streamable HTTP), so the request is tied to it.
        related_request_id=ctx.request_id,
    )
    text = answer.content.text if answer.content.type == "text" else "?"
    return f"upstream got: {text}"


if __name__ == "__main__":
    app.run("streamable-http" if sys.argv[1:2] == ["http"] else "stdio")
