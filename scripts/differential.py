#!/usr/bin/env python3
"""The differential test of mcp-zt's two transports (`serve --transport rmcp|native`).

`record` sends one corpus to one server and writes every answer (status, content type, body);
`compare` takes two recordings and their audit logs and fails on any difference left after
normalising what must differ (session ids, SSE event ids, times, client ports).

The corpus: stateless 2026-07-28 tools/call requests the direct path takes (every built-in
tool, allowed and denied, its rate limit reached, bad arguments, ids of each kind), the calls of
an upstream's tools (up__*: relayed by the native transport, or left to rmcp), the same
with each header the direct path checks changed, hostile bodies (huge, deep, duplicate keys,
wrong types, batch arrays, escapes, not JSON, not UTF-8), the fuzz corpus of jsonrpc_ingress,
a 2025-11-25 session (initialize, list, calls, DELETE), and the official conformance suite's
requests of both revisions as recorded by scripts/record-conformance.sh
(tests/conformance/recorded-requests.json; `{sid:N}` is the Nth session this replay opened).

Usage: differential.py record --port P --home HOME --out FILE [--fuzz DIR] [--recorded FILE]
       differential.py compare A.json B.json A-audit.log B-audit.log
"""
import argparse
import http.client
import json
import os
import re
import ssl
import sys

REV = "2026-07-28"


def meta(extra=None):
    m = {"io.modelcontextprotocol/protocolVersion": REV,
         "io.modelcontextprotocol/clientCapabilities": {}}
    m.update(extra or {})
    return m


def call(tool, args=None, rid=1, extra_meta=None, extra_params=None):
    params = {"name": tool, "_meta": meta(extra_meta)}
    if args is not None:
        params["arguments"] = args
    params.update(extra_params or {})
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


def headers(tool="whoami", **over):
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
         "MCP-Protocol-Version": REV, "Mcp-Method": "tools/call", "Mcp-Name": tool}
    for k, v in over.items():
        k = k.replace("_", "-")
        if v is None:
            h.pop(next((x for x in h if x.lower() == k.lower()), k), None)
        else:
            h = {x: y for x, y in h.items() if x.lower() != k.lower()}
            h[k] = v
    return h


def corpus(fuzz_dir, recorded=None):
    """(name, who, method, headers, body) in order; `{sid}` is the session of the last answer."""
    c = []
    add = lambda name, who, body, h=None, method="POST": c.append((name, who, method, h, body))
    # The direct path's own traffic: every built-in tool, as each role.
    for who in ("alice", "bob", "carol"):
        add(f"{who} whoami", who, call("whoami", {}, 1), headers())
        add(f"{who} whoami no arguments", who, call("whoami", None, 2), headers())
        add(f"{who} write_data", who, call("write_data", {"key": f"k-{who}", "value": "v"}, 3),
            headers("write_data"))
        add(f"{who} read_data", who, call("read_data", {"key": "k-alice"}, 4), headers("read_data"))
        add(f"{who} list_keys", who, call("list_keys", {}, 5), headers("list_keys"))
        add(f"{who} list_certs", who, call("list_certs", {}, 6), headers("list_certs"))
        add(f"{who} missing tool", who, call("no_such_tool", {}, 7), headers("no_such_tool"))
    add("bad argument type", "alice", call("read_data", {"key": 5}, 8), headers("read_data"))
    add("missing argument", "alice", call("read_data", {}, 9), headers("read_data"))
    add("oversized key", "alice", call("read_data", {"key": "k" * 5000}, 10), headers("read_data"))
    add("unicode argument", "alice", call("write_data", {"key": "ключ", "value": "\u00e9\u0000x"}, 11),
        headers("write_data"))
    add("duplicate argument keys", "alice",
        call("read_data", {"key": "x"}, 12).replace('"key": "x"', '"key": "x", "key": "k-alice"'),
        headers("read_data"))
    # The gateway's share: an upstream's tools (up__*), relayed by the native transport.
    for who in ("alice", "bob", "carol"):
        add(f"{who} up__whoami", who, call("up__whoami", {}, 101), headers("up__whoami"))
        add(f"{who} up__write_data", who,
            call("up__write_data", {"key": f"u-{who}", "value": "v"}, 102), headers("up__write_data"))
        add(f"{who} up__read_data", who, call("up__read_data", {"key": "u-alice"}, 103),
            headers("up__read_data"))
        add(f"{who} up__list_certs", who, call("up__list_certs", {}, 104), headers("up__list_certs"))
        add(f"{who} up__ missing tool", who, call("up__nope", {}, 105), headers("up__nope"))
        add(f"{who} up__delete_data hidden or allowed", who,
            call("up__delete_data", {"key": "u-bob"}, 106), headers("up__delete_data"))
    add("up bad argument type", "alice", call("up__read_data", {"key": 5}, 110), headers("up__read_data"))
    add("up missing argument", "alice", call("up__read_data", {}, 111), headers("up__read_data"))
    add("up no arguments", "alice", call("up__whoami", None, 112), headers("up__whoami"))
    add("up arguments as sent", "alice",
        '{"jsonrpc":"2.0","id":113,"method":"tools/call","params":{"name":"up__write_data",'
        '"arguments":  {  "value" : "\\u00e9\\n\\"q\\"" ,"key":"u-raw"  } ,"_meta":'
        + json.dumps(meta()) + "}}", headers("up__write_data"))
    add("up duplicate argument keys", "alice",
        call("up__read_data", {"key": "x"}, 170).replace('"key": "x"', '"key": "x", "key": "u-alice"'),
        headers("up__read_data"))
    add("up lone surrogate in arguments", "alice",
        call("up__write_data", {"key": "u-s", "value": "SURR"}, 171).replace("SURR", "\\ud800"),
        headers("up__write_data"))
    add("up control character in arguments", "alice",
        call("up__write_data", {"key": "u-c", "value": "CTRL"}, 172).replace("CTRL", "a\tb"),
        headers("up__write_data"))
    add("up deep arguments", "alice",
        call("up__whoami", {"d": "DEEP"}, 173).replace('"DEEP"', "[" * 200 + "]" * 200),
        headers("up__whoami"))
    add("up read back", "alice", call("up__read_data", {"key": "u-raw"}, 114), headers("up__read_data"))
    add("up big argument", "alice",
        call("up__write_data", {"key": "u-big", "value": "x" * 200_000}, 115), headers("up__write_data"))
    add("up extra argument", "alice", call("up__whoami", {"extra": [1, {"a": None}]}, 116),
        headers("up__whoami"))
    for rid in ("up-id", -7, 0, 2**53, ""):
        add(f"up id {rid!r}", "alice", call("up__whoami", {}, rid), headers("up__whoami"))
    add("up with a log level (rmcp's)", "alice",
        call("up__whoami", {}, 117, {"io.modelcontextprotocol/logLevel": "debug"}), headers("up__whoami"))
    add("up with a progress token (rmcp's)", "alice",
        call("up__whoami", {}, 118, {"progressToken": "p1"}), headers("up__whoami"))
    add("up with client capabilities", "alice",
        call("up__whoami", {}, 119, {"io.modelcontextprotocol/clientCapabilities":
                                     {"elicitation": {}, "sampling": {}}}), headers("up__whoami"))
    add("up Mcp-Name of another tool", "alice", call("up__whoami", {}, 120), headers("up__read_data"))
    add("up stateless tools/list", "bob",
        json.dumps({"jsonrpc": "2.0", "id": 121, "method": "tools/list", "params": {"_meta": meta()}}),
        headers(mcp_method="tools/list", mcp_name=None))
    # The same upstream through a stdio child (st__*): relayed on its pipes.
    for who in ("alice", "bob", "carol"):
        add(f"{who} st__whoami", who, call("st__whoami", {}, 151), headers("st__whoami"))
        add(f"{who} st__write_data", who,
            call("st__write_data", {"key": f"s-{who}", "value": "w"}, 152), headers("st__write_data"))
        add(f"{who} st__read_data", who, call("st__read_data", {"key": "s-alice"}, 153),
            headers("st__read_data"))
        add(f"{who} st__ hidden", who, call("st__list_certs", {}, 154), headers("st__list_certs"))
    add("st bad argument type", "alice", call("st__read_data", {"key": 5}, 155), headers("st__read_data"))
    add("st arguments as sent", "alice",
        '{"jsonrpc":"2.0","id":156,"method":"tools/call","params":{"name":"st__write_data",'
        '"arguments":{ "key" :"s-raw","value":"\\u2603\\t" },"_meta":' + json.dumps(meta()) + "}}",
        headers("st__write_data"))
    add("st read back", "alice", call("st__read_data", {"key": "s-raw"}, 157), headers("st__read_data"))
    add("st big argument", "alice",
        call("st__write_data", {"key": "s-big", "value": "y" * 60_000}, 158), headers("st__write_data"))
    for rid in ("st-id", -9, 0, ""):
        add(f"st id {rid!r}", "alice", call("st__whoami", {}, rid), headers("st__whoami"))
    add("st with a progress token (rmcp's)", "alice",
        call("st__whoami", {}, 159, {"progressToken": 7}), headers("st__whoami"))
    add("st with client capabilities (rmcp's)", "alice",
        call("st__whoami", {}, 160, {"io.modelcontextprotocol/clientCapabilities": {"roots": {}}}),
        headers("st__whoami"))
    # The upstream's own rate limit on delete_data (10 a minute for the gateway's certificate):
    # its refusals are relayed as it sent them.
    for i in range(12):
        add(f"up delete_data {i}", "alice", call("up__delete_data", {"key": f"none-{i}"}, 130 + i),
            headers("up__delete_data"))
    for rid in ("string-id", -3, 0, 2**53, "", "\u00e9"):
        add(f"id {rid!r}", "alice", call("whoami", {}, rid), headers())
    for i in range(12):
        add(f"delete_data {i} (limit 10/min)", "alice",
            call("delete_data", {"key": f"gone-{i}"}, 100 + i), headers("delete_data"))
    add("revoke_cert of an unknown name", "alice", call("revoke_cert", {"target": "nobody"}, 13),
        headers("revoke_cert"))
    add("client info and log level", "alice",
        call("whoami", {}, 14, {"io.modelcontextprotocol/clientInfo": {"name": "d", "version": "1"},
                                "io.modelcontextprotocol/logLevel": "debug"}), headers())
    # The same call with each header the direct path checks changed.
    w = call("whoami", {}, 20)
    for name, h in [
        ("no Mcp-Method", headers(mcp_method=None)),
        ("Mcp-Method other", headers(mcp_method="tools/list")),
        ("no Mcp-Name", headers(mcp_name=None)),
        ("Mcp-Name other", headers(mcp_name="read_data")),
        ("Mcp-Param header", headers(mcp_param_x="1")),
        ("no protocol header", headers(mcp_protocol_version=None)),
        ("protocol header 2025-11-25", headers(mcp_protocol_version="2025-11-25")),
        ("protocol header garbage", headers(mcp_protocol_version="banana")),
        ("Accept json only", headers(accept="application/json")),
        ("Accept with weights", headers(accept="application/json;q=0.9, text/event-stream")),
        ("Accept q=0 for json", headers(accept="application/json;q=0, text/event-stream")),
        ("Accept */*", headers(accept="*/*")),
        ("Content-Type with charset", headers(content_type="application/json; charset=utf-8")),
        ("Content-Type text", headers(content_type="text/plain")),
        ("Origin foreign", headers(origin="https://evil.example")),
        ("Host foreign", headers(host="evil.example")),
        ("Host with other port", headers(host="localhost:1")),
        ("bogus session id", headers(mcp_session_id="not-a-session")),
        ("Last-Event-ID", headers(last_event_id="1")),
    ]:
        add(name, "alice", w, h)
    add("meta version 2025-11-25", "alice",
        call("whoami", {}, 21, {"io.modelcontextprotocol/protocolVersion": "2025-11-25"}), headers())
    add("meta without capabilities", "alice",
        json.dumps({"jsonrpc": "2.0", "id": 22, "method": "tools/call", "params": {
            "name": "whoami", "_meta": {"io.modelcontextprotocol/protocolVersion": REV}}}), headers())
    add("meta with bad capabilities", "alice",
        call("whoami", {}, 23, {"io.modelcontextprotocol/clientCapabilities": {"elicitation": 5}}),
        headers())
    add("progress token", "alice", call("whoami", {}, 24, {"progressToken": "p1"}), headers())
    add("unknown meta key", "alice", call("whoami", {}, 25, {"x.example/k": 1}), headers())
    add("requestState", "alice", call("whoami", {}, 26, None, {"requestState": "forged"}), headers())
    add("unknown params key", "alice", call("whoami", {}, 27, None, {"extra": 1}), headers())
    # Hostile bodies.
    hostile = [
        ("empty body", ""),
        ("not JSON", "{"),
        ("not UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\xff"}}'),
        ("JSON string", '"tools/call"'),
        ("null", "null"),
        ("deep arguments", call("whoami", None, 30)[:-2] + ', "arguments": {"a": ' + "[" * 3000 + "]" * 3000 + "}}}"),
        ("deep body", "[" * 100000 + "]" * 100000),
        ("duplicate id", call("whoami", {}, 31).replace('"id": 31', '"id": 31, "id": 32')),
        ("duplicate name", call("whoami", {}, 33).replace('"name": "whoami"', '"name": "whoami", "name": "read_data"')),
        ("duplicate method", call("whoami", {}, 34).replace('"method": "tools/call"', '"method": "tools/call", "method": "tools/list"')),
        ("arguments an array", call("whoami", [1, 2], 35)),
        ("arguments a string", call("whoami", "x", 36)),
        ("arguments null", call("whoami", None, 37).replace('"_meta"', '"arguments": null, "_meta"')),
        ("name a number", call("whoami", {}, 38).replace('"name": "whoami"', '"name": 5')),
        ("name with an escape", call("whoami", {}, 39).replace('"name": "whoami"', '"name": "who\\u0061mi"')),
        ("name with a space", call("who ami", {}, 40)),
        ("id an object", call("whoami", {}, 41).replace('"id": 41', '"id": {"a": 1}')),
        ("id a float", call("whoami", {}, 42).replace('"id": 42', '"id": 4.5')),
        ("id null", call("whoami", {}, 43).replace('"id": 43', '"id": null')),
        ("no id (a notification)", call("whoami", {}, 44).replace('"id": 44, ', '')),
        ("jsonrpc 1.0", call("whoami", {}, 45).replace('"2.0"', '"1.0"')),
        ("batch of two", "[" + call("whoami", {}, 46) + "," + call("whoami", {}, 47) + "]"),
        ("empty batch", "[]"),
        ("trailing garbage", call("whoami", {}, 48) + "x"),
        ("leading whitespace", "  \n" + call("whoami", {}, 49)),
        ("huge body", call("whoami", {"pad": "x" * (5 * 1024 * 1024)}, 50)),
    ]
    for name, body in hostile:
        add(name, "alice", body, headers())
    if fuzz_dir and os.path.isdir(fuzz_dir):
        for f in sorted(os.listdir(fuzz_dir)):
            with open(os.path.join(fuzz_dir, f), "rb") as fh:
                add(f"fuzz corpus {f}", "alice", fh.read(), headers())
    # A 2025-11-25 session through rmcp's session handling.
    legacy = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "differential", "version": "1"}}})
    add("session initialize", "bob", init, legacy)
    sess = dict(legacy, **{"MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": "{sid}"})
    add("session call before initialized", "bob", json.dumps({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}), sess)
    add("session initialized", "bob",
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), sess)
    add("session tools/list", "bob", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}), sess)
    add("session whoami", "bob", json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                             "params": {"name": "whoami", "arguments": {}}}), sess)
    for i, (tool, args) in enumerate([("read_data", {"key": "k-alice"}), ("read_data", {"key": 5}),
                                      ("list_keys", {}), ("write_data", {"key": "x", "value": "y"}),
                                      ("no_such_tool", {})]):
        add(f"session {tool} {i}", "bob", json.dumps({"jsonrpc": "2.0", "id": 30 + i, "method": "tools/call",
                                                      "params": {"name": tool, "arguments": args}}), sess)
    add("session call with a progress token", "bob", json.dumps({
        "jsonrpc": "2.0", "id": 40, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}, "_meta": {"progressToken": "p"}}}), sess)
    add("session call with protocol 2025-06-18 header", "bob", json.dumps({
        "jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "whoami"}}),
        dict(sess, **{"MCP-Protocol-Version": "2025-06-18"}))
    add("session call without protocol header", "bob", json.dumps({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "whoami"}}),
        {k: v for k, v in sess.items() if k != "MCP-Protocol-Version"})
    add("session call with Mcp-Method header", "bob", json.dumps({
        "jsonrpc": "2.0", "id": 43, "method": "tools/call", "params": {"name": "whoami"}}),
        dict(sess, **{"Mcp-Method": "tools/list"}))
    add("session batch", "bob", "[" + json.dumps({
        "jsonrpc": "2.0", "id": 44, "method": "tools/call", "params": {"name": "whoami"}}) + "]", sess)
    add("session denied tool", "bob", json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                                  "params": {"name": "delete_data", "arguments": {}}}), sess)
    add("session used by another certificate", "carol",
        json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}), sess)
    add("session DELETE", "bob", "", sess, "DELETE")
    add("GET without session", "alice", "", {"Accept": "text/event-stream"}, "GET")
    add("PUT", "alice", "", {}, "PUT")
    add("stateless tools/list", "bob",
        json.dumps({"jsonrpc": "2.0", "id": 60, "method": "tools/list", "params": {"_meta": meta()}}),
        headers(mcp_method="tools/list", mcp_name=None))
    # The conformance suite's requests, replayed one at a time as the admin.
    if recorded:
        with open(recorded, encoding="utf-8") as f:
            for i, r in enumerate(json.load(f)):
                try:
                    what = json.loads(r["body"]).get("method", "")
                except (ValueError, AttributeError):
                    what = ""
                add(f"conformance {r['tag']} #{i} {r['method']} {what}", "alice", r["body"],
                    r["headers"], r["method"])
    return c


def record(a):
    out, sid, opened = [], "", []
    for name, who, method, hdrs, body in corpus(a.fuzz, a.recorded):
        ctx = ssl.create_default_context(cafile=os.path.join(a.home, "ca.crt"))
        ctx.load_cert_chain(os.path.join(a.home, "clients", f"{who}.crt"),
                            os.path.join(a.home, "clients", f"{who}.key"))
        conn = http.client.HTTPSConnection("localhost", a.port, context=ctx, timeout=30)
        h = {k: re.sub(r"\{sid:(\d+)\}", lambda m: opened[int(m.group(1))] if int(m.group(1)) < len(opened)
                       else "no-such-session", v.replace("{sid}", sid)) for k, v in (hdrs or {}).items()}
        data = body.encode() if isinstance(body, str) else body
        try:
            conn.putrequest(method, "/mcp", skip_host=any(k.lower() == "host" for k in h), skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            r = conn.getresponse()
            raw = r.read()
            got = {"status": r.status, "type": (r.getheader("Content-Type") or "").split(";")[0],
                   "allow": r.getheader("Allow"), "has_session": r.getheader("Mcp-Session-Id") is not None,
                   "body": raw.decode("utf-8", "replace")}
            if r.getheader("Mcp-Session-Id"):
                sid = r.getheader("Mcp-Session-Id")
                got["session"] = sid
                if name.startswith("conformance ") and sid not in opened:
                    opened.append(sid)
        except (OSError, http.client.HTTPException) as e:
            got = {"error": type(e).__name__}
        finally:
            conn.close()
        # In a session, a one-message answer may come as JSON or as a one-event SSE stream
        # (the spec allows either; the native transport sends JSON): compared by message.
        got["in_session"] = any(k.lower() == "mcp-session-id" for k in h)
        out.append({"case": name, **got})
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"recorded {len(out)} cases to {a.out}")


def normal_body(text, session):
    """The body with what must differ between two runs replaced."""
    if session:
        text = text.replace(session, "SESSION")
    # A rate limit's wait is rounded to whole seconds from the moment of the call.
    text = re.sub(r"retry after \d+ s", "retry after N s", text)
    text = re.sub(r'"retry_after_secs": ?\d+', '"retry_after_secs":0', text)
    if text.startswith("{") or text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "data:" in text:  # SSE: the events' data, without ids and retry hints
        return [json.loads(l[5:]) if l[5:].strip().startswith(("{", "[")) else l[5:].strip()
                for l in text.split("\n") if l.startswith("data:")]
    return text


def shape(rec):
    """A recording without what may differ: the session id, and in a session the framing."""
    out = {k: v for k, v in rec.items() if k != "session"}
    out["body"] = normal_body(rec.get("body", ""), rec.get("session") or "")
    if rec.get("in_session") and rec.get("status") == 200:
        body = out["body"]
        msgs = [body] if isinstance(body, dict) else body
        if isinstance(msgs, list):
            # An SSE stream's priming event has no data.
            out["body"] = [m for m in msgs if m != ""]
            out.pop("type", None)
    return out


AUDIT_KEEP = ("event", "name", "role", "serial", "tool", "item", "reason", "upstream", "outcome",
              "count", "via", "client_id")


def audit_events(path):
    evs = []
    for line in open(path, encoding="utf-8"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        # Normalise the order-free parts: times and client ports differ run by run.
        ev = {k: e[k] for k in AUDIT_KEEP if k in e}
        if "reason" in ev:
            ev["reason"] = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", str(ev["reason"]))
            ev["reason"] = re.sub(r"localhost:\d+", "localhost:PORT", ev["reason"])
            ev["reason"] = re.sub(r" in \d+ ms", " in N ms", ev["reason"])
            ev["reason"] = re.sub(r"pid \d+", "pid N", ev["reason"])
            ev["reason"] = re.sub(r"/(rmcp|native)-up\b", "/T-up", ev["reason"])
            ev["reason"] = re.sub(r"retry (after|in) \d+ ?s", r"retry \1 N s", ev["reason"])
        evs.append(ev)
    return evs


def compare(a):
    A, B = (json.load(open(p)) for p in (a.a, a.b))
    problems = 0
    if len(A) != len(B):
        print(f"FAIL: {len(A)} cases against {len(B)}")
        return 1
    for x, y in zip(A, B):
        nx, ny = shape(x), shape(y)
        if nx != ny:
            problems += 1
            print(f"FAIL: {x['case']}:\n  rmcp:   {json.dumps(nx)[:600]}\n  native: {json.dumps(ny)[:600]}")
    ea, eb = audit_events(a.audit_a), audit_events(a.audit_b)
    if ea != eb:
        problems += 1
        for i, (p, q) in enumerate(zip(ea, eb)):
            if p != q:
                print(f"FAIL: audit line {i + 1} differs:\n  rmcp:   {p}\n  native: {q}")
                break
        else:
            print(f"FAIL: {len(ea)} audit lines against {len(eb)}")
    statuses = {}
    for x in A:
        statuses[x.get("status", x.get("error"))] = statuses.get(x.get("status", x.get("error")), 0) + 1
    print(f"{len(A)} cases compared (statuses {dict(sorted(statuses.items(), key=str))}), "
          f"{len(ea)} audit lines compared: {problems} differences")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--home", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--fuzz")
    r.add_argument("--recorded")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("audit_a")
    c.add_argument("audit_b")
    a = ap.parse_args()
    if a.cmd == "record":
        record(a)
        return 0
    return compare(a)


if __name__ == "__main__":
    sys.exit(main())
