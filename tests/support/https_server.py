#!/usr/bin/env python3
"""A bundle server for the update.install tests: HTTPS on a loopback port,
serving one folder, with byte ranges (so that downloads can resume).

    https_server.py --dir D --cert C --key K --log L [--cut-after N]

Prints its port on the first line of standard output, then serves until
killed. Each request is one line in L: `GET /path range=<Range header or ->
status=<code> sent=<bytes>`. With --cut-after N, the first response that
would send more than N bytes closes the connection after N (a link that
breaks mid-download); later ones are whole.
"""

import argparse
import http.server
import os
import re
import socket
import ssl
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cut-after", type=int, default=None)
    args = ap.parse_args()
    lock = threading.Lock()
    state = {"cut": args.cut_after}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def record(self, status, sent):
            with lock, open(args.log, "a") as f:
                f.write(f"GET {self.path} range={self.headers.get('Range') or '-'} status={status} sent={sent}\n")

        def do_GET(self):
            name = os.path.basename(self.path.split("?")[0])
            path = os.path.join(args.dir, name)
            if not name or not os.path.isfile(path):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.record(404, 0)
                return
            size = os.path.getsize(path)
            start, status = 0, 200
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if m:
                start = int(m.group(1))
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.record(416, 0)
                    return
                status = 206
            length = size - start
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            with lock:
                cut = state["cut"]
                if cut is not None and length > cut:
                    state["cut"] = None
                else:
                    cut = None
            sent = 0
            with open(path, "rb") as f:
                f.seek(start)
                while sent < length:
                    want = min(65536, length - sent)
                    if cut is not None:
                        want = min(want, cut - sent)
                        if want <= 0:
                            break
                    chunk = f.read(want)
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        # The client stopped reading (a body larger than it allows).
                        self.close_connection = True
                        break
                    sent += len(chunk)
            self.record(status, sent)
            if cut is not None:
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
