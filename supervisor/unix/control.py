"""The control socket RUN_DIR/NAME/control.sock: one JSON request line, one JSON reply line.

It lets ``svctl stop`` and ``svctl reload`` wait for the real outcome (a signal can't answer).
Requests take the same path through the state machine as SIGTERM and SIGHUP. The client checks
the server's PID (SO_PEERCRED) against the verified supervisor identity before trusting a reply.
"""

from __future__ import annotations

import json
import os
import socket
import struct

COMMANDS = ("start", "stop", "reload", "reopen-logs")


def listen(path: str) -> socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    old_umask = os.umask(0o177)  # 0600: only the supervisor's user may control it
    try:
        server.bind(path)
    finally:
        os.umask(old_umask)
    server.listen(64)
    return server


def read_request(connection: socket.socket) -> str | None:
    """The command of a request, or None when the peer sent nothing usable."""
    try:
        connection.setblocking(True)
        connection.settimeout(1.0)
        data = connection.recv(4096)
        command = json.loads(data.decode().strip() or "{}").get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return command if command in COMMANDS else None


def send_reply(connection: socket.socket, code: int, message: str) -> None:
    try:
        connection.sendall((json.dumps({"code": code, "message": message}) + "\n").encode())
    except OSError:
        pass  # the client gave up waiting; the outcome is in state.json and the events file
    finally:
        connection.close()


def peer_pid(connection: socket.socket) -> int:
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def request(path: str, command: str, expected_pid: int, timeout: float | None) -> tuple[int, str]:
    """Send COMMAND and wait for the reply. Raises OSError if the supervisor can't be reached."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as client:
        client.settimeout(5.0)
        client.connect(path)
        if peer_pid(client) != expected_pid:
            raise ConnectionRefusedError(f"{path} is served by pid {peer_pid(client)}, not {expected_pid}")
        client.sendall((json.dumps({"command": command}) + "\n").encode())
        client.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(4096)
            if not chunk:
                raise ConnectionResetError("the supervisor closed the connection without an answer")
            data += chunk
    reply = json.loads(data)
    return int(reply["code"]), str(reply["message"])
