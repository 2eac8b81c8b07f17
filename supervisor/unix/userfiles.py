"""Files in places a non-root user may control: logs, events, a service's watched config.

The one rule (docs/security.md, F2): root works on such a file directly only when root alone
controls every directory on its path (safefs.locate says so); otherwise the operation runs with
the credentials of the user who controls the directory (asuser.run), so nothing that user plants
(a symlink, a hard link, a FIFO, a directory) can make root act on a file the user could not.
Reads for display (`status`'s log tail) stay in-process: safefs.read_bytes never follows a link in
a user's directory and accepts only that user's own single-link regular files.
"""

from __future__ import annotations

import errno
import os

from supervisor.unix import asuser, safefs
from supervisor.unix.safefs import UnsafePath

APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _place(path: str, create_dirs: bool):
    """(Place, None) when root may work here, (None, (uid, gid)) when a user controls it."""
    try:
        place = safefs.locate(path, create_dirs=create_dirs)
    except safefs.UserControlled as exc:
        return None, (exc.owner, exc.group)
    if place.owner is None:
        return place, None
    owner = (place.owner, place.group)
    place.close()
    return None, owner


def open_append(path: str, mode: int = 0o640, tighten: bool = False) -> int:
    """An O_APPEND descriptor for a log file, creating it (and its directories) as needed. With
    TIGHTEN, a file with more permissions than MODE (left from before) is brought down to MODE, by
    whoever opens it (the events file: it may quote secrets)."""
    place, owner = _place(path, create_dirs=True)
    if place is None:  # the helper tightens it itself: root never chmods a descriptor it was handed
        fd, _ = asuser.run(owner[0], owner[1], asuser.op_open_append, path, mode, True, tighten)
        return fd
    with place:
        fd = safefs.open_regular(place, APPEND, mode)
    try:
        if tighten and os.fstat(fd).st_mode & 0o777 & ~mode:
            os.fchmod(fd, mode)  # root's own single-link file in a root-controlled directory
    except OSError:
        pass
    return fd


def read_bytes(path: str, limit: int = 1 << 20) -> bytes | None:
    """Content of a watched file (None if absent), read with the rights of whoever controls it."""
    place, owner = _place(path, create_dirs=False)
    if place is not None:
        with place:
            try:
                fd = safefs.open_regular(place, os.O_RDONLY)
            except FileNotFoundError:
                return None
    else:
        return _read_as(owner, path, limit)
    try:
        return safefs.read_all(fd, limit)
    finally:
        os.close(fd)


def _read_as(owner: tuple[int, int], path: str, limit: int) -> bytes | None:
    fd, _ = asuser.run(owner[0], owner[1], asuser.op_open_read, path)
    if fd is None:
        return None
    try:
        return safefs.read_all(fd, limit)
    finally:
        os.close(fd)


def read_bytes_as(owner: tuple[int, int] | None, path: str, limit: int = 1 << 20) -> bytes | None:
    """Like read_bytes, but always with OWNER's (uid, gid) credentials when OWNER is given: for
    paths that someone else *named* (a service user's config naming a pid file), where who
    controls the named directory says nothing about who may act on it."""
    return read_bytes(path, limit) if owner is None else _read_as(owner, path, limit)


def remove_as(owner: tuple[int, int] | None, path: str) -> bool:
    """Like remove, with OWNER's credentials when OWNER is given (see read_bytes_as)."""
    if owner is None:
        return remove(path)
    _, payload = asuser.run(owner[0], owner[1], asuser.op_unlink, path)
    return payload != b"absent"


def replace(path: str, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Atomically put DATA at PATH (a rollback). As the controlling user, the owner stays theirs."""
    place, owner = _place(path, create_dirs=False)
    if place is not None:
        with place:
            safefs.write_in(place, data, mode, uid if os.geteuid() == 0 else -1, gid if os.geteuid() == 0 else -1)
        return
    asuser.run(owner[0], owner[1], asuser.op_write, path, data, mode)


def remove(path: str) -> bool:
    """Remove PATH's entry (never what a symlink points to); False when it was not there."""
    try:
        place, owner = _place(path, create_dirs=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if place is not None:
        with place:
            try:
                os.unlink(place.name, dir_fd=place.fd)
            except FileNotFoundError:
                return False
            return True
    _, payload = asuser.run(owner[0], owner[1], asuser.op_unlink, path)
    return payload != b"absent"


def rotate(path: str, backups: int) -> str:
    """Shift PATH.1..PATH.(n-1) up by one and PATH to PATH.1; returns problems met ('' if none).

    A step that cannot be done (a directory planted at PATH.2) is skipped and reported: rotation
    must never stop the supervisor. Only renaming PATH itself failing raises OSError.
    """
    place, owner = _place(path, create_dirs=False)
    if place is None:
        _, payload = asuser.run(owner[0], owner[1], asuser.op_rotate, path, backups)
        return payload.decode("utf-8", "replace")
    problems = []
    with place:
        for index in range(backups - 1, 0, -1):
            source = f"{place.name}.{index}"
            try:
                os.rename(source, f"{place.name}.{index + 1}", src_dir_fd=place.fd, dst_dir_fd=place.fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"{path}.{index}: {exc.strerror}")
        os.rename(place.name, f"{place.name}.1", src_dir_fd=place.fd, dst_dir_fd=place.fd)
    return "; ".join(problems)


def describe(exc: OSError) -> str:
    """One line for any OSError from this module (UnsafePath and AsUserError carry their own)."""
    if isinstance(exc, (UnsafePath, asuser.AsUserError)):
        return str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return where + (exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc)))
