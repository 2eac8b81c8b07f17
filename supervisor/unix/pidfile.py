"""PID files that can't be fooled: locked while the supervisor lives, written atomically, read warily.

Writing (the supervisor): ``PidfileLock.acquire`` opens the file with O_NOFOLLOW and takes an
``fcntl.flock`` *before* the process detaches, so "already running" reaches the caller; the kernel
drops the lock when the holder dies, so a stale file never blocks a start. The PID is written to a
locked temporary file that is renamed over the path, so readers never see a half-written file and
the lock moves with it. python-daemon's ``DaemonContext(pidfile=...)`` hook calls ``__enter__``
(write our PID after the fork) and ``__exit__`` (remove the file).

Reading (everyone else): ``read_pidfile`` refuses symlinks, files not owned by root (or by the
caller), group/world-writable files, files in directories others can write, and anything but one
decimal PID > 1. The caller decides what an untrusted file means (``status`` says 4, unknown).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections import namedtuple

from supervisor.errors import Exit, SvctlError
from supervisor.unix import safefs
from supervisor.unix.trust import insecure_reason


class PidfileRead(namedtuple("PidfileRead", "kind pid reason", defaults=(None, ""))):
    """kind: missing | ok | garbage | insecure | unreadable; pid when ok; reason when not."""

    __slots__ = ()


def parse_pid(text: bytes) -> int | None:
    """Exactly one decimal PID > 1, optionally followed by a newline."""
    body = text[:-1] if text.endswith(b"\n") else text
    if not body.isdigit() or len(body) > 10:
        return None
    pid = int(body)
    return pid if pid > 1 else None


def read_pidfile(path: str) -> PidfileRead:
    try:
        place = safefs.locate(path)
    except (FileNotFoundError, NotADirectoryError):
        return PidfileRead("missing")
    except safefs.UnsafePath as exc:
        return PidfileRead("insecure", reason=f"PID file {path}: {exc}")
    except OSError as exc:
        return PidfileRead("unreadable", reason=f"cannot read PID file {path}: {exc.strerror}")
    with place:
        if place.owner is not None:
            return PidfileRead("insecure", reason=f"PID file {path} is in {place.controlled_from}, "
                                                  f"which uid {place.owner} controls")
        try:
            fd = safefs.open_regular(place, os.O_RDONLY)
        except FileNotFoundError:
            return PidfileRead("missing")
        except safefs.UnsafePath as exc:
            return PidfileRead("insecure", reason=f"PID file {exc}")
        except OSError as exc:
            return PidfileRead("unreadable", reason=f"cannot read PID file {path}: {exc.strerror}")
    try:
        problem = insecure_reason(os.fstat(fd), "PID file", path)
        if problem:
            return PidfileRead("insecure", reason=problem)
        content = os.read(fd, 64)
    finally:
        os.close(fd)
    pid = parse_pid(content)
    if pid is None:
        return PidfileRead("garbage", reason=f"PID file {path} holds {content[:20]!r}, not a PID")
    return PidfileRead("ok", pid)


class AlreadyLocked(Exception):
    pass


class PidfileLock:
    """The flock-held PID file of a running supervisor."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, path: str) -> PidfileLock:
        """Lock PATH (creating it); AlreadyLocked if a live supervisor holds it."""
        try:
            with safefs.locate(path) as place:
                if place.owner is not None:
                    raise safefs.UnsafePath(f"directory {place.controlled_from} belongs to uid {place.owner}; "
                                            f"fix: chown root {place.controlled_from}")
        except OSError as exc:
            raise SvctlError(f"refusing to use the PID file {path}: {exc}", Exit.FAILED) from None
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
                raise SvctlError(f"cannot open PID file {path}: {reason}", Exit.FAILED) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise AlreadyLocked(path) from None
            # the holder may have renamed a new file over the path between our open and flock
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                problem = insecure_reason(os.fstat(fd), "PID file", path)
                if problem:
                    os.close(fd)
                    raise SvctlError(f"refusing to use the PID file: {problem} (remove it: rm {path})")
                return cls(path, fd)
            os.close(fd)
        raise SvctlError(f"cannot lock PID file {path}: it keeps being replaced", Exit.FAILED)

    def write(self, pid: int) -> None:
        """Atomically replace the file's content with PID; the lock moves to the new inode.

        The temporary file is locked before it is renamed into place, so there is no instant at
        which the PID file exists unlocked.
        """
        fd = safefs.write_trusted(self.path, f"{pid}\n".encode(), 0o644,
                                  prepare=lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
        old, self.fd = self.fd, fd
        os.close(old)

    def remove(self) -> None:
        """Unlink the file if it is still ours, then drop the lock."""
        try:
            safefs.unlink_trusted(self.path, only_inode=os.fstat(self.fd).st_ino)
        except OSError:
            pass
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # python-daemon's pidfile protocol
    def __enter__(self) -> PidfileLock:
        self.write(os.getpid())
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()
