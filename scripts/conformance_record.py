#!/usr/bin/env python3
"""Records the official conformance suite's requests, for the differential test's corpus.

`proxy` is a recording HTTP proxy on 127.0.0.1: the suite talks to it, it forwards every
request as sent to TARGET (the local endpoint of `mcp-zt connect --listen`) and streams the
answer back, and it appends what it saw to a JSON-lines log (one line per request, written when
the answer has ended). `finish` turns the logs into the committed corpus
(tests/conformance/recorded-requests.json): POST and DELETE requests in the order they
arrived, session ids replaced by `{sid:N}` (the Nth session the recording saw), and left out
what a one-request-at-a-time replay cannot reproduce:

- GET streams (they stay open until the client leaves);
- a client's answers to the server's own requests (sampling, elicitation, roots);
- requests whose answer carried a request of the server (the replay does not answer it, so
  the answer would wait) or took a second or more (a tool that sleeps or waits for a timer).

Usage: conformance_record.py proxy --target URL --port-file F --log LOG --tag REVISION
       conformance_record.py finish --out FILE LOG...
"""
import argparse
import http.client
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

# Headers that belong to this hop or to the client program, not to the MCP request.
DROP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "user-agent",
        "accept-encoding", "accept-language", "sec-fetch-mode"}


def proxy(a):
    target = urllib.parse.urlsplit(a.target)
    lock = threading.Lock()
    seq = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0 towards the suite: every answer ends with the connection, so a stream is
        # relayed as it comes without re-framing it.
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):
            pass

        def relay(self):
            with lock:
                seq[0] += 1
                n = seq[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in DROP}
            started = time.monotonic()
            up = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            status, got, out_headers = 0, bytearray(), {}
            try:
                up.request(self.command, target.path, body=body, headers=headers)
                r = up.getresponse()
                status = r.status
                out_headers = {k: v for k, v in r.getheaders() if k.lower() not in DROP}
                self.send_response(r.status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.end_headers()
                while True:
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    got += chunk
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (OSError, http.client.HTTPException) as e:
                if not status:
                    self.send_error(502, f"recording proxy: {type(e).__name__}")
            finally:
                up.close()
            entry = {"tag": a.tag, "seq": n, "method": self.command, "headers": headers,
                     "body": body.decode("utf-8", "replace"), "status": status,
                     "session": {k.lower(): v for k, v in out_headers.items()}.get("mcp-session-id"),
                     "answer": got.decode("utf-8", "replace"),
                     "elapsed": round(time.monotonic() - started, 3)}
            with lock, open(a.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

        do_GET = do_POST = do_DELETE = relay

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(a.port_file + ".tmp", a.port_file)
    server.serve_forever()


def messages(text):
    """The JSON-RPC messages of a JSON body or of an SSE stream's data lines."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "{[":
        try:
            m = json.loads(text)
        except ValueError:
            return []
        return m if isinstance(m, list) else [m]
    out = []
    for line in text.split("\n"):
        if line.startswith("data:") and line[5:].strip().startswith("{"):
            try:
                out.append(json.loads(line[5:]))
            except ValueError:
                pass
    return out


def finish(a):
    entries = []
    for path in a.logs:
        with open(path, encoding="utf-8") as f:
            entries += [json.loads(line) for line in f if line.strip()]
    # Per log in arrival order, the logs in the order given.
    order = {p: i for i, p in enumerate(dict.fromkeys(e["tag"] for e in entries))}
    entries.sort(key=lambda e: (order[e["tag"]], e["seq"]))
    sessions, corpus, left = {}, [], {"GET": 0, "client answer": 0, "server request": 0, "slow": 0}
    for e in entries:
        if e["session"] and e["session"] not in sessions:
            sessions[e["session"]] = len(sessions)
        if e["method"] == "GET":
            left["GET"] += 1
            continue
        sent = messages(e["body"])
        if sent and all(isinstance(m, dict) and "method" not in m and ("result" in m or "error" in m)
                        for m in sent):
            left["client answer"] += 1
            continue
        if any(isinstance(m, dict) and "method" in m and "id" in m for m in messages(e["answer"])):
            left["server request"] += 1
            continue
        if e["elapsed"] >= 1.0:
            left["slow"] += 1
            continue
        headers = {}
        for k, v in e["headers"].items():
            if k.lower() == "mcp-session-id":
                v = f"{{sid:{sessions.get(v, -1)}}}" if v in sessions else v
            headers[k] = v
        corpus.append({"tag": e["tag"], "method": e["method"], "headers": headers, "body": e["body"]})
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(corpus, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(corpus)} requests kept in {a.out} ({len(sessions)} sessions); left out: {left}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("proxy")
    x.add_argument("--target", required=True)
    x.add_argument("--port-file", required=True)
    x.add_argument("--log", required=True)
    x.add_argument("--tag", required=True)
    f = sub.add_parser("finish")
    f.add_argument("--out", required=True)
    f.add_argument("logs", nargs="+")
    a = p.parse_args()
    return proxy(a) if a.cmd == "proxy" else finish(a)


if __name__ == "__main__":
    sys.exit(main())
