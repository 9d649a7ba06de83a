// Baseline for scripts/bench.sh: the official MCP TypeScript SDK on node:https, requiring client
// certificates from the same CA, with one trivial tool. Sessions for clients that initialize,
// stateless JSON replies for single requests without a session.
// Usage: node ts_server.mjs CERT KEY CA PORT   (PORT 0: a free one, printed)
import fs from "node:fs";
import https from "node:https";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const [certFile, keyFile, caFile, port] = process.argv.slice(2);
const sessions = new Map();
// Say why the baseline died, if it does, rather than leaving the load generator a refused port.
process.on("uncaughtException", (e) => console.error("uncaught:", e));
process.on("unhandledRejection", (e) => console.error("unhandled rejection:", e));

function newServer() {
  const server = new McpServer({ name: "ts-baseline", version: "1.0.0" });
  server.tool("whoami", "the caller", async () => ({
    content: [{ type: "text", text: JSON.stringify({ name: "baseline" }) }],
  }));
  return server;
}

const tls = {
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
  ca: fs.readFileSync(caFile),
  requestCert: true,
  rejectUnauthorized: true,
};

const server = https.createServer(tls, async (req, res) => {
  try {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
    const sid = req.headers["mcp-session-id"];
    let transport = sid ? sessions.get(sid) : undefined;
    if (sid && !transport) {
      res.writeHead(404).end("session not found");
      return;
    }
    if (!transport) {
      const initialize = body && body.method === "initialize";
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: initialize ? () => randomUUID() : undefined,
        enableJsonResponse: true,
        onsessioninitialized: (id) => sessions.set(id, transport),
      });
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    // A client that hangs up mid-request must not take the baseline down with it.
    if (res.headersSent) res.destroy();
    else res.writeHead(500).end(String(e));
  }
});
server.on("error", (e) => {
  console.error("server error:", e);
  process.exit(1);
});
// PORT 0 picks a free port; the line says which.
server.listen(Number(port), "127.0.0.1", () =>
  console.log(`listening 127.0.0.1:${server.address().port}`),
);
