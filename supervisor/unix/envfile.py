"""Read a service's environment file (the format: supervisor/core/envfile.py), as root may.

Read at every start (spawn.py) and checked at every reload (clients.py) and `svctl start`/`check`.
Who reads it decides what it can reveal or be fooled by (docs/security.md):

* A root service (or one running as the supervisor's own user): the file tells root what
  environment to run with (LD_PRELOAD...), so it must pass the service file's own trust checks:
  the file and every directory and symlink on the way owned by root and not group/world-writable
  (trustchain.walk, then file_problem on an fstat of the very fd that is read).
* A service with another `user`, when root alone controls every directory on the path (no
  sticky or group-writable one either: safefs.locate) and the file itself is root's and not
  group/world-writable, read without following a symlink: root reads it directly. The user cannot
  redirect that path, so these are values the admin put there for the service: a root-owned 0600
  /etc/default/NAME holding the service's secrets works, as with systemd's EnvironmentFile=.
* Any other path for a service with another `user`: the file is opened by a child that has
  dropped to that user (asuser.run), so the kernel judges the open with the user's rights. A
  symlink the user points at /etc/shadow fails with "Permission denied" instead of handing the
  user root's secrets through their service's environment. The user's own file is fine: it only
  affects their own service.

Either way one fd is opened, O_NONBLOCK (a FIFO planted there must not hang the supervisor), must
be a regular file, and is read up to MAX_BYTES.
"""

from __future__ import annotations

import errno
import os
import stat

from supervisor.core.envfile import MAX_BYTES, EnvFileError, parse
from supervisor.errors import ConfigError

UTF8_BOM = b"\xef\xbb\xbf"  # editors on Windows write one; it is not part of the first name
SYNTAX_FIX = ("KEY=value lines, values unquoted, '...' or \"...\" "
              "(see environment_file in etc/example.toml)")


class EnvFileUnusable(ConfigError):
    """``environment_file PATH: reason`` (exit 6); the caller may prefix the service file.
    ``fix``: what to do about this kind of problem (`svctl check` shows it), or ""."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


def read(config) -> dict[str, str]:
    """The variables of CONFIG's environment file ({} when it has none, or "-" and it is missing).
    Raises EnvFileUnusable naming the file (and the line, for a syntax error)."""
    path = config.environment_file
    if not path:
        return {}

    def fail(reason: str, fix: str = "") -> EnvFileUnusable:
        if not fix and "; fix: " in reason:  # trustchain's reasons end with their own fix
            fix = reason.rsplit("; fix: ", 1)[1]
        return EnvFileUnusable(f"environment_file {path}: {reason}", fix)

    owner = _other_user(config, fail)
    try:
        raw = _read_as_root(path, fail) if owner is None else _read_root_controlled(path)
        if raw is None and owner is not None:
            raw = _read_as_user(path, owner)
    except EnvFileUnusable:
        raise
    except OSError as exc:
        raise fail(f"cannot read{_as(owner)}: {_reason(exc)}", _unreadable_fix(exc, path, owner)) from None
    if raw is None:
        if config.environment_file_optional:
            return {}
        raise fail('no such file (write "-' + path + '" to allow it to be missing)',
                   f'create {path}, or write environment_file = "-{path}" to allow it to be missing')
    if len(raw) > MAX_BYTES:
        raise fail(f"larger than {MAX_BYTES >> 20} MiB, the most an environment file may be",
                   f"shorten {path} to at most {MAX_BYTES >> 20} MiB")
    raw = raw.removeprefix(UTF8_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise fail(f"line {line}: not UTF-8", f"save {path} as UTF-8") from None
    try:
        return parse(text)
    except EnvFileError as exc:
        raise fail(str(exc), SYNTAX_FIX) from None


def _unreadable_fix(exc: OSError, path: str, owner: tuple[int, int, str] | None) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM) and owner is not None:
        return (f"let {owner[2]} read {path} (chgrp + chmod g+r), or make it root's (chown root, chmod 0600) "
                "in directories only root can write: root then reads it for the service")
    if exc.errno == errno.EINVAL:
        return f"make {path} a regular file"
    return f"check {path} and the directories above it"


def _other_user(config, fail) -> tuple[int, int, str] | None:
    """(uid, gid, name) of the service's user when root runs it as someone else; else None."""
    if not config.user or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(config.user)
    except KeyError:
        raise fail(f"cannot read it as {config.user!r}: no such user") from None
    return None if entry.pw_uid == 0 else (entry.pw_uid, entry.pw_gid, entry.pw_name)


def _read_as_root(path: str, fail) -> bytes | None:
    from supervisor.unix.trustchain import file_problem, walk

    reason, info, _resolved = walk(path)
    if reason:
        raise fail(f"refusing it, root would run with what it says: {reason}")
    if info is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        problem = file_problem(os.fstat(fd), path)  # the fd we read, not a separate stat
        if problem:
            raise fail(f"refusing it, root would run with what it says: {problem}")
        return _read_fd(fd)
    finally:
        os.close(fd)


def _read_root_controlled(path: str) -> bytes | None:
    """The content when root alone controls PATH and the file is root's (see the docstring), read
    by root directly, never through a symlink; None when not so (then it is read as the user)."""
    from supervisor.unix import safefs

    try:
        place = safefs.locate(path)
    except OSError:  # missing, user-controlled or unsafe: the user's own open decides
        return None
    with place:
        if place.owner is not None or place.shared:  # in /tmp, a hard link may be anyone's
            return None
        try:
            fd = safefs.open_regular(place, os.O_RDONLY)
        except OSError:
            return None
    try:
        info = os.fstat(fd)
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        return _read_fd(fd)
    finally:
        os.close(fd)


def _read_as_user(path: str, owner: tuple[int, int, str]) -> bytes | None:
    from supervisor.unix import asuser

    fd, _payload = asuser.run(owner[0], owner[1], op_open_env_file, path)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # the child checked; the fd is what counts
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return _read_fd(fd)
    finally:
        os.close(fd)


def op_open_env_file(path: str) -> tuple[int | None, bytes]:
    """In the child, as the service's user: open PATH the way the user could (symlinks followed
    with the user's rights); only a regular file. (None, b"absent") when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, b"absent"
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file")
    return fd, b""


def _read_fd(fd: int) -> bytes:
    """At most MAX_BYTES + 1 bytes: one more than allowed says "too large" without reading it all."""
    chunks, total = [], 0
    while total <= MAX_BYTES:
        try:
            chunk = os.read(fd, min(65536, MAX_BYTES + 1 - total))
        except BlockingIOError:  # not a regular file after all (checked before): nothing to wait for
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _as(owner: tuple[int, int, str] | None) -> str:
    return f" as {owner[2]}" if owner else ""


def _reason(exc: OSError) -> str:
    from supervisor.unix.asuser import AsUserError

    if isinstance(exc, AsUserError):
        return str(exc)
    return exc.strerror or str(exc)
