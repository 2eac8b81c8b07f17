"""Who a PID really is: (pid, start time in clock ticks since boot, executable), read from /proc.

A PID alone proves nothing (it is reused); a PID plus the kernel's start time of the process
cannot be reused within one boot, and the boot id guards the rest. This reads /proc directly rather
than through psutil because ``svctl status`` must answer in a few milliseconds and importing
psutil alone costs about ten (tests/integration/test_identity_and_pidfiles.py checks the two agree).
"""

from __future__ import annotations

import os


class Identity:
    """pid, start time in clock ticks since boot, executable path, boot id.

    A plain slotted class (not a namedtuple or dataclass): `svctl stop` and `status` build these
    and must not pay for importing collections or dataclasses.
    """

    __slots__ = ("pid", "start_ticks", "exe", "boot_id")

    def __init__(self, pid: int, start_ticks: int, exe: str, boot_id: str) -> None:
        self.pid, self.start_ticks, self.exe, self.boot_id = pid, start_ticks, exe, boot_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.pid, self.start_ticks, self.exe, self.boot_id))

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


def identify(pid: int) -> Identity | None:
    """The identity of a live, non-zombie process; None if PID <= 1, gone or a zombie."""
    if pid <= 1:
        return None
    stat = read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return Identity(pid, stat[1], executable(pid), boot_id())


def verify(recorded: Identity | None) -> bool:
    """True when the process recorded earlier is still alive (same PID, start time and boot).

    The executable is compared only when readable both times: a non-root caller cannot read root's
    /proc/PID/exe, and the start time already rules out PID reuse.
    """
    if recorded is None or recorded.pid <= 1:
        return False
    current = identify(recorded.pid)
    if current is None or current.start_ticks != recorded.start_ticks or current.boot_id != recorded.boot_id:
        return False
    return not (current.exe and recorded.exe and current.exe != recorded.exe)


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
