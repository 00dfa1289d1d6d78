#!/usr/bin/env python3
"""A tiny API that serves under its browser path ($request_uri mode)."""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8081)
args = parser.parse_args()
BASE = os.environ.get(f"DKU_CODE_STUDIO_BROWSER_PATH_{args.port}", "").rstrip("/")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if not self.path.startswith(BASE + "/"):
            self.send_error(404, "outside the browser path")
            return
        sub = self.path[len(BASE):]
        if sub == "/health":
            body = b"ok"
        else:
            body = json.dumps({"path": sub, "base": BASE, "pod": os.environ.get("K8S_POD_NAME")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()
