"""File operations done with another user's credentials: a forked child that drops to that user.

Used by ``supervisor.unix.userfiles`` for files in directories a non-root user controls (a
service's log directory, its watched config): there root must not act on a path the user can
redirect, so the user's own rights are what the kernel checks. The child is forked, not exec'd:
the operations are a handful of system calls, and an exec would need an interpreter the user can
run (a venv under /root is not). Before it drops privileges the child

* detaches from the supervisor's signal wake-up pipe and restores default handlers;
* becomes the user for the filesystem (effective uid and gid, the user's groups) but keeps root
  as its real and saved uid, so the user can't signal it: a SIGSTOP would freeze the waiting
  supervisor (under `svctl up`, every service's) for the TIMEOUT, again at every retry;
* marks itself non-dumpable, so the user cannot ptrace it or read its memory, which is a copy of
  root's;
* closes every descriptor but the reply socket.

It answers on a socketpair: one line ``0`` or ``ERRNO message``, plus the opened descriptor where
the operation returns one (SCM_RIGHTS). The parent waits at most TIMEOUT seconds (a helper stuck
on a hung filesystem), then kills and reaps it: a stuck helper costs a bounded wait, never the loop.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import stat

TIMEOUT = 5.0
PR_SET_DUMPABLE = 4


class AsUserError(OSError):
    """The operation failed as the user (the message says what and why, in one line)."""

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


def _groups_of(uid: int, gid: int) -> list[int]:
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return [gid]
    try:
        return os.getgrouplist(entry.pw_name, gid)
    except OSError:
        return [gid]


def run(uid: int, gid: int, operation, *args) -> tuple[int | None, bytes]:
    """Run ``operation(*args)`` in a child as UID/GID; returns (received fd or None, payload).

    OPERATION returns (fd or None, payload bytes) in the child. Raises AsUserError on failure.
    """
    groups = _groups_of(uid, gid)
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            parent_end.close()
            _become(uid, gid, groups, child_end.fileno())
            try:
                fd, payload = operation(*args)
                fds = [fd] if fd is not None else []
                socket.send_fds(child_end, [b"0\n" + payload], fds)
                code = 0
            except OSError as exc:
                text = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc.strerror or exc)
                message = " ".join(f"{text} (as uid {uid})".split())
                child_end.sendall(f"{exc.errno or errno.EIO} {message}\n".encode())
        except BaseException:
            pass
        finally:
            os._exit(code)
    child_end.close()
    try:
        return _collect(pid, parent_end)
    finally:
        parent_end.close()


def _become(uid: int, gid: int, groups: list[int], keep_fd: int) -> None:
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    from supervisor.unix.proc import _prctl

    _prctl(PR_SET_DUMPABLE, 0)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 65536)
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    # real and saved uid stay root's: files are opened with the user's rights (the filesystem uid
    # is the effective one, and a non-root euid has no capabilities), but the user can't signal
    # us (kill() needs the sender's uid to match our real or saved one). A SIGSTOP to this helper
    # would otherwise freeze the supervisor's loop while it waits (under `svctl up`, everyone's)
    os.setresuid(0, uid, 0)
    os.umask(0o022)


def _collect(pid: int, sock: socket.socket) -> tuple[int | None, bytes]:
    """Read the child's whole answer (it closes the socket by exiting), then reap it."""
    import time

    data, fds, deadline, finished = b"", [], time.monotonic() + TIMEOUT, False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                break
            chunk, received, _flags, _addr = socket.recv_fds(sock, 1 << 16, 1)
            fds += received
            if not chunk:
                finished = True
                break
            data += chunk
    except OSError:
        pass
    if not finished:
        try:
            os.kill(pid, signal.SIGKILL)  # still our unreaped child: the PID cannot have been reused
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)
    head, _, payload = data.partition(b"\n")
    if head != b"0" or not finished:
        for fd in fds:
            os.close(fd)
        if not finished:
            raise AsUserError(errno.ETIMEDOUT, f"helper gave no answer within {TIMEOUT:g}s")
        number, _, message = head.decode("utf-8", "replace").partition(" ")
        raise AsUserError(int(number) if number.isdigit() else errno.EIO, message or "helper failed")
    return (fds[0] if fds else None), payload


# ---- operations, run in the child as the user -------------------------------------------------


def _open_regular(path: str, flags: int, mode: int) -> int:
    """The user's own single-link regular file: root will write to or read from this descriptor,
    so a hard link the user made to someone else's file (which they may write: a 0666 file of
    root's) is refused, like safefs.open_regular refuses it in-process."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{path} is not a regular file"
    elif info.st_nlink > 1 or info.st_uid != os.geteuid():  # (our real uid is still root: see _become)
        problem = f"{path} has {info.st_nlink} links or belongs to uid {info.st_uid}; refusing it"
    if problem:
        os.close(fd)
        raise OSError(errno.EPERM, problem)
    os.set_blocking(fd, True)
    return fd


def op_open_append(path: str, mode: int, make_dirs: bool, tighten: bool = False) -> tuple[int, bytes]:
    if make_dirs:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = _open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    if tighten and stat.S_IMODE(os.fstat(fd).st_mode) & ~mode:
        os.fchmod(fd, mode)  # tightened by its owner: root never chmods a file it was handed
    return fd, b""


def op_open_read(path: str) -> tuple[int | None, bytes]:
    try:
        return _open_regular(path, os.O_RDONLY, 0), b""
    except FileNotFoundError:
        return None, b"absent"


def op_write(path: str, data: bytes, mode: int) -> tuple[None, bytes]:
    directory, base = os.path.split(path)
    temporary = os.path.join(directory, f".{base}.svctl-{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    return None, b""


def op_unlink(path: str) -> tuple[None, bytes]:
    try:
        os.unlink(path)  # removes a symlink itself, never its target
    except FileNotFoundError:
        return None, b"absent"
    return None, b""


def op_rotate(path: str, backups: int) -> tuple[None, bytes]:
    """PATH.(n-1) -> PATH.n ... PATH -> PATH.1; a step that fails is skipped and reported."""
    problems = []
    for index in range(backups - 1, 0, -1):
        source = f"{path}.{index}"
        try:
            os.replace(source, f"{path}.{index + 1}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{source}: {exc.strerror}")
    os.replace(path, f"{path}.1")
    return None, "; ".join(problems).encode()
