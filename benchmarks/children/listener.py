"""A service with a readiness point: after DELAY seconds it listens on [::1]:PORT.

usage: listener.py DIR PORT [DELAY]
Creates DIR/<pid> at start (like marker.sh), then binds, listens and accepts forever.
"""

import os
import socket
import sys
import time

directory, port = sys.argv[1], int(sys.argv[2])
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
open(os.path.join(directory, str(os.getpid())), "w").close()
if delay:
    time.sleep(delay)
sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("::1", port))
sock.listen(16)
while True:
    conn, _ = sock.accept()
    conn.close()
