#!/usr/bin/env python3
"""authserver.py: a small HTTP/1.1 server for akget's credential tests. It
records, for every request, the path and the Authorization and Cookie
headers it carried (one JSON line each, in LOG), and answers:

  /basic/N         401 unless "Authorization: Basic" is user:password as
                   given by --want, else 200 with N bytes
  /open/N          200 with N bytes, whoever asks
  /to?url=URL      302 to URL (percent-encoded in the query)

Usage: authserver.py --port-file FILE --log LOG [--want USER:PASS]
                     [--max-seconds S]
The port the kernel picked is written to FILE once the server listens.
"""
import argparse
import base64
import json
import socketserver
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer


def body(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self):
        with self.server.lock:
            with open(self.server.log, "a") as f:
                f.write(json.dumps({
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "cookie": self.headers.get("Cookie"),
                    "host": self.headers.get("Host"),
                }) + "\n")

    def send(self, status, data, extra=()):
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.record()
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        if parts[0] == "basic" and len(parts) == 2:
            want = "Basic " + base64.b64encode(self.server.want.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send(401, b"no\n", [("WWW-Authenticate", 'Basic realm="t"')])
                return
            self.send(200, body(int(parts[1])))
        elif parts[0] == "open" and len(parts) == 2:
            self.send(200, body(int(parts[1])))
        elif parts[0] == "to":
            to = urllib.parse.parse_qs(u.query)["url"][0]
            self.send(302, b"", [("Location", to)])
        else:
            self.send(404, b"not found\n")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--want", default="user:secret")
    ap.add_argument("--max-seconds", type=float, default=300)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.log, srv.want, srv.lock = a.log, a.want, threading.Lock()
    open(a.log, "w").close()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)
    # Bounded life: a test that dies never leaves this server behind long.
    threading.Timer(a.max_seconds, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
