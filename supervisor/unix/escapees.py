"""Nothing left behind (issue 13 item 7): the service's leftovers are its process group *and* its
escapees, the processes that left the group (``setsid helper &``) and outlived their parent.

The supervisor is a child subreaper (proc.become_subreaper), so every orphaned descendant of the
service becomes the supervisor's own child. Hence escapees = our children that are neither the
service, nor the check process, nor the failure hook. They get the same stop schedule as what is
left of the group, on stop and before every respawn after the service exited (so copies can't
pile up at each crash-restart), and they count in the "group still alive" checks.

Signalling them by PID is safe: they are our children and we are their only reaper, so a PID
can't be reused by anyone else before we have reaped it, and the loop reaps only between scans.

The exception is the jupyterhub preset: users' servers are children of the hub started in their
own session, and they are meant to survive a hub restart (svctl's generated config has
``cleanup_servers = False``). There the escapees are left alone on restarts and on a plain stop;
only ``svctl stop NAME --stop-user-servers`` (control command "stop-all") takes them too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from supervisor.unix.identity import process_group_alive, read_stat


def children_of(pid: int) -> list[int]:
    """The live (non-zombie) children of PID.

    /proc/PID/task/TID/children lists each thread's children; all threads are read, because an
    orphan is re-parented to any live thread of its subreaper. Without that file (a kernel built
    without CONFIG_PROC_CHILDREN) every /proc/N/stat is read for its parent instead.
    """
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found += [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        found = [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and parent_of(int(entry)) == pid]
    except OSError:
        return []
    return [child for child in found if (stat := read_stat(child)) is not None and stat[0] not in ("Z", "X")]


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2:].split()[1])


class Leftovers:
    """The service's process group plus its escapees, as one thing to signal and wait for."""

    def __init__(self, preset: str, not_escapees: Callable[[], Iterable[int | None]]) -> None:
        self.keep_escapees = preset == "jupyterhub"  # users' servers outlive the hub (see above)
        self.take_all = False  # "stop-all": this stop takes the kept ones too
        self.not_escapees = not_escapees  # the service, the check, the hook: PIDs that are no escapee
        # children we had before the service ever ran (a boot script's `cmd & exec svctl ...`) are
        # nobody's leftovers; made before the first spawn
        self.foreign = set(children_of(os.getpid()))
        self.last_signal: int | None = None
        self.signalled: set[int] = set()

    def escapees(self) -> list[int]:
        if self.keep_escapees and not self.take_all:
            return []
        ours = {pid for pid in self.not_escapees() if pid} | self.foreign
        return [pid for pid in children_of(os.getpid()) if pid not in ours]

    def alive(self, pgid: int | None) -> bool:
        """Is anything of the service left? An escapee that appeared after the last signal of this
        stop (re-parented to us when its own parent died) gets that signal now."""
        if process_group_alive(pgid):
            return True
        found = self.escapees()
        if self.last_signal is not None:
            self.send([pid for pid in found if pid not in self.signalled], self.last_signal)
        return bool(found)

    def signal(self, number: int) -> None:
        """Send NUMBER to every escapee (the runtime signals the group itself)."""
        self.last_signal = number
        self.send(self.escapees(), number)

    def send(self, pids: list[int], number: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, number)  # our un-reaped child: the PID can't be someone else's
            except OSError:
                pass
            self.signalled.add(pid)

    def reset(self) -> None:
        """A new stop run begins, or the last one is over: no signal is owed to newcomers."""
        self.last_signal = None
        self.signalled.clear()
