// The official MCP TypeScript SDK's OAuth client against `mcp-zt serve --oauth`, with mcp-zt in
// front of an upstream. The SDK discovers the authorization server from the 401, registers
// itself (DCR, a public client), and sends the user agent to the authorization URL; the
// browser's part is played here with Node's https module presenting the holder's client
// certificate on the login name: GET the consent page, POST its form with decision=approve and
// the login origin, follow the 303 to a loopback callback. The SDK then trades the code
// (PKCE S256) for tokens, reconnects, lists tools, calls the upstream's tool and whoami, and
// refreshes its token once.
//
// Usage: node interop_ts_oauth.mjs MCP_URL LOGIN_URL CA CERT KEY HOLDER ROLE UPSTREAM_TOOL
// UPSTREAM_TOOL is the search tool of scripts/gateway/demo_upstream.py as the gateway exposes it
// (docs__search); the role is granted it and not docs__delete_doc.
// The SDK's fetch trusts the private CA through NODE_EXTRA_CA_CERTS (set by the caller).
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const args = process.argv.slice(2);
if (args.length !== 8) {
  console.error("usage: node interop_ts_oauth.mjs MCP_URL LOGIN_URL CA CERT KEY HOLDER ROLE UPSTREAM_TOOL");
  process.exit(2);
}
const [mcpUrl, loginUrl, caFile, certFile, keyFile, holder, role, upstreamTool] = args;
const loginOrigin = new URL(loginUrl).origin;
const issuer = new URL(mcpUrl).origin;
const ca = readFileSync(caFile);

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

// One HTTPS request with Node's https module (the browser's part): ca always, the holder's
// certificate when `withCert`. Redirects are not followed.
function request(method, url, { withCert = false, headers = {}, body } = {}) {
  const opts = { method, headers, ca, agent: false };
  if (withCert) {
    opts.cert = readFileSync(certFile);
    opts.key = readFileSync(keyFile);
  }
  return new Promise((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const unescapeHtml = (s) =>
  s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

// The consent form: its action, hidden inputs and the selected role.
function parseConsent(html) {
  const form = html.match(/<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) return undefined;
  const fields = new URLSearchParams();
  for (const m of form[2].matchAll(/<input\b([^>]*)>/gi)) {
    const attr = (n) => m[1].match(new RegExp(`\\b${n}="([^"]*)"`))?.[1];
    if (attr("type") === "hidden" && attr("name") !== undefined) {
      fields.append(unescapeHtml(attr("name")), unescapeHtml(attr("value") ?? ""));
    }
  }
  const select = form[2].match(/<select name="role">([\s\S]*?)<\/select>/);
  const options = select ? [...select[1].matchAll(/<option value="([^"]*)"( selected)?>/g)] : [];
  return {
    action: unescapeHtml(form[1]),
    fields,
    roles: options.map((o) => unescapeHtml(o[1])),
    selected: options.filter((o) => o[2]).map((o) => unescapeHtml(o[1]))[0],
    approve: /<button[^>]*name="decision"[^>]*value="approve"[^>]*id="approve"/.test(form[2]),
  };
}

// The loopback redirect target of a native client: takes one request, hands its query over.
const callback = await new Promise((resolve) => {
  let deliver;
  const result = new Promise((r) => (deliver = r));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://127.0.0.1");
    if (u.pathname === "/callback") deliver(u.searchParams);
    res.writeHead(200, { "content-type": "text/plain", connection: "close" });
    res.end("done\n");
  });
  server.listen(0, "127.0.0.1", () => resolve({ server, result, port: server.address().port }));
});
const redirectUrl = `http://127.0.0.1:${callback.port}/callback`;

// The SDK's OAuthClientProvider, in memory. It keeps what saveTokens and saveClientInformation
// receive unchanged (the SDK stamps them with the authorization server they belong to).
class MemoryProvider {
  constructor() {
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._discovery = undefined;
    this.lastState = undefined;
    this.redirects = 0;
    this.tokenSaves = 0;
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "mcp-zt interop (TypeScript SDK)",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this.lastState = randomBytes(16).toString("hex");
    return this.lastState;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
    this.tokenSaves += 1;
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    if (!this._verifier) throw new Error("no code verifier saved");
    return this._verifier;
  }
  discoveryState() {
    return this._discovery;
  }
  saveDiscoveryState(state) {
    this._discovery = state;
  }
  invalidateCredentials(scope) {
    console.log(`sdk: invalidateCredentials(${scope})`);
    if (scope === "all" || scope === "client") this._client = undefined;
    if (scope === "all" || scope === "tokens") this._tokens = undefined;
    if (scope === "all" || scope === "verifier") this._verifier = undefined;
    if (scope === "all" || scope === "discovery") this._discovery = undefined;
  }
  // The user agent's part: the holder approves with their certificate.
  async redirectToAuthorization(authorizationUrl) {
    this.redirects += 1;
    check(this.redirects === 1, "the SDK asks for one authorization");
    const q = authorizationUrl.searchParams;
    check(authorizationUrl.origin === loginOrigin, `the authorization endpoint is on the login name (${authorizationUrl.origin})`);
    check(q.get("response_type") === "code", "response_type=code");
    check(q.get("code_challenge_method") === "S256" && /^[A-Za-z0-9_-]{43}$/.test(q.get("code_challenge") ?? ""), "the SDK sends PKCE S256");
    check(q.get("resource") === mcpUrl, `the SDK sends resource = --public-url (${q.get("resource")})`);
    check(q.get("redirect_uri") === redirectUrl, "the SDK sends its loopback redirect_uri");
    check(q.get("client_id") === this._client?.client_id, "the SDK sends the client_id it registered");
    check(q.get("state") === this.lastState, "the SDK sends the provider's state");
    console.log(`sdk: scope asked for: ${JSON.stringify(q.get("scope"))}`);

    // A user agent without the certificate gets the page that says what to do.
    const bare = await request("GET", authorizationUrl.href);
    check(bare.status === 403 && bare.body.includes("client certificate is needed"), `no certificate: ${bare.status}, the page says what to do`);

    const page = await request("GET", authorizationUrl.href, { withCert: true });
    check(page.status === 200, `consent page with the holder's certificate: ${page.status}`);
    check((page.headers["content-security-policy"] ?? "").includes("frame-ancestors 'none'"), "the consent page forbids framing");
    const shownHolder = page.body.match(/<dd id="holder">([^<]*)<\/dd>/)?.[1] ?? "";
    check(shownHolder.includes(holder) && shownHolder.includes(role), `the consent page shows the holder: ${unescapeHtml(shownHolder)}`);
    const shownHost = page.body.match(/<dd id="redirect-host">([^<]*)<\/dd>/)?.[1];
    check(shownHost === `127.0.0.1:${callback.port}`, `the consent page shows the redirect host ${shownHost}`);
    const form = parseConsent(page.body);
    check(form !== undefined && form.approve, "the consent page has the form with the Approve button");
    check(form.selected === role, `the role preselected is the certificate's (${form.selected} of ${form.roles.join(", ")})`);
    const decide = new URL(form.action, loginUrl).href;
    const answer = new URLSearchParams(form.fields);
    answer.append("role", form.selected);
    answer.append("decision", "approve");
    const formHeaders = { "content-type": "application/x-www-form-urlencoded" };

    // The answer from anywhere else than the consent page is refused.
    const forged = await request("POST", decide, {
      withCert: true,
      headers: { ...formHeaders, origin: "https://evil.example" },
      body: answer.toString(),
    });
    check(forged.status === 403, `an answer with another Origin is refused (${forged.status})`);

    const done = await request("POST", decide, {
      withCert: true,
      headers: { ...formHeaders, origin: loginOrigin },
      body: answer.toString(),
    });
    check(done.status === 303, `approve answers ${done.status}`);
    const location = new URL(done.headers.location);
    check(`${location.origin}${location.pathname}` === redirectUrl, "the 303 goes to the redirect_uri");
    check(location.searchParams.get("state") === this.lastState, "the 303 carries the state back");
    check(location.searchParams.get("iss") === issuer, `the 303 carries iss = ${location.searchParams.get("iss")}`);
    check(!!location.searchParams.get("code"), "the 303 carries a code");
    // The browser follows it to the loopback callback.
    await new Promise((resolve, reject) =>
      http.get(location.href, (res) => res.resume().on("end", resolve)).on("error", reject),
    );
  }
}

const provider = new MemoryProvider();
const client = new Client({ name: "mcp-zt-ts-oauth-interop", version: "1.0.0" });
const url = new URL(mcpUrl);

let transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
try {
  await client.connect(transport);
  check(false, "the first connection needs an authorization");
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  console.log(`sdk: first connect: ${e.constructor.name} (expected: the holder has not approved yet)`);
}
const info = provider.clientInformation();
check(!!info?.client_id, `DCR: registered as ${info?.client_id}`);
check(info.token_endpoint_auth_method === "none" && !info.client_secret, "DCR: a public client (token_endpoint_auth_method none, no secret)");
const discovery = provider.discoveryState();
check(discovery?.authorizationServerMetadata?.issuer === issuer, `the SDK found the authorization server ${discovery?.authorizationServerMetadata?.issuer}`);
check(discovery?.resourceMetadata?.resource === mcpUrl, "the protected-resource metadata names --public-url");

const returned = await callback.result;
callback.server.close();
const code = returned.get("code");
check(returned.get("state") === provider.lastState, "the callback carries the state");
await transport.finishAuth(code);
const first = provider.tokens();
check(!!first?.access_token && !!first?.refresh_token, "finishAuth: an access and a refresh token");
check(/^bearer$/i.test(first.token_type ?? ""), `token_type ${first.token_type}`);
console.log(`sdk: token expires_in ${first.expires_in}, scope ${JSON.stringify(first.scope)}`);

// Reconnect as the SDK's example client does: a new transport with the same provider.
transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
await client.connect(transport);
console.log(`sdk: connected to ${client.getServerVersion()?.name} ${client.getServerVersion()?.version}`);

async function useTheToken(label) {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  console.log(`${label}: sees ${names.join(", ")}`);
  check(names.includes(upstreamTool), `${label}: the upstream's ${upstreamTool} is listed`);
  check(names.includes("whoami"), `${label}: whoami is listed`);
  const r = await client.callTool({ name: upstreamTool, arguments: { query: "identity" } });
  const text = r.content?.map((c) => c.text ?? "").join("\n") ?? "";
  console.log(`${label}: ${upstreamTool} -> ${JSON.stringify(text)}`);
  check(!r.isError && text.includes("certificate identity"), `${label}: ${upstreamTool} answered through the gateway`);
  const who = JSON.parse((await client.callTool({ name: "whoami", arguments: {} })).content[0].text);
  console.log(`${label}: whoami -> ${JSON.stringify(who)}`);
  check(who.name === holder && who.role === role, `${label}: the token acts as ${holder} (${role})`);
  return names;
}

const names = await useTheToken("oauth");
check(!names.includes("docs__delete_doc"), "the policy still applies to the token (docs__delete_doc hidden)");
await client.close();

// The raw token at the endpoint, and nothing without it.
const init = JSON.stringify({
  jsonrpc: "2.0", id: 1, method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
});
const mcpHeaders = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const anon = await fetch(mcpUrl, { method: "POST", headers: mcpHeaders, body: init });
check(anon.status === 401 && (anon.headers.get("www-authenticate") ?? "").includes("resource_metadata="), `no token: ${anon.status} with a resource_metadata challenge`);
const bad = await fetch(mcpUrl, { method: "POST", headers: { ...mcpHeaders, authorization: `Bearer ${first.access_token}x` }, body: init });
check(bad.status === 401 && (bad.headers.get("www-authenticate") ?? "").includes('error="invalid_token"'), `an altered token: ${bad.status} invalid_token`);

// A refresh through the SDK (auth() refreshes whenever it holds a refresh token); the new
// access token works, the refresh token was rotated.
const result = await auth(provider, { serverUrl: url });
check(result === "AUTHORIZED", `refresh: ${result}`);
const second = provider.tokens();
check(second.access_token !== first.access_token, "refresh: a new access token");
check(!!second.refresh_token && second.refresh_token !== first.refresh_token, "refresh: the refresh token was rotated");
const client2 = new Client({ name: "mcp-zt-ts-oauth-interop", version: "1.0.0" });
await client2.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
const again = await client2.callTool({ name: upstreamTool, arguments: { query: "identity" } });
check(!again.isError && again.content?.[0]?.text?.includes("certificate identity"), `the refreshed token: ${upstreamTool} answered`);
await client2.close();
// The refresh token the SDK gave up, presented again at once (a hosted client refreshing from
// two nodes): within mcp-zt's reuse grace it gets the same new pair, nothing more.
const reuse = await fetch(`${issuer}/token`, {
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: first.refresh_token, client_id: info.client_id }),
});
const reuseBody = await reuse.json().catch(() => ({}));
check(
  reuse.status === 200 && reuseBody.access_token === second.access_token && reuseBody.refresh_token === second.refresh_token,
  `the rotated-out refresh token, again within the grace: ${reuse.status}, the same new pair`,
);
check(provider.redirects === 1, "one approval for the whole run");
console.log("typescript sdk oauth: ok");
