"""The control socket RUN_DIR/NAME/control.sock: one request line, one reply line.

It lets ``svctl stop`` and ``svctl reload`` wait for the real outcome (a signal can't answer).
Requests take the same path through the state machine as SIGTERM and SIGHUP. The client checks
the server's PID (SO_PEERCRED) against the verified supervisor identity before trusting a reply.

Protocol: ``COMMAND NAME\\n`` -> ``CODE MESSAGE\\n``. NAME says which service: `svctl up`
serves many through one socket (each RUN_DIR/NAME/control.sock is a symlink to it); the
per-service daemon also takes a bare ``COMMAND`` and refuses another service's NAME. Plain
text, and the client uses the C-level ``_socket`` module, because ``svctl stop`` is timed
against start-stop-daemon and importing ``json`` and ``socket`` would double its start-up cost.
"""

from __future__ import annotations

import os
import sys

import _socket

# "stop-all": a stop that also takes what the preset keeps on purpose (JupyterHub users' servers)
COMMANDS = ("start", "stop", "stop-all", "reload", "reopen-logs")


class SupervisorGone(ConnectionError):
    """The connection broke after ``stop`` was sent: the supervisor is exiting or has exited.

    Not an answer: the caller should wait for the supervisor's PID to go and then look again
    (the service is stopped, or, if the supervisor was killed instead, running unsupervised).
    """


def listen(path: str):
    import socket

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


def read_request(connection) -> tuple[str, str | None] | None:
    """(command, service name or None) of a request, or None when the peer sent nothing usable."""
    try:
        connection.setblocking(True)
        connection.settimeout(1.0)
        words = connection.recv(256).decode("ascii", "replace").split()
    except OSError:
        return None
    if not 1 <= len(words) <= 2 or words[0] not in COMMANDS:
        return None
    return words[0], words[1] if len(words) == 2 else None


def pending(server) -> list[tuple[object, tuple | None]]:
    """(connection, read_request's answer) of every client still in SERVER's backlog, accepted now: a supervisor
    that exits answers each one, where closing the socket would have reset them."""
    requests = []
    while True:
        try:
            connection, _ = server.accept()
        except OSError:  # BlockingIOError: none left; anything else: none we can take
            return requests
        requests.append((connection, read_request(connection)))


def send_reply(connection, code: int, message: str) -> None:
    try:
        connection.sendall(f"{code} {' '.join(message.split())}\n".encode())
    except OSError:
        pass  # the client gave up waiting; the outcome is in state.json and the events file
    finally:
        connection.close()


def peer_pid(connection) -> int:
    creds = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(creds[:4], sys.byteorder, signed=True)


def request(path: str, command: str, expected_pid: int, timeout: float | None, name: str) -> tuple[int, str]:
    """Send COMMAND for service NAME and wait for the reply. Raises OSError if the supervisor can't be reached,
    SupervisorGone (a ConnectionError) when a ``stop`` lost its connection: see that class."""
    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        client.settimeout(5.0)
        client.connect(path)
        if peer_pid(client) != expected_pid:
            raise ConnectionRefusedError(f"{path} is served by pid {peer_pid(client)}, not {expected_pid}")
        data = b""
        try:
            client.sendall(f"{command} {name}\n".encode())
            client.settimeout(timeout)
            while not data.endswith(b"\n"):
                chunk = client.recv(4096)
                if not chunk:
                    raise ConnectionResetError("the supervisor closed the connection without an answer")
                data += chunk
        except (ConnectionResetError, BrokenPipeError) as exc:
            if command in ("stop", "stop-all"):
                raise SupervisorGone(f"the supervisor (pid {expected_pid}) exited before answering") from exc
            raise
    finally:
        client.close()
    code, _, message = data.decode().strip().partition(" ")
    try:
        return int(code), message
    except ValueError:
        raise ConnectionError(f"unintelligible answer {data[:80]!r}") from None
