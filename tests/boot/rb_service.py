#!/usr/bin/python3
"""The test service of the real-boot harness, copied into each booted root (stdlib only).

    rb_service.py --name NAME [--port PORT] [--ignore-term]

It records, as JSON lines in /var/lib/realboot/NAME.jsonl (on the root's disk, so the harness
reads them after the container is gone): its start (pid, ppid, time) and every SIGTERM, SIGINT
and SIGHUP it receives, with the sender's PID from siginfo (sigwaitinfo). That is how the harness
tells a TERM from the service's own svctl supervisor from one sent by sendsigs (killall5) or by
systemd's final kill. With --port it also serves HTTP on [::1]:PORT ("NAME PID"), which svctl's
readiness probe and the harness query. With --ignore-term it survives SIGTERM: only the SIGKILL
of the stop schedule ends it (a SIGKILL can't be recorded; the harness times it from the TERM
record and the supervisor's events file).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORD_DIR = "/var/lib/realboot"
WATCHED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def record(name: str, event: str, **fields) -> None:
    """One line, appended and fsynced: a shutdown right after must not lose it."""
    line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
    fd = os.open(os.path.join(RECORD_DIR, f"{name}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def command_name(pid: int) -> str | None:
    """Who sent it (killall5, systemd-shutdown, the supervisor...), while it still exists."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return None


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


def serve(name: str, port: int) -> V6Server:
    body = f"{name} {os.getpid()}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:
            pass  # readiness probes every few ms would fill the service's log

    server = V6Server(("::1", port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()
    # Blocked before any thread exists, so every thread inherits the mask and sigwaitinfo below
    # is the only place these signals are taken (with their siginfo).
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    server = serve(args.name, args.port) if args.port else None
    record(args.name, "started", pid=os.getpid(), ppid=os.getppid(), port=args.port)
    while True:
        info = signal.sigwaitinfo(WATCHED)
        record(args.name, "signal", signal=signal.Signals(info.si_signo).name,
               sender=info.si_pid, sender_uid=info.si_uid, sender_comm=command_name(info.si_pid))
        if info.si_signo == signal.SIGHUP or args.ignore_term:
            continue
        if server is not None:
            server.shutdown()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
