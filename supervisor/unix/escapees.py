"""Nothing left behind (issue 13 item 7): the service's leftovers are its process group *and* its
escapees, the processes that left the group (``setsid helper &``) and outlived their parent.

The supervisor is a child subreaper (proc.become_subreaper), so every orphaned descendant of the
service becomes the supervisor's own child. Hence escapees = our children that are neither the
service, nor the check process, nor the failure hook. They get the same stop schedule as what is
left of the group, on stop and before every respawn after the service exited (so copies can't
pile up at each crash-restart), and they count in the "group still alive" checks.

Signalling them by PID is safe: they are our children and we are their only reaper, so a PID
can't be reused by anyone else before we have reaped it, and the loop reaps only between scans.

What a preset keeps on purpose (supervisor/presets: Preset.keeps_escapee) is kept on restarts and
plain stops. The jupyterhub preset's: users' servers are children of the hub started in their
own session, and they are meant to survive a hub restart (svctl's generated config has
``cleanup_servers = False``). Only what really is a user's server is kept, on restarts and on a
plain stop: a process whose environment holds JUPYTERHUB_USER, which JupyterHub's spawners set for
every single-user server, and no JUPYTERHUB_SERVICE_NAME, which marks the hub's managed services
(idle-culler...: the hub starts a new copy at each start, so they must go with it). A hook or a
check is never kept: hooks get a minimal environment, and a check's TMPDIR is its svctl-check-
scratch directory. The hub's own setsid helpers, what a crash left behind, anything else: the
schedule, like any service.
``svctl stop NAME --stop-user-servers`` (control command "stop-all") takes the servers too.

For a service with a non-root ``user``, only escapees whose real uid is that user's are its
escapees: a descendant that became root through a setuid program (su, sudo, a setuid helper) is
not the service user's to kill, and signalling it as root would let the service user have root
kill (and so disrupt) a root process. A root service's escapees are all of them.

Under ``svctl up`` one process supervises many services, so every service's escapees become its
children: Leftovers' ``belongs`` tells this service's from the others' (the per-service daemon has
no need: all its children are its service's). in_service attributes an escapee to a service by
what the kernel says first, its session: still one of the sessions the service was started in (a
``setsid``-less ``&``, a double fork), and a session ID is no other process's PID while any member
of it lives. Else by its environment as exec'd: ``SVCTL_SERVICE=NAME``, which every service gets
and its descendants inherit (a ``setsid helper &``). That one is the process's own word, so the
uid rule above still applies to it. An escapee that both cleared its environment and left the
session is claimed by no service: it is only reaped, and gets up's final sweep (TERM, 5 s, KILL)
at exit.

A stop schedule's signal is followed by SIGCONT (as systemd does after KillSignal=): a stopped
process (SIGSTOP, Ctrl-Z) would otherwise never see the TERM and wait for the KILL at the
schedule's end. A reload signal is not (ev.Signal.cont): a service the admin froze stays frozen.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from supervisor.unix.identity import process_group_alive, read_stat


def children_of(pid: int, excluding: set[int] | frozenset = frozenset(), check_state: bool = True) -> list[int]:
    """The live (non-zombie) children of PID, but for those in EXCLUDING (left out before their
    state is read: under `svctl up` most children are known services, and each exit looks).

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
    if not check_state:  # the caller reads each one's stat itself
        return [child for child in found if child not in excluding]
    return [child for child in found if child not in excluding
            and (stat := read_stat(child)) is not None and stat[0] not in ("Z", "X")]


def sessions_of_children(excluding: set[int]) -> set[int]:
    """The sessions of our live children but for those in EXCLUDING (known services, checks and
    hooks: each leads a session of its own): one /proc read each."""
    sessions = set()
    for child in children_of(os.getpid(), excluding, check_state=False):
        stat = read_stat(child)
        if stat is not None and stat[0] not in ("Z", "X"):
            sessions.add(stat[3])
    return sessions


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2:].split()[1])


# signals after which a stopped process must be continued to act on them (the others either act
# on a stopped process anyway, or are themselves stop/continue signals)
NO_CONT_AFTER = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
USER_SERVER_MARK = b"JUPYTERHUB_USER="  # jupyterhub/spawner.py Spawner.get_env, every user's server
# jupyterhub/services/service.py Service.start: the hub's managed services (idle-culler...). They
# get JUPYTERHUB_USER= too (their _ServiceSpawner runs the same get_env), so this decides.
MANAGED_SERVICE_MARK = b"JUPYTERHUB_SERVICE_NAME="
ENVIRON_LIMIT = 2 * 1024 * 1024  # the kernel caps argv + environment at a quarter of the stack: 2 MiB usually


def environment_of(pid: int, limit: int = ENVIRON_LIMIT) -> list[bytes] | None:
    """The NAME=value strings PID was exec'd with, its first LIMIT bytes (as root: our child);
    None when that is not ours to read (another uid's, without CAP_SYS_PTRACE: a container)."""
    try:
        with open(f"/proc/{pid}/environ", "rb", buffering=0) as handle:
            return handle.read(limit).split(b"\0")
    except PermissionError:
        return None
    except OSError:
        return []  # gone


def is_user_server(pid: int) -> bool:
    """A JupyterHub single-user server (or what one left behind): its spawner set JUPYTERHUB_USER,
    and it is no managed service of the hub's (those are the hub's own: restarted with it). One we
    may not inspect (another uid's, and no CAP_SYS_PTRACE: a default container) is kept, as every
    escapee was before this test: losing users' work is worse than a helper left running."""
    environment = environment_of(pid)
    if environment is None:
        return True
    if any(entry.startswith(b"TMPDIR=") and b"/svctl-check-" in entry for entry in environment):
        return False  # a check's leftover, whatever the service's environment table holds
    if any(entry.startswith(MANAGED_SERVICE_MARK) for entry in environment):
        return False
    return any(entry.startswith(USER_SERVER_MARK) for entry in environment)


SERVICE_MARK = b"SVCTL_SERVICE="  # issue 14: every service, check and hook runs with SVCTL_SERVICE=NAME


CLAIM_LIMIT = 32 * 1024  # how much of an escapee's environment is read for its SVCTL_SERVICE claim


def in_service(pid: int, name: bytes | str, sessions: set[int], uid: int = 0) -> bool:
    """Is PID (our child, under `svctl up`) an escapee of the service called NAME, whose processes
    were started in SESSIONS and run as UID (0: root)? Its session is one of them (the kernel
    vouches for that), or it claims NAME by SVCTL_SERVICE=NAME in its environment and runs as
    UID: a claim is only a process's word, so a nobody service's escapee can't pass itself off as
    a root service's (and have that service's stop signal it, or hold its respawn up). The claim
    is read from the first CLAIM_LIMIT bytes only: a 2 MiB environment per escapee must not make
    every scan slow (a claim beyond that makes it no one's, as `env -u` would)."""
    stat = read_stat(pid)  # (state, start, process group, session): field 6 parsed after the last ')'
    if stat is None or stat[0] in ("Z", "X"):
        return False  # gone: nothing left to signal
    if stat[3] in sessions:
        return True
    if real_uid(pid) != uid:
        return False
    mark = SERVICE_MARK + (os.fsencode(name) if isinstance(name, str) else name)
    head = environment_of(pid, CLAIM_LIMIT)
    if head is None:
        return False  # not ours to read: no claim made
    if mark in head:
        return True
    # svctl puts the variable first, but a shell may reorder what it passes on: the rest too, for
    # a process of the service's own uid only (its own environments can slow only its own scans)
    return len(b"\0".join(head)) >= CLAIM_LIMIT - 1 and mark in (environment_of(pid) or ())


def real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def service_uid(config) -> int | None:
    """The uid the service runs as, when that is not root (None: root, every escapee is its own)."""
    if not config.user or os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam(config.user).pw_uid or None
    except KeyError:
        return None  # spawn refuses it: nothing of the service will run


def kill_group(pgid: int) -> None:
    """SIGKILL to what is left of a helper's group (call while its leader is an un-reaped zombie,
    which keeps the group's ID from being reused)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def send_stop_signal(send: Callable[[int], None], number: int, cont: bool = True) -> None:
    """SEND(NUMBER), then SEND(SIGCONT) when CONT (a stop schedule's signal: never a reload's, which
    must not wake a service the admin froze) and a stopped target must wake to act on NUMBER."""
    for each in (number, signal.SIGCONT) if cont and number not in NO_CONT_AFTER else (number,):
        try:
            send(each)
        except OSError:  # gone meanwhile (ESRCH), or not ours to signal
            pass


class Leftovers:
    """The service's process group plus its escapees, as one thing to signal and wait for.

    PRESET: the service's Preset (a preset name, or None, is looked up: runtime.py passes
    config.preset). BELONGS(pid): whether our child PID is this service's (under `svctl up`, see
    in_service); None: every child is (the per-service daemon). FOREIGN: the children that are
    nobody's leftovers; None: those we have now."""

    def __init__(self, preset: object, not_escapees: Callable[[], Iterable[int | None]],
                 uid: int | None = None, log=None, *, belongs: Callable[[int], bool] | None = None,
                 foreign: Iterable[int] | None = None) -> None:
        if preset is None or isinstance(preset, str):
            from supervisor.presets import preset_for

            preset = preset_for(preset)
        self.preset = preset  # keeps_escapee: what it keeps on purpose (users' servers, see above)
        self.take_all = False  # "stop-all": this stop takes the kept ones too
        self.not_escapees = not_escapees  # the service, the check, the hook: PIDs that are no escapee
        self.uid = uid  # the service's user; None or 0: root, every escapee is its own
        self.belongs = belongs
        # children we had before the service ever ran (a boot script's `cmd & exec svctl ...`) are
        # nobody's leftovers; made before the first spawn
        self.foreign = set(children_of(os.getpid()) if foreign is None else foreign)
        self.servers: set[int] = set()  # known kept ones (an un-reaped child's PID is not reused)
        self.log = log  # an EventLog: one "escapee_skipped" line per child left alone for its uid
        self.skipped: set[int] = set()  # those already logged (an un-reaped child's PID is not reused)
        self.last_signal: int | None = None
        self.last_cont = False
        self.signalled: set[int] = set()

    def known(self) -> set[int]:
        """The PIDs that are no escapee (the service, the check, the hook; under `svctl up` every
        service's)."""
        return {pid for pid in self.not_escapees() if pid}

    def escapees(self) -> list[int]:
        ours = self.known() | self.foreign
        found = children_of(os.getpid(), excluding=ours)
        if self.belongs is not None:  # before the uid rule: another service's are not ours to log
            found = [pid for pid in found if self.belongs(pid)]
        if self.uid:  # a non-root service: only what still runs as its user (see above)
            uids = {pid: real_uid(pid) for pid in found}
            found = [pid for pid in found if uids[pid] == self.uid]
            self.skipped &= set(uids)
            for pid in sorted(set(uids) - set(found) - self.skipped):
                self.skipped.add(pid)
                if self.log is not None:
                    self.log.event("escapee_skipped", pid=pid, uid=uids[pid], detail="not running as the "
                                   "service's user: left alone (svctl stop does not signal it)")
        self.servers &= set(found)
        self.servers |= {pid for pid in found if pid not in self.servers and self.preset.keeps_escapee(pid)}
        if not self.take_all:
            found = [pid for pid in found if pid not in self.servers]
        return found

    def alive(self, pgid: int | None) -> bool:
        """Is anything of the service left? An escapee that appeared after the last signal of this
        stop (re-parented to us when its own parent died) gets that signal now."""
        if process_group_alive(pgid):
            return True
        found = self.escapees()
        if self.last_signal is not None:
            self.send([pid for pid in found if pid not in self.signalled], self.last_signal, self.last_cont)
        return bool(found)

    def signal(self, number: int, cont: bool = True) -> None:
        """Send NUMBER to every escapee (the runtime signals the group itself); CONT as in
        send_stop_signal."""
        self.last_signal, self.last_cont = number, cont
        self.send(self.escapees(), number, cont)

    def send(self, pids: list[int], number: int, cont: bool) -> None:
        for pid in pids:  # our un-reaped child: the PID can't be someone else's
            send_stop_signal(lambda each, pid=pid: os.kill(pid, each), number, cont)
            self.signalled.add(pid)

    def reset(self) -> None:
        """A new stop run begins, or the last one is over: no signal is owed to newcomers."""
        self.last_signal = None
        self.signalled.clear()


class ReapLog:
    """The "reaped" events, at most BURST a second: a fork relay's orphans (thousands a second)
    must not flood the events file. What is held back becomes one "reaped_more" line, with the
    count, when the second is over (the runtime's "reaped" timer calls flush)."""

    BURST = 5

    def __init__(self, log, timers: dict) -> None:
        self.log, self.timers = log, timers
        self.window_end = 0.0
        self.written = self.held_back = 0

    def reaped(self, pid: int, status: str) -> None:
        now = time.monotonic()
        if now >= self.window_end:
            self.flush()
            self.window_end, self.written = now + 1.0, 0
        if self.written < self.BURST:
            self.written += 1
            self.log.event("reaped", pid=pid, status=status)
        else:
            self.held_back += 1
            self.timers["reaped"] = self.window_end

    def flush(self) -> None:
        self.timers.pop("reaped", None)
        if self.held_back:
            self.log.event("reaped_more", count=self.held_back, detail="orphans reaped in a second beyond the "
                           f"first {self.BURST}; not logged one by one")
            self.held_back = 0
