"""A client ID metadata document server on loopback (HTTPS), for the OAuth tests.

Usage: cimd_server.py CERT KEY PORTFILE

Serves, at https://localhost:PORT:
  /client.json      a valid document (client_id = its own URL; portless loopback redirect)
  /mismatch.json    a document whose client_id names another URL
  /big.json         10 MB
  /endless.json     a body that never ends
  /redirect.json    a redirect to https://127.0.0.1:PORT/client.json
Writes the bound port to PORTFILE once it listens.
"""

import http.server
import json
import ssl
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "max-age=60")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        base = f"https://localhost:{self.server.server_port}"
        if self.path == "/client.json":
            self.send_json({
                "client_id": f"{base}/client.json",
                "client_name": "mcp-zt interop (CIMD)",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            })
        elif self.path == "/mismatch.json":
            self.send_json({"client_id": f"{base}/other.json",
                            "redirect_uris": ["http://127.0.0.1/callback"]})
        elif self.path == "/big.json":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(160):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif self.path == "/endless.json":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                self.wfile.write(b"1\r\n{\r\n")
                self.wfile.flush()
                for _ in range(60):
                    time.sleep(1)
                    self.wfile.write(b"1\r\n \r\n")
                    self.wfile.flush()
            except OSError:
                pass
        elif self.path == "/redirect.json":
            self.send_response(302)
            self.send_header("location",
                             f"https://127.0.0.1:{self.server.server_port}/client.json")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()


def main(cert, key, portfile):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.server_port))
    import os
    os.replace(portfile + ".tmp", portfile)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
