"""Process-level system calls Python lacks: process name, child subreaper, pidfds, sd_notify."""

from __future__ import annotations

import os
import signal
import socket

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
_libc = None


def _prctl(option: int, value) -> None:
    global _libc
    import ctypes  # only here: a supervisor that never calls prctl does not pay for ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def set_process_name(name: str) -> None:
    """Set comm (what ps, pidof and start-stop-daemon --name see); the kernel keeps 15 bytes.
    Written to /proc/self/comm (what prctl(PR_SET_NAME) sets, for the main thread), without ctypes."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, name.encode()[:15])
            return
        finally:
            os.close(fd)
    except OSError:
        pass  # no /proc: the system call
    import ctypes

    _prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))


def become_subreaper() -> None:
    """Orphaned descendants of the service are re-parented to us, so we can reap them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def pidfd_open(pid: int) -> int | None:
    """A pidfd for PID, or None if it is gone. Race-free for our own un-reaped children."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def send_signal(pidfd: int | None, pid: int, signum: int) -> bool:
    """Signal through the pidfd when we have one (no PID-reuse race); False if the process is gone."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about READY=1 / RELOADING=1 / STOPPING=1; no-op without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            pass  # systemd went away; nothing useful to do about it


SYS_PIDFD_GETFD = 438  # x86_64 and the generic table alike


def pidfd_getfd(pidfd: int, target_fd: int) -> int | None:
    """Duplicate another process's file descriptor into ours (Linux >= 5.6; needs ptrace rights: root).

    Used on re-adoption to take back the read end of the output pipe that the service keeps open.
    """
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        return None
    os.set_inheritable(fd, False)
    return fd
