"""The supervisor's run directory, RUN_DIR/NAME/: state.json, the control socket, snapshots.

The directory is created root-owned and 0755 (0700 would hide status from non-root callers); it is
trusted only if nobody else can write it or any directory above it, because state.json names the
processes root will signal. Every file here is written and read through safefs (no symlink is
followed, writes are atomic), so a reader sees the old or the new content, never half of one.
"""

from __future__ import annotations

import os

from supervisor import jsontext
from supervisor.errors import SvctlError
from supervisor.unix import safefs

STATE = "state.json"
SOCKET = "control.sock"
PRIVATE = "private.json"  # 0600: what only root may see (a rejected check's reason)
# what state.json says instead of a rejected check's reason when the config is not world-readable
HIDDEN_REASON = "the check's reason is not shown to everyone: the config is not world-readable"
IDENT = "supervisor.id"  # "PID START_TICKS BOOT_ID EXE": who the supervisor is, readable without json


def service_dir(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name)


def ensure(run_dir: str, name: str) -> str:
    """Create RUN_DIR/NAME (root-owned, 0755) if needed; refuse it unless root alone controls it."""
    path = service_dir(run_dir, name)
    try:
        with safefs.locate(os.path.join(path, STATE), create_dirs=True) as place:
            if place.owner is not None:
                raise safefs.UnsafePath(f"{place.controlled_from} belongs to uid {place.owner}; "
                                        f"fix: chown root {place.controlled_from}")
            problem = safefs.judge_directory(os.fstat(place.fd), path)[0] != "trusted"
    except OSError as exc:
        raise SvctlError(f"refusing the run directory {path}: {exc}") from None
    if problem:
        raise SvctlError(f"refusing the run directory {path}: it belongs to another user; fix: chown root {path}")
    return path


def write_state(directory: str, state: dict) -> None:
    """Atomic: readers see the old or the new state, never half of one. Raises OSError."""
    safefs.write_trusted(os.path.join(directory, STATE), jsontext.dumps(state, compact=True).encode(), 0o644,
                         durable=False)


def write_private(directory: str, data: dict) -> None:
    safefs.write_trusted(os.path.join(directory, PRIVATE), jsontext.dumps(data).encode(), 0o600, durable=False)


def read_private(directory: str) -> dict:
    """private.json's content for root; {} for anyone else or when it is missing or unusable."""
    if os.geteuid() != 0:
        return {}
    try:
        data = jsontext.loads(safefs.read_trusted(os.path.join(directory, PRIVATE), "private state") or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_state(directory: str) -> tuple[dict | None, str | None]:
    """(state, None), (None, None) when there is none, or (None, reason) when it can't be trusted."""
    try:
        raw = safefs.read_trusted(os.path.join(directory, STATE), "state file")
    except OSError as exc:
        return None, str(exc) if isinstance(exc, safefs.UnsafePath) else f"cannot read {directory}/{STATE}: {exc.strerror}"
    if raw is None:
        return None, None
    try:
        state = jsontext.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested thousands deep
        return None, f"{directory}/{STATE} is not valid JSON"
    return (state, None) if isinstance(state, dict) else (None, f"{directory}/{STATE} is not an object")


def write_ident(directory: str, line: str) -> int:
    """Write the identity file; returns its inode, so that only this file is removed at exit."""
    path = os.path.join(directory, IDENT)
    fd = safefs.write_trusted(path, line.encode() + b"\n", 0o644, prepare=lambda _fd: None, durable=False)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def read_ident(directory: str) -> list[str] | None:
    """The supervisor's identity fields, if the file exists and can be trusted."""
    try:
        raw = safefs.read_trusted(os.path.join(directory, IDENT), "identity file", 4096)
    except OSError:
        return None
    if raw is None:
        return None
    fields = raw.decode("utf-8", "replace").split(" ", 3)
    return fields if len(fields) == 4 else None


def link_socket(directory: str, target: str) -> int:
    """DIRECTORY/control.sock as a symlink to TARGET (`svctl up`'s one socket, in the run directory
    too: root's alone); returns the link's inode, so that only this link is removed at exit."""
    with safefs.locate(os.path.join(directory, SOCKET)) as place:
        if place.owner is not None:
            raise safefs.UnsafePath(f"{place.controlled_from} belongs to uid {place.owner}")
        try:
            os.unlink(place.name, dir_fd=place.fd)  # a dead supervisor's socket, or an older link
        except FileNotFoundError:
            pass
        os.symlink(target, place.name, dir_fd=place.fd)
        return os.stat(place.name, dir_fd=place.fd, follow_symlinks=False).st_ino


def remove_path(path: str, inode: int | None) -> None:
    remove_own(os.path.dirname(path), os.path.basename(path), inode)


def remove_own(directory: str, entry: str, inode: int | None) -> None:
    """Remove DIRECTORY/ENTRY only if it is still the file we created (inode INODE)."""
    if inode is None:
        return
    try:
        safefs.unlink_trusted(os.path.join(directory, entry), only_inode=inode)
    except OSError:
        pass  # leaving a file behind is better than removing another supervisor's


def socket_name(pid: int) -> str:
    """"NAMESPACE-PID.sock", `svctl up`'s one socket in RUN_DIR/.up: PID 1 of one container is not
    PID 1 of another that shares the run directory."""
    from supervisor.unix.identity import pid_namespace

    namespace = "".join(ch for ch in pid_namespace() if ch.isdigit()) or "0"
    return f"{namespace}-{pid}.sock"


def forget_dead_sockets(directory: str) -> None:
    """The sockets of ups of this PID namespace that died (kill -9): nobody else cleans them up.
    Only those whose PID is gone (the directory is root's alone; another namespace's are theirs)."""
    prefix = socket_name(0).removesuffix("0.sock")
    for entry in os.listdir(directory):
        pid = entry.removeprefix(prefix).removesuffix(".sock")
        if entry.startswith(prefix) and entry.endswith(".sock") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            remove_own(directory, entry, os.stat(os.path.join(directory, entry), follow_symlinks=False).st_ino)
