"""What is really going on with a service, seen from outside its supervisor (used by the CLI).

Combines the PID file (the public, advisory export), the supervisor's state.json in the trusted run
directory, and /proc. A PID is believed only when its identity (PID, start time, boot) matches what
the supervisor recorded (not the executable: a wrapper that execs its daemon is the same process);
nothing here signals anything.
"""

from __future__ import annotations

import os
from collections import namedtuple

from supervisor.config import ServiceConfig
from supervisor.unix import rundir
from supervisor.unix.identity import Identity, verify
from supervisor.unix.pidfile import read_pidfile


class Observation(namedtuple("Observation", "pidfile state state_problem supervisor service directory pidfile_alive", defaults=(True,))):
    """pidfile: PidfileRead; state: dict | None (state.json) and why it was refused; supervisor and
    service: Identity of each if verified alive, else None; directory: the run directory."""

    __slots__ = ()

    @property
    def machine(self) -> dict:
        machine = (self.state or {}).get("machine")
        return machine if isinstance(machine, dict) else {}  # wrong-shaped (another version?): none

    @property
    def supervised(self) -> bool:
        return self.supervisor is not None

    @property
    def orphaned(self) -> bool:
        """The service outlived its supervisor (kill -9): running, unsupervised, adoptable."""
        return self.supervisor is None and self.service is not None


def observe(config: ServiceConfig, run_dir: str, state_read: tuple | None = None) -> Observation:
    """STATE_READ: the (state, problem) pair of rundir.read_state, if the caller already has it."""
    directory = rundir.service_dir(run_dir, config.name)
    pidfile = read_pidfile(config.pidfile)
    state, problem = state_read or rundir.read_state(directory)
    supervisor = service = None
    if state is not None:
        recorded_supervisor = recorded(state, "supervisor")
        if verify(recorded_supervisor) and recorded_supervisor.pid != os.getpid():
            supervisor = recorded_supervisor
        recorded_service = recorded(state, "service")
        if verify(recorded_service):
            service = recorded_service
    pidfile_alive = pidfile.kind != "ok" or process_alive(pidfile.pid)
    return Observation(pidfile, state, problem, supervisor, service, directory, pidfile_alive)


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
