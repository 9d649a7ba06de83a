"""An OAuth-protected MCP server on loopback: the test upstream for mcp-zt's
per-holder upstream OAuth.

One process is both the authorization server and the resource server, built
on the MCP Python SDK's own authorization-server support (mcp>=2.3,<3):

  issuer        http://127.0.0.1:PORT
  MCP endpoint  http://127.0.0.1:PORT/mcp (streamable HTTP)
  metadata      /.well-known/oauth-protected-resource/mcp (RFC 9728)
                /.well-known/oauth-authorization-server   (RFC 8414)
  OAuth         /authorize, /token, /register (open DCR), /revoke (RFC 7009)
  login page    /login (a form: input `username`, button `login`)

The login page accepts any username made of [a-z0-9-]; the `whoami` tool
returns the username the calling access token was issued to. Tokens are
random opaque strings kept in memory; access tokens live --token-ttl seconds,
refresh tokens rotate on every use, and revoking either token of a grant
revokes both.

Usage:
  oauth_upstream.py --port-file F --auth-log F --revocations-log F
                    [--token-ttl 60] [--insufficient-scope] [--metadata-host HOST]

--auth-log receives one JSON line per HTTP request: {"path", "authorization"}.
--revocations-log receives one JSON line per /revoke: {"token", "hint",
"known", "username"}. --insufficient-scope answers every authenticated
tools/call with 403 insufficient_scope (scope="more:scope"), whatever the
token's scopes, so a client steps up for ever (lists still work). --metadata-host makes the authorization-server metadata name its
endpoints on http://HOST:PORT (the issuer and the listener stay on
127.0.0.1). The bound port is written to --port-file once the server accepts
connections.
"""

import argparse
import asyncio
import html
import json
import os
import re
import secrets
import socket
import time
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.routes import build_metadata, cors_middleware
from mcp.server.auth.settings import (
    AuthSettings,
    ClientRegistrationOptions,
    RevocationOptions,
)
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

SCOPES = ["read", "write", "more:scope"]
DEFAULT_SCOPES = ["read"]
USERNAME = re.compile(r"[a-z0-9-]+")
CODE_TTL = 300
LOGIN_TTL = 600
REFRESH_TTL = 30 * 24 * 3600
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
PRM_PATH = "/.well-known/oauth-protected-resource/mcp"


# Every token belongs to a grant (one login); revoking any token of a grant
# revokes them all. Extra fields are fine: the SDK never renders these models.
class Access(AccessToken):
    grant: str


class Refresh(RefreshToken):
    grant: str


class Provider:
    """In-memory OAuthAuthorizationServerProvider with a username login page."""

    def __init__(self, issuer: str, token_ttl: int, issued_log: str | None = None):
        self.issuer = issuer
        self.token_ttl = token_ttl
        self.issued_log = issued_log
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.logins: dict[str, tuple[float, str, AuthorizationParams]] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, Access] = {}
        self.refresh: dict[str, Refresh] = {}

    # -- clients (open dynamic registration) --

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        client = self.clients.get(client_id)
        # A registered client may ask for any supported scope later (step-up),
        # whatever scope it registered with.
        return client.model_copy(update={"scope": " ".join(SCOPES)}) if client else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    # -- authorization: park the request, show the login page --

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        txn = secrets.token_urlsafe(24)
        assert client.client_id is not None
        self.logins[txn] = (time.time() + LOGIN_TTL, client.client_id, params)
        return f"{self.issuer}/login?txn={txn}"

    def complete_login(self, txn: str, username: str) -> str | None:
        """Issue a code for `username`; return the client redirect, or None."""
        entry = self.logins.pop(txn, None)
        if entry is None or entry[0] < time.time():
            return None
        _, client_id, params = entry
        code = AuthorizationCode(
            code=secrets.token_urlsafe(32),
            scopes=[s for s in (params.scopes or DEFAULT_SCOPES) if s in SCOPES] or DEFAULT_SCOPES,
            expires_at=time.time() + CODE_TTL,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=username,
        )
        self.codes[code.code] = code
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state)

    # -- tokens --

    def _issue(self, client_id: str, scopes: list[str], subject: str, resource: str | None, grant: str) -> OAuthToken:
        now = int(time.time())
        access = Access(
            token=secrets.token_urlsafe(32),
            client_id=client_id,
            scopes=scopes,
            expires_at=now + self.token_ttl,
            resource=resource,
            subject=subject,
            grant=grant,
        )
        refresh = Refresh(
            token=secrets.token_urlsafe(32),
            client_id=client_id,
            scopes=scopes,
            expires_at=now + REFRESH_TTL,
            resource=resource,
            subject=subject,
            grant=grant,
        )
        self.access[access.token] = access
        self.refresh[refresh.token] = refresh
        if self.issued_log:
            # Every token in full, so a test can look for them where they must never be.
            with open(self.issued_log, "a", encoding="utf-8") as f:
                f.write(f"{access.token}\n{refresh.token}\n")
        return OAuthToken(
            access_token=access.token,
            token_type="Bearer",
            expires_in=self.token_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh.token,
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]  # single use
        assert authorization_code.subject is not None
        return self._issue(
            authorization_code.client_id,
            authorization_code.scopes,
            authorization_code.subject,
            authorization_code.resource,
            grant=secrets.token_urlsafe(16),
        )

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> Refresh | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Refresh, scopes: list[str]
    ) -> OAuthToken:
        del self.refresh[refresh_token.token]  # rotation: the old refresh token is spent
        assert refresh_token.subject is not None
        return self._issue(
            refresh_token.client_id, scopes, refresh_token.subject, refresh_token.resource, refresh_token.grant
        )

    async def load_access_token(self, token: str) -> Access | None:
        access = self.access.get(token)
        if access is None or (access.expires_at is not None and access.expires_at <= time.time()):
            return None
        return access

    async def revoke_token(self, token: Access | Refresh) -> None:
        for store in (self.access, self.refresh):
            for key in [k for k, v in store.items() if v.grant == token.grant]:
                del store[key]

    def owner(self, token: str) -> str | None:
        """The username of a live access or refresh token, else None."""
        found = self.access.get(token) or self.refresh.get(token)
        return found.subject if found else None


LOGIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in to the test upstream</h1>{error}
<form method="post" action="/login">
<input type="hidden" name="txn" value="{txn}">
<label>Username <input type="text" name="username" id="username" pattern="[a-z0-9-]+" required autofocus></label>
<button type="submit" id="login">Sign in</button>
</form></body></html>
"""


def build_app(args: argparse.Namespace, port: int) -> Any:
    issuer = f"http://127.0.0.1:{port}"
    provider = Provider(issuer, args.token_ttl, args.issued_log)
    registration = ClientRegistrationOptions(enabled=True, valid_scopes=SCOPES, default_scopes=DEFAULT_SCOPES)
    revocation = RevocationOptions(enabled=True)
    # Strings, not AnyHttpUrl: AuthSettings keeps the issuer free of a trailing slash.
    auth = AuthSettings(
        issuer_url=issuer,  # type: ignore[arg-type]
        resource_server_url=f"{issuer}/mcp",  # type: ignore[arg-type]
        validate_token_resource=False,
        client_registration_options=registration,
        revocation_options=revocation,
    )
    server = MCPServer(name="oauth-upstream", auth_server_provider=provider, auth=auth, log_level="WARNING")

    @server.tool()
    def whoami() -> str:
        """The username the calling access token belongs to."""
        token = get_access_token()
        return token.subject if token and token.subject else ""

    @server.custom_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        if request.method == "GET":
            txn = request.query_params.get("txn", "")
            return HTMLResponse(LOGIN_PAGE.format(txn=html.escape(txn), error=""))
        form = await request.form()
        txn, username = str(form.get("txn", "")), str(form.get("username", "")).strip()
        if not USERNAME.fullmatch(username):
            error = "<p>Username must be [a-z0-9-]+.</p>"
            return HTMLResponse(LOGIN_PAGE.format(txn=html.escape(txn), error=error), status_code=400)
        target = provider.complete_login(txn, username)
        if target is None:
            return HTMLResponse("<p>Unknown or expired login.</p>", status_code=400)
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})

    app = server.streamable_http_app(host="127.0.0.1")

    # The SDK's AS metadata, plus "none": its client authenticator accepts public
    # clients. With --metadata-host (a hostile upstream) the issuer stays but the
    # endpoints point elsewhere on loopback.
    endpoints = AnyHttpUrl(f"http://{args.metadata_host}:{port}") if args.metadata_host else auth.issuer_url
    metadata = build_metadata(endpoints, None, registration, revocation)
    metadata.issuer = auth.issuer_url
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post", "client_secret_basic"]
    metadata.revocation_endpoint_auth_methods_supported = metadata.token_endpoint_auth_methods_supported
    for i, route in enumerate(app.router.routes):
        if getattr(route, "path", None) == AS_METADATA_PATH:
            app.router.routes[i] = Route(
                AS_METADATA_PATH,
                endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            )

    auth_log = open(args.auth_log, "a", encoding="utf-8")
    revocations_log = open(args.revocations_log, "a", encoding="utf-8")
    resource_metadata = f"{issuer}{PRM_PATH}"

    def log(file: Any, record: dict[str, Any]) -> None:
        file.write(json.dumps(record) + "\n")
        file.flush()

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        """Log every Authorization header; log revocations; force step-up."""
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        authorization = headers.get("authorization")
        path = scope["path"]
        log(auth_log, {"path": path, "authorization": authorization})

        if path == "/revoke" and scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            form = parse_qs(body.decode("latin-1"))
            token = form.get("token", [None])[0]
            owner = provider.owner(token) if token else None
            log(
                revocations_log,
                {
                    "token": token,
                    "hint": form.get("token_type_hint", [None])[0],
                    "known": owner is not None,
                    "username": owner,
                },
            )
            if "client_secret" not in form:
                # SDK 2.3 requires the field even from public clients
                # (python-sdk#3508); an empty one still authenticates nobody.
                body += b"&client_secret=" if body else b"client_secret="
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await app(scope, replay, send)

        if args.insufficient_scope and path == "/mcp" and authorization and scope["method"] == "POST":
            # Lists work; every tool call wants a scope the holder's grant lacks (as an
            # upstream refuses one operation), for ever.
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            raw = b"".join(chunks)
            try:
                method = json.loads(raw).get("method")
            except (ValueError, AttributeError):
                method = None
            sent = False

            async def again() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}

            bearer = authorization[7:] if authorization.lower().startswith("bearer ") else ""
            if method != "tools/call" or not bearer or not await provider.load_access_token(bearer):
                return await app(scope, again, send)
            challenge = f'Bearer error="insufficient_scope", scope="more:scope", resource_metadata="{resource_metadata}"'
            response = Response(
                json.dumps({"error": "insufficient_scope", "error_description": "Required scope: more:scope"}),
                status_code=403,
                media_type="application/json",
                headers={"WWW-Authenticate": challenge},
            )
            return await response(scope, again, send)

        await app(scope, receive, send)

    return outer


async def serve(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(args, port), log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            return await task
        await asyncio.sleep(0.05)
    tmp = f"{args.port_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(port))
    os.replace(tmp, args.port_file)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--auth-log", required=True)
    parser.add_argument("--revocations-log", required=True)
    parser.add_argument("--token-ttl", type=int, default=60)
    parser.add_argument("--insufficient-scope", action="store_true")
    parser.add_argument("--metadata-host")
    parser.add_argument("--issued-log", help="append every issued token (tests look for them in mcp-zt's files)")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
