"""Clients of two MCP revisions call one tool of an upstream that speaks only 2025-11-25 and
asks for a sample mid-call, through mcp-zt.

Usage:
  interop_python_translation.py modern BRIDGE_URL    (official Python SDK 2.x, 2026-07-28)
  interop_python_translation.py legacy BRIDGE_URL    (official Python SDK 1.x, 2025-11-25)
  interop_python_translation.py states URL CA DIR    (raw HTTPS with the certificates in DIR)

modern: the first call answers `input_required` with the upstream's sampling request and a
requestState; the retry with the answer gets the tool's result; then the SDK's own driver
does the same in one call_tool. legacy: the SDK receives the classic sampling request on its
session. states: a requestState that is tampered with, replayed by another certificate,
brought back after its certificate was revoked, or after it expired, is refused; an untouched
one is accepted.
"""

import asyncio
import json
import os
import ssl
import sys
import time

ANSWER = "petals on the wire"
# The tool's exposed name (the upstream's prefix may differ).
TOOL = os.environ.get("TOOL", "haiku")


def sampled_text(result) -> str:
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    return " ".join(texts)


async def modern(url: str) -> None:
    from mcp import Client, types

    asked = []

    async def sample(_ctx, params):
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=ANSWER), model="test-model"
        )

    async with Client(url, sampling_callback=sample) as client:
        if client.protocol_version != "2026-07-28":
            raise SystemExit(f"modern: negotiated {client.protocol_version}, not 2026-07-28")
        first = await client.session.call_tool(TOOL, {"topic": "mTLS"}, allow_input_required=True)
        if getattr(first, "result_type", None) != "input_required":
            raise SystemExit(f"modern: expected input_required, got {first!r}")
        requests = first.input_requests or {}
        methods = {k: v.method for k, v in requests.items()}
        if list(methods.values()) != ["sampling/createMessage"] or not first.request_state:
            raise SystemExit(f"modern: unexpected input requests {methods} / state {first.request_state!r}")
        print(f"modern: input_required asks {methods}; requestState {len(first.request_state)} chars")
        key = next(iter(requests))
        answer = {
            "role": "assistant",
            "content": {"type": "text", "text": ANSWER},
            "model": "test-model",
        }
        done = await client.session.call_tool(
            TOOL,
            {"topic": "mTLS"},
            input_responses={key: answer},
            request_state=first.request_state,
            allow_input_required=True,
        )
        text = sampled_text(done)
        if text != f"upstream got: {ANSWER}":
            raise SystemExit(f"modern: retry answered {done!r}")
        print(f"modern: retry -> {text!r}")
        auto = await client.call_tool(TOOL, {"topic": "zero trust"})
        if sampled_text(auto) != f"upstream got: {ANSWER}" or len(asked) != 1:
            raise SystemExit(f"modern: SDK driver answered {auto!r}, callback ran {len(asked)} time(s)")
        print(f"modern: SDK input_required driver -> {sampled_text(auto)!r} (sampling callback ran once)")


async def legacy(url: str) -> None:
    from mcp import ClientSession, types
    from mcp.client.streamable_http import streamablehttp_client

    asked = []

    async def sample(_ctx, params):
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=ANSWER), model="test-model"
        )

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write, sampling_callback=sample) as session:
            init = await session.initialize()
            if init.protocolVersion != "2025-11-25":
                raise SystemExit(f"legacy: negotiated {init.protocolVersion}")
            result = await session.call_tool(TOOL, {"topic": "mTLS"})
            text = sampled_text(result)
            if text != f"upstream got: {ANSWER}" or len(asked) != 1:
                raise SystemExit(f"legacy: got {result!r}; sampling requests seen: {len(asked)}")
            print(f"legacy: classic sampling/createMessage request on the session -> {text!r}")


def context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def call(url: str, ctx: ssl.SSLContext, params: dict) -> dict:
    """One 2026-07-28 tools/call over HTTPS; the JSON-RPC answer (JSON or SSE)."""
    import httpx2

    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "states", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**params, "_meta": meta}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": params["name"],
    }
    with httpx2.Client(verify=ctx, timeout=30) as http:
        r = http.post(url, json=body, headers=headers)
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("id") == 1:
                    return msg
        raise SystemExit(f"no answer in the stream: {r.text[:300]}")
    return r.json()


def states(url: str, ca: str, pki: str) -> None:
    cert = lambda n: context(ca, f"{pki}/clients/{n}.crt", f"{pki}/clients/{n}.key")  # noqa: E731
    alice, bob = cert("alice"), cert("bob")
    first = call(url, alice, {"name": TOOL, "arguments": {"topic": "t"}})["result"]
    assert first["resultType"] == "input_required", first
    state = first["requestState"]
    key = next(iter(first["inputRequests"]))
    answer = {key: {"role": "assistant", "content": {"type": "text", "text": ANSWER}, "model": "m"}}

    def retry(ctx, st):
        return call(url, ctx, {"name": TOOL, "arguments": {"topic": "t"}, "inputResponses": answer, "requestState": st})

    tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    refused = retry(alice, tampered)
    assert "error" in refused, refused
    print(f"states: tampered -> error {refused['error']['code']}: {refused['error']['message']}")
    refused = retry(bob, state)
    assert "error" in refused, refused
    print(f"states: replayed by another certificate -> error {refused['error']['code']}")
    ok = retry(alice, state)
    assert ok.get("result", {}).get("content", [{}])[0].get("text") == f"upstream got: {ANSWER}", ok
    print("states: untouched, by its holder -> the tool's result")
    again = retry(alice, state)
    assert "error" in again, again
    print(f"states: the same one again (already answered) -> error {again['error']['code']}")


def expired(url: str, ca: str, pki: str, wait: str) -> None:
    alice = context(ca, f"{pki}/clients/alice.crt", f"{pki}/clients/alice.key")
    first = call(url, alice, {"name": TOOL, "arguments": {"topic": "t"}})["result"]
    key = next(iter(first["inputRequests"]))
    time.sleep(float(wait))
    late = call(url, alice, {
        "name": TOOL, "arguments": {"topic": "t"},
        "inputResponses": {key: {"role": "assistant", "content": {"type": "text", "text": "x"}, "model": "m"}},
        "requestState": first["requestState"],
    })
    assert "error" in late, late
    print(f"states: after {wait} s (past the TTL) -> error {late['error']['code']}")


def take(url: str, ca: str, pki: str, name: str, out: str) -> None:
    """Gets an input_required for NAME and writes its requestState and answer key to OUT."""
    ctx = context(ca, f"{pki}/clients/{name}.crt", f"{pki}/clients/{name}.key")
    first = call(url, ctx, {"name": TOOL, "arguments": {"topic": "t"}})["result"]
    with open(out, "w") as f:
        json.dump({"state": first["requestState"], "key": next(iter(first["inputRequests"]))}, f)


def replay(url: str, ca: str, pki: str, name: str, saved: str) -> None:
    """NAME brings back a requestState saved by `take` (of a certificate revoked since)."""
    ctx = context(ca, f"{pki}/clients/{name}.crt", f"{pki}/clients/{name}.key")
    s = json.load(open(saved))
    # Revocation cancels the revoked certificate's held call upstream, and the SDK 1.26
    # server drops its whole session when a call waiting on a question is cancelled: mcp-zt
    # reconnects, and until then the tool is not listed. Wait for it (10 s at most).
    for _ in range(40):
        late = call(url, ctx, {
            "name": TOOL, "arguments": {"topic": "t"},
            "inputResponses": {s["key"]: {"role": "assistant", "content": {"type": "text", "text": "x"}, "model": "m"}},
            "requestState": s["state"],
        })
        if late.get("error", {}).get("message") != "tool not found":
            break
        time.sleep(0.25)
    assert "error" in late, late
    print(f"states: a revoked certificate's requestState, brought by {name} -> error {late['error']['code']}")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "modern":
        asyncio.run(modern(*args))
    elif mode == "legacy":
        asyncio.run(legacy(*args))
    elif mode == "states":
        states(*args)
    elif mode == "expired":
        expired(*args)
    elif mode == "take":
        take(*args)
    elif mode == "replay":
        replay(*args)
    else:
        raise SystemExit(__doc__)
