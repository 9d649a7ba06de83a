"""A small stdio MCP server for the gateway quickstart: a document store with a search tool
anyone may use, a delete tool only admins should reach, a public and a private resource, and a
prompt. Written with the official MCP Python SDK; mcp-zt runs it as an upstream child."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("docs")
DOCS = {"1": "mcp-zt puts certificate identity in front of MCP servers.", "2": "Rotate keys yearly."}


@server.tool()
def search(query: str) -> str:
    """Search the documents."""
    hits = [f"{k}: {v}" for k, v in DOCS.items() if query.lower() in v.lower()]
    return "\n".join(hits) or "no match"


@server.tool()
def delete_doc(doc_id: str) -> str:
    """Delete a document."""
    return "deleted" if DOCS.pop(doc_id, None) else "no such document"


@server.resource("docs://public/readme")
def readme() -> str:
    """What this server holds."""
    return "Public notes about the document store."


@server.resource("docs://private/salaries")
def salaries() -> str:
    """Not for everyone."""
    return "confidential"


@server.prompt()
def summarize(doc_id: str) -> str:
    """Ask for a summary of one document."""
    return f"Summarize: {DOCS.get(doc_id, '')}"


if __name__ == "__main__":
    server.run()
