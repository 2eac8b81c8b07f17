"""A tiny HTTP server on [::1] whose answer reflects its JSON config: the reload tests' service.

  confserver.py PORT CONFIG          serve GET / -> config["message"] (exit 1 at start if config["fail"])
  confserver.py --check CONFIG       validate: exit 0 if CONFIG is a JSON object with a string "message"
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
import socket


def load(path):
    with open(path) as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or not isinstance(config.get("message"), str):
        raise ValueError("config needs a string 'message'")
    return config


if sys.argv[1] == "--check":
    try:
        load(sys.argv[2])
    except (OSError, ValueError) as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)

port, path = int(sys.argv[1]), sys.argv[2]
config = load(path)
if config.get("fail"):
    print("refusing to start: fail is set", file=sys.stderr, flush=True)
    sys.exit(1)
body = f"{config['message']} {os.getpid()}".encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True


print(f"serving {config['message']!r} on [::1]:{port}", flush=True)
Server(("::1", port), Handler).serve_forever()
