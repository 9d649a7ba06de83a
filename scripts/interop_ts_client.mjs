// The official MCP TypeScript SDK's streamable HTTP client, pointed at `mcp-zt connect --listen`.
// Usage: node interop_ts_client.mjs URL EXPECTED_NAME
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, expected] = process.argv.slice(2);
if (!url || !expected) {
  console.error("usage: node interop_ts_client.mjs URL EXPECTED_NAME");
  process.exit(2);
}
const client = new Client({ name: "mcp-zt-ts-interop", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
console.log(`typescript sdk: sees ${names.join(", ")}`);
if (!names.includes("whoami")) throw new Error("whoami missing");
const who = await client.callTool({ name: "whoami", arguments: {} });
const identity = JSON.parse(who.content[0].text);
console.log(`typescript sdk: whoami -> ${identity.name} (${identity.role})`);
if (identity.name !== expected) throw new Error(`unexpected identity ${JSON.stringify(identity)}`);
await client.close();
