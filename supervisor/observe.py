"""What is really going on with a service, seen from outside its supervisor (used by the CLI).

Combines the PID file (the public, advisory export), the supervisor's state.json in the trusted run
directory, and /proc. A PID is believed only when its identity (PID, start time, boot) matches what
the supervisor recorded (not the executable: a wrapper that execs its daemon is the same process);
nothing here signals anything.
"""

from __future__ import annotations

import os

from supervisor.config import ServiceConfig
from supervisor.core.record import Record
from supervisor.unix import rundir
from supervisor.unix.identity import Identity, verify
from supervisor.unix.pidfile import lock_held, read_pidfile


class Observation(Record):
    """pidfile: PidfileRead; state: dict | None (state.json) and why it was refused; supervisor and
    service: Identity of each if verified alive, else None; directory: the run directory."""

    __slots__ = ("pidfile", "state", "state_problem", "supervisor", "service", "directory", "pidfile_alive",
                 "starting")
    defaults = {"pidfile_alive": True, "starting": False}

    @property
    def machine(self) -> dict:
        machine = (self.state or {}).get("machine")
        return machine if isinstance(machine, dict) else {}  # wrong-shaped (another version?): none

    @property
    def under_up(self) -> bool:
        """Supervised by `svctl up` (many services, one process, no PID files)."""
        return (self.state or {}).get("mode") == "up"

    @property
    def without_pidfile(self) -> bool:
        """Its supervisor writes no PID file: `svctl up`, or `svctl run` as PID 1 (a container's
        init, whose PID file would say 1, which no reader may believe)."""
        return (self.state or {}).get("mode") in ("up", "init")

    @property
    def supervised(self) -> bool:
        return self.supervisor is not None

    @property
    def orphaned(self) -> bool:
        """The service outlived its supervisor (kill -9): running, unsupervised, adoptable."""
        return self.supervisor is None and self.service is not None


def observe(config: ServiceConfig, run_dir: str, state_read: tuple | None = None, locked: bool = False) -> Observation:
    """STATE_READ: the (state, problem) pair of rundir.read_state, if the caller already has it.
    LOCKED: the caller holds the run directory's lock, so a state.json from another PID namespace
    is a dead one's (a restarted container's: its processes died with their namespace)."""
    directory = rundir.service_dir(run_dir, config.name)
    pidfile = read_pidfile(config.pidfile)
    state, problem = state_read or rundir.read_state(directory)
    supervisor = service = None
    if state is not None and foreign_namespace(config.name, state, refuse=not locked, directory=directory):
        state = None
    if state is not None:
        recorded_supervisor = recorded(state, "supervisor")
        if verify(recorded_supervisor, allow_init=True) and recorded_supervisor.pid != os.getpid():
            supervisor = recorded_supervisor
        recorded_service = recorded(state, "service")
        if verify(recorded_service):
            service = recorded_service
    pidfile_alive = pidfile.kind != "ok" or process_alive(pidfile.pid)
    # nobody verified, yet the lock is held: a supervisor is between its lock and its first
    # state.json (root can tell; for anyone else the 0600 lock file says nothing)
    starting = not locked and supervisor is None and service is None and lock_held(directory, unknown=False)
    return Observation(pidfile, state, problem, supervisor, service, directory, pidfile_alive, starting)


def foreign_namespace(name: str, state: dict, refuse: bool, directory: str) -> bool:
    """Whether STATE was written in another PID namespace; if REFUSE and its supervisor may still
    live (DIRECTORY's lock is held), that is an error (exit 4): a container's `svctl up` whose run
    directory is seen from the host. Its PIDs are other processes here, so neither "running" nor
    "not running" would be true, and a stop must not act on them."""
    theirs = state.get("pid_namespace")
    if not isinstance(theirs, str) or not theirs:
        return False
    from supervisor.unix.identity import pid_namespace

    ours = pid_namespace()
    if not ours or theirs == ours:
        return False
    if refuse and lock_held(directory):
        from supervisor.errors import Status, SvctlError, printable

        raise SvctlError(f"{name} is supervised in another PID namespace ({printable(theirs)[:40]}, we are in "
                         f"{ours}): run svctl there (docker exec CONTAINER svctl ..., or nsenter)", Status.UNKNOWN)
    return True


def foreign_instance(config: ServiceConfig, obs: Observation) -> str | None:
    """Why a start must not go ahead: the PID file names a live process of the service's own program
    that svctl did not start (an old init script's daemon, the seed's hub). Starting a second one
    would fight it for its ports and state, and overwriting its PID file would aim that script's
    `stop` at our supervisor. A PID file naming anything else (a reused PID) is just stale: another
    program, one that started after the file was written, or one of a user other than root and the
    service's (any user can fork until it gets a stale file's PID and exec the same argv)."""
    if obs.supervised or obs.orphaned or obs.pidfile.kind != "ok" or obs.pidfile.pid == os.getpid():
        return None
    pid = obs.pidfile.pid
    if not _older_than_the_file(pid, config.pidfile) or _real_uid(pid) not in _owners(config):
        return None
    argv = _cmdline(pid)
    program, arguments = os.path.basename(config.command[0]), list(config.command[1:])
    # The same program (argv[0], or argv[1] for a script run by its #! interpreter) with the same
    # arguments: a reused PID of an unrelated process never blocks a start.
    same_program = program in {os.path.basename(word) for word in argv[:2]}
    same_arguments = not arguments or argv[-len(arguments):] == arguments
    if not (process_alive(pid) and same_program and same_arguments):
        return None
    from supervisor.errors import printable

    shown = printable(" ".join(argv))[:80]
    return (f"{config.pidfile} names pid {pid} ({shown}), a {program} that svctl did not start (an old "
            f"init script's?): stop it first (kill {pid}, or that script's stop), then start again")


def _older_than_the_file(pid: int, pidfile: str) -> bool:
    """The process started before PIDFILE was last written (then the file can be about it)."""
    import time

    from supervisor.unix.identity import read_stat, seconds_since_start

    found = read_stat(pid)
    try:
        written = os.stat(pidfile).st_mtime
    except OSError:
        return False
    return found is not None and time.time() - seconds_since_start(found[1]) <= written + 1.0


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _owners(config: ServiceConfig) -> set[int]:
    """Who may own an instance of the service: root, and the service's user."""
    import pwd

    owners = {0, os.geteuid()}  # os.geteuid(): a private, non-root setup
    try:
        if config.user:
            owners.add(pwd.getpwnam(config.user).pw_uid)
    except (KeyError, ValueError):
        pass
    return owners


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return []


def process_alive(pid: int) -> bool:
    """A live, non-zombie process has this PID (a PID file may name one that died since)."""
    from supervisor.unix.identity import read_stat

    found = read_stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def recorded(state: dict, key: str) -> Identity | None:
    """The identity state.json recorded under KEY ("supervisor", "service"), None if unusable."""
    try:
        return Identity.from_dict(state.get(key))
    except (OverflowError, ValueError, TypeError):  # "pid": Infinity in a damaged state.json
        return None
