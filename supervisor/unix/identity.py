"""Who a PID really is: (pid, start time in clock ticks since boot, boot id), read from /proc.

A PID alone proves nothing (it is reused); a PID plus the kernel's start time of the process
cannot be reused within one boot, and the boot id guards the rest. The executable is recorded for
display only and never compared: a wrapper that execs its daemon (``sh -c "exec daemon"``) is still
the same process, with the same PID and start time, after the exec. This reads /proc directly rather
than through psutil because ``svctl status`` must answer in a few milliseconds and importing
psutil alone costs about ten (tests/integration/test_identity_and_pidfiles.py checks the two agree).
"""

from __future__ import annotations

import os
import time


class Identity:
    """pid, start time in clock ticks since boot, executable path (display only), boot id.

    A plain slotted class (not a namedtuple or dataclass): `svctl stop` and `status` build these
    and must not pay for importing collections or dataclasses.
    """

    __slots__ = ("pid", "start_ticks", "exe", "boot_id")

    def __init__(self, pid: int, start_ticks: int, exe: str, boot_id: str) -> None:
        self.pid, self.start_ticks, self.exe, self.boot_id = pid, start_ticks, exe, boot_id

    def __eq__(self, other: object) -> bool:
        """The same process: the executable is left out, it changes when the process execs."""
        return isinstance(other, Identity) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> tuple[int, int, str]:
        return self.pid, self.start_ticks, self.boot_id

    def __repr__(self) -> str:
        return f"Identity(pid={self.pid}, start_ticks={self.start_ticks}, exe={self.exe!r}, boot_id={self.boot_id!r})"

    def to_dict(self) -> dict:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "exe": self.exe, "boot_id": self.boot_id}

    @classmethod
    def from_dict(cls, data: object) -> Identity | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(int(data["pid"]), int(data["start_ticks"]), str(data["exe"]), str(data["boot_id"]))
        except (KeyError, TypeError, ValueError):
            return None


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as handle:
        return handle.read().strip()


def read_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state letter, start ticks, process group, session) of a live PID, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19]), int(fields[2]), int(fields[3])


def executable(pid: int) -> str:
    """The path of the program a process runs ('' if unreadable, e.g. a kernel thread or EACCES)."""
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""
    return path.removesuffix(" (deleted)")


def identify(pid: int, allow_init: bool = False) -> Identity | None:
    """The identity of a live, non-zombie process; None if PID <= 1, gone or a zombie.
    ALLOW_INIT: PID 1 too, for a supervisor's own identity (`svctl up` as a container's init):
    nothing ever signals a supervisor on the word of its identity, the control socket's peer
    check is what it is for."""
    if pid < 1 or (pid == 1 and not allow_init):
        return None
    stat = read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return Identity(pid, stat[1], executable(pid), boot_id())


def verify(recorded: Identity | None, allow_init: bool = False) -> bool:
    """True when the process recorded earlier is still alive (same PID, start time and boot).

    The executable is not compared: exec changes it (a wrapper becoming its daemon) but not the
    process, and the start time already rules out PID reuse. PID 1 only with ALLOW_INIT (see
    identify): a supervisor's, never a service's, which is what gets signalled.
    """
    if recorded is None or recorded.pid < 1 or (recorded.pid == 1 and not allow_init):
        return False
    stat = read_stat(recorded.pid)  # not identify(): no need to read the executable we ignore
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return stat[1] == recorded.start_ticks and boot_id() == recorded.boot_id


def pid_namespace() -> str:
    """Which PID namespace we are in ("pid:[4026531836]"): PIDs recorded in another mean other
    processes here ('' when unreadable)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def seconds_since_start(start_ticks: int) -> float:
    """How long ago a process with this start time (field 22 of /proc/PID/stat) started.

    The kernel counts start times in clock ticks since boot, suspend included, so the reference is
    CLOCK_BOOTTIME (CLOCK_MONOTONIC stops during suspend); never negative (tick rounding).
    """
    started = start_ticks / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)


def monotonic_start(recorded: Identity | None) -> float | None:
    """When the process started, on time.monotonic()'s clock (the machine's ``now``); None for None.

    Its real age (suspend included) is subtracted from now, so an uptime computed from the result
    counts the time the process has really been up, not the time since we adopted it.
    """
    if recorded is None:
        return None
    return time.monotonic() - seconds_since_start(recorded.start_ticks)


def process_group_alive(pgid: int | None) -> bool:
    """Is any live (non-zombie) process left in this process group?

    killpg(pgid, 0) answers the common case (nobody left) in one system call; only when it finds
    someone do we scan /proc, because a zombie waiting for another parent (an adopted service whose
    reaper is init) would otherwise count as alive forever.
    """
    if not pgid or pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def wait_for_exit(recorded: Identity, seconds: float) -> None:
    """Until the verified process RECORDED (a per-service supervisor, which answers a stop once
    its service is gone and its PID file removed, then exits) has exited, at most SECONDS. A
    pidfd, taken before the identity is checked again: no polling, and never a reused PID."""
    import select

    try:
        fd = os.pidfd_open(recorded.pid)
    except OSError:
        return  # gone already
    try:
        if verify(recorded, allow_init=True):
            select.select([fd], [], [], seconds)
    finally:
        os.close(fd)
