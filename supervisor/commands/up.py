"""``svctl up [NAME...]``: every service (or NAME... and what they require) in one foreground
process; supervisor/up.py is the process. Everything that can be refused is refused here, before
anything starts: an invalid, untrusted or unknown service file, a dependency cycle (exit 6), a
caller who may not supervise (exit 4), a service another supervisor already has (exit 1).

Exit codes once it ran: 0 every service started and, on SIGTERM/SIGINT, stopped within its
schedule; 1 a service failed to start (or was never started because a requirement failed) or to
stop (still there after its schedule).
"""

from __future__ import annotations

import os
import sys

from supervisor import config as configuration
from supervisor.cli import options_for
from supervisor.commands.lifecycle import require_privilege
from supervisor.errors import Exit, SvctlError
from supervisor.names import validate_name
from supervisor.unix import rundir
from supervisor.unix.pidfile import AlreadyLocked, SupervisorLock


def up(context, args: list[str]) -> int:
    from supervisor import depgraph
    from supervisor.commands.status_all import defined

    options = options_for(context, "up", args)
    names = [validate_name(name) for name in options.names] or defined(context.config_dir)
    if not names:
        raise SvctlError(f"up: no services defined in {context.config_dir} (no NAME.toml there)", Exit.NOT_CONFIGURED)
    for name in names:
        if not configuration.service_path(name, context.config_dir) or not _exists(name, context.config_dir):
            raise SvctlError(f"up: no service {name!r}: {configuration.service_path(name, context.config_dir)} "
                             "does not exist", Exit.NOT_CONFIGURED)
    configs = depgraph.closure(names, context.config_dir)  # ConfigError (exit 6): nothing started
    for config in configs:
        require_privilege(config, context.run_dir, "up")
        configuration.ensure_paths_exist(config)
    refuse_too_few_descriptors(len(configs))
    enough_descriptors(len(configs))
    locks = take_locks(configs, context.run_dir)
    from supervisor.up import Up

    try:
        adopt = adoptions(configs, context.run_dir)
        front = Up(configs, locks, context.run_dir, context.config_dir, adopt)
    except BaseException:
        for lock in locks.values():
            lock.release()
        raise
    code = front.run()
    sys.stdout.flush()
    return code


FDS_PER_SERVICE = 8  # output pipe (2), events, log, state dir + reserve, pidfd, a hook's pipe
FDS_SPARE = 64  # the loop, the control socket, clients, a check, the watcher


def descriptors_needed(services: int) -> int:
    return FDS_PER_SERVICE * services + FDS_SPARE


def enough_descriptors(services: int) -> None:
    """Raise our soft limit on open files as far as SERVICES need (refuse_too_few_descriptors has
    refused a hard limit below that): 1024 is ~120 services. Only when needed, because the services inherit
    it (as they inherit supervisord's `minfds`), and a larger one slows programs that close every
    possible fd."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = descriptors_needed(services)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


def refuse_too_few_descriptors(services: int) -> None:
    """A hard limit on open files too low for every service would start some and not the rest:
    refused before anything starts, with the fix."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = descriptors_needed(services)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SvctlError(f"up: {services} services need about {needed} open files, but the hard limit is {hard}: "
                         f"raise it (`ulimit -Hn {needed}` as root, `docker run --ulimit nofile={needed}:{needed}`, "
                         f"LimitNOFILE={needed} in a unit), or supervise fewer services here", Exit.FAILED)


def holder(run_dir: str, name: str) -> str:
    """" by pid N (svctl up)": who holds NAME's lock, from its identity file, if that says."""
    fields = rundir.read_ident(rundir.service_dir(run_dir, name))
    if not fields or not fields[0].isdigit():
        return f" (its run directory {rundir.service_dir(run_dir, name)} is locked)"
    kind = "svctl up" if os.path.islink(os.path.join(rundir.service_dir(run_dir, name), rundir.SOCKET)) else "svctl start"
    return f" by pid {fields[0]} ({kind})"


def adoptions(configs: list, run_dir: str) -> dict:
    """NAME -> what to adopt, for each service still running whose supervisor died (as `svctl
    start` adopts it); a live instance svctl did not start (an old init script's) is refused."""
    from supervisor.commands.lifecycle import adoption
    from supervisor.observe import foreign_instance, observe

    found = {}
    for config in configs:
        obs = observe(config, run_dir, locked=True)  # (take_locks came first)
        refusal = foreign_instance(config, obs)
        if refusal:
            raise SvctlError(f"up: {config.name}: not started: {refusal}")
        if obs.supervised and obs.supervisor.pid != os.getpid():  # (its lock is ours: a dying one)
            raise SvctlError(f"up: {config.name} is still supervised by pid {obs.supervisor.pid}")
        adopt = adoption(obs)
        if adopt is not None:
            found[config.name] = adopt
    return found


def _exists(name: str, config_dir: str) -> bool:
    return os.path.lexists(configuration.service_path(name, config_dir))


def take_locks(configs: list, run_dir: str) -> dict:
    """Every service's run-directory lock, or none: a service another supervisor has (`svctl
    start`, another `up`) is refused before anything starts, and it is left alone."""
    locks: dict = {}
    try:
        for config in configs:
            rundir.ensure(run_dir, config.name)
            try:
                locks[config.name] = SupervisorLock.acquire(rundir.service_dir(run_dir, config.name), config.pidfile)
            except AlreadyLocked:
                raise SvctlError(f"up: {config.name} is already supervised{holder(run_dir, config.name)}; "
                                 "leave it out of the names, or end that supervisor first (`svctl stop "
                                 f"{config.name}` ends a per-service one; another `svctl up` ends on SIGTERM)",
                                 Exit.FAILED) from None
    except BaseException:
        for lock in locks.values():
            lock.release()
        raise
    return locks
