"""The supervisor's lock, and the PID file it exports: one supervisor per service, whatever
happens to the PID file.

The PID file is an interface for other tools (start-stop-daemon, status_of_proc, logrotate,
monit), not the lock: they may delete it (``start-stop-daemon --remove-pidfile``, an operator's
``rm``), and a lock on a deleted file protects nothing. So "is a supervisor running for NAME" is
an ``fcntl.flock`` on ``RUN_DIR/NAME/lock``, a file only root can touch and nobody deletes.
``SupervisorLock.acquire`` takes it *before* the process detaches, so "already running" reaches the
caller; the kernel drops it when the holder dies, so nothing stale ever blocks a start.

The PID file itself only ever appears whole: it is written to a locked temporary file that is
renamed over the path (safefs.write_trusted), never created empty at its real name, so a reader
sees no file, the old PID or the new one. python-daemon's ``DaemonContext(pidfile=...)`` hook
calls ``__enter__`` (write our PID after the fork) and ``__exit__`` (remove the file, if it is
still the one we wrote).

Reading (everyone else): ``read_pidfile`` refuses symlinks, files not owned by root (or by the
caller), group/world-writable files, files in directories others can write, and anything but one
decimal PID > 1. The caller decides what an untrusted file means (``status`` says 4, unknown).
"""

from __future__ import annotations

import fcntl
import os

from supervisor.core.record import Record
from supervisor.errors import Exit, SvctlError
from supervisor.unix import safefs
from supervisor.unix.trust import insecure_reason


class PidfileRead(Record):
    """kind: missing | ok | garbage | insecure | unreadable; pid when ok; reason when not."""

    __slots__ = ("kind", "pid", "reason")
    defaults = {"pid": None, "reason": ""}


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


def lock_held(directory: str, unknown: bool = True) -> bool:
    """Whether a supervisor holds DIRECTORY's lock; UNKNOWN when we can't tell (not root: the lock
    file is root's, 0600). A probe with a shared lock, dropped at once: observe.py tells a
    supervisor that is starting, or a dead container's state, by it."""
    try:
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        return unknown
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return unknown
    finally:
        os.close(fd)  # (closing drops our shared lock at once)
    return False


class AlreadyLocked(Exception):
    pass


LOCK = "lock"  # RUN_DIR/NAME/lock


class SupervisorLock:
    """Held by the one supervisor of a service for its whole life; it also writes the PID file."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path  # the PID file
        self.fd = fd  # the lock (RUN_DIR/NAME/lock)
        self.pid_fd = -1  # the PID file we wrote last: removed at exit only if it is still that file

    @classmethod
    def acquire(cls, directory: str, pidfile: str) -> SupervisorLock:
        """Lock DIRECTORY/lock (the run directory); AlreadyLocked if a live supervisor holds it.

        Also refuses a PID file in a directory root does not alone control: it names the process
        root signals on `stop`.
        """
        try:
            with safefs.locate(pidfile) as place:
                if place.owner is not None:
                    raise safefs.UnsafePath(f"directory {place.controlled_from} belongs to uid {place.owner}; "
                                            f"fix: chown root {place.controlled_from}")
            with safefs.locate(os.path.join(directory, LOCK)) as place:
                if place.owner is not None:
                    raise safefs.UnsafePath(f"run directory {directory} belongs to uid {place.owner}")
                fd = safefs.open_regular(place, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SvctlError(f"refusing to start a supervisor: {exc}", Exit.FAILED) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyLocked(directory) from None
        return cls(pidfile, fd)

    def write(self, pid: int) -> None:
        """Atomically replace the PID file's content with PID (a locked temporary file renamed into
        place, for tools that test the PID file with flock)."""
        fd = safefs.write_trusted(self.path, f"{pid}\n".encode(), 0o644,
                                  prepare=lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
        old, self.pid_fd = self.pid_fd, fd
        if old >= 0:
            os.close(old)

    def remove(self) -> None:
        """Unlink the PID file if it is still the one we wrote, then drop the lock."""
        if self.pid_fd >= 0:
            try:
                safefs.unlink_trusted(self.path, only_inode=os.fstat(self.pid_fd).st_ino)
            except OSError:
                pass
        self.release()

    def release(self) -> None:
        """Close our descriptors (after a fork: the daemon's copies keep the lock)."""
        for fd in (self.pid_fd, self.fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.pid_fd = -1

    # python-daemon's pidfile protocol
    def __enter__(self) -> SupervisorLock:
        self.write(os.getpid())
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()
