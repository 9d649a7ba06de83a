"""Pages of another origin for the console's security test: `post.html?target=URL` posts a
form to URL at load (a cross-site request forgery with whatever certificate the browser
holds); `frame.html?target=URL` frames URL. Plain HTTP on 127.0.0.1; the bound port goes to
the file named by the first argument. Standard library only."""

import html
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Pages(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        url = urlparse(self.path)
        target = html.escape(parse_qs(url.query).get("target", [""])[0], quote=True)
        if url.path == "/post.html":
            body = (f'<form id="f" method="post" action="{target}">'
                    '<input name="name" value="mallory"><input name="role" value="admin">'
                    '<input name="ttl" value="1h"><input name="csrf" value="guessed"></form>'
                    '<script>document.getElementById("f").submit()</script>')
        elif url.path == "/frame.html":
            body = f'<iframe src="{target}" width="800" height="600"></iframe>'
        else:
            self.send_error(404)
            return
        data = f"<!doctype html><html><body>{body}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write(str(server.server_address[1]))
os.replace(tmp, sys.argv[1])
server.serve_forever()
