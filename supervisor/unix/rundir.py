"""The supervisor's run directory, RUN_DIR/NAME/: state.json, the control socket, snapshots.

The directory is created root-owned and 0755 (0700 would hide status from non-root callers); it is
trusted only if nobody else can write it, because state.json names the processes root will signal.
"""

from __future__ import annotations

import os

from supervisor.errors import SvctlError
from supervisor.unix.trust import directory_problem, insecure_reason

STATE = "state.json"
SOCKET = "control.sock"
IDENT = "supervisor.id"  # "PID START_TICKS BOOT_ID EXE": who the supervisor is, readable without json


def service_dir(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name)


def ensure(run_dir: str, name: str) -> str:
    path = service_dir(run_dir, name)
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    os.makedirs(path, mode=0o755, exist_ok=True)
    for directory in (run_dir, path):
        problem = directory_problem(directory)
        if problem:
            raise SvctlError(f"refusing the run directory: {problem}")
    return path


def write_state(directory: str, state: dict) -> None:
    """Atomic: readers see the old or the new state, never half of one."""
    final = os.path.join(directory, STATE)
    temporary = f"{final}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        import json

        os.write(fd, json.dumps(state, separators=(",", ":")).encode())
    finally:
        os.close(fd)
    os.rename(temporary, final)


def read_state(directory: str) -> tuple[dict | None, str | None]:
    """(state, None), (None, None) when there is none, or (None, reason) when it can't be trusted."""
    problem = directory_problem(directory)
    if problem:
        if "cannot stat" in problem:
            return None, None
        return None, problem
    try:
        fd = os.open(os.path.join(directory, STATE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {directory}/{STATE}: {exc.strerror}"
    try:
        info = os.fstat(fd)
        problem = insecure_reason(info, "state file", os.path.join(directory, STATE))
        if problem:
            return None, problem
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
    finally:
        os.close(fd)
    import json

    try:
        state = json.loads(raw)
    except ValueError:
        return None, f"{directory}/{STATE} is not valid JSON"
    return (state, None) if isinstance(state, dict) else (None, f"{directory}/{STATE} is not an object")


def write_ident(directory: str, line: str) -> None:
    final = os.path.join(directory, IDENT)
    temporary = f"{final}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)
    os.rename(temporary, final)


def read_ident(directory: str) -> list[str] | None:
    """The supervisor's identity fields, if the file exists and can be trusted."""
    if directory_problem(directory):
        return None
    try:
        fd = os.open(os.path.join(directory, IDENT), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if insecure_reason(os.fstat(fd), "file", directory):
            return None
        fields = os.read(fd, 4096).decode("utf-8", "replace").split(" ", 3)
    finally:
        os.close(fd)
    return fields if len(fields) == 4 else None
