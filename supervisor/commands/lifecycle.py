"""The LSB verbs that change things: start, stop, restart, try-restart, reload, force-reload, plus
``run`` (foreground) and ``reopen-logs``. Exit codes as in svctl(8) and the README; every message one line.
What `requires = [...]` adds (requirements started first, dependents stopped first, the graph
checked before a restart stops anything) is cascade.py.
"""

from __future__ import annotations

import os
import sys
import time

from supervisor import config as configuration
from supervisor.cli import options_for
from supervisor.commands.cascade import (check_restart, is_running, say, start_again, start_requirements,
                                         stop_dependents, wait_for_requirements)
from supervisor.config import ServiceConfig
from supervisor.errors import Exit, SvctlError, printable
from supervisor.names import validate_name
from supervisor.observe import Observation, foreign_instance, observe
from supervisor.unix import control, rundir
from supervisor.unix.pidfile import AlreadyLocked, SupervisorLock, read_pidfile


def load(context, args: list[str], verb: str) -> tuple[ServiceConfig, list[str]]:
    """The service named on the command line (these verbs take NAME and no options: the CLI's
    parser has refused anything else with exit 2), and the arguments after it."""
    name = validate_name(options_for(context, verb, args).name)
    # these verbs fork per-service supervisors, which would keep tomllib for good: parse apart
    # (config.py). Not `svctl up`: one process for every service parses them all itself.
    configuration.PARSE_APART = True
    state, _ = rundir.read_state(rundir.service_dir(context.run_dir, name))  # unchanged file: no TOML parse
    return configuration.load(name, context.config_dir, state=state), args[1:]


def require_privilege(config: ServiceConfig, run_dir: str, verb: str) -> None:
    """Root, or the owner of a private setup (run dir and PID file directory are the caller's)."""
    if os.geteuid() == 0:
        return
    for directory in (run_dir, os.path.dirname(config.pidfile)):
        try:
            owner = os.stat(directory).st_uid
        except FileNotFoundError:
            owner = os.stat(os.path.dirname(directory.rstrip("/")) or "/").st_uid
        if owner != os.geteuid():
            raise SvctlError(f"{verb} {config.name}: must be run as root ({directory} belongs to uid {owner})",
                             Exit.NOT_ROOT)


# ---- start ------------------------------------------------------------------------------------


def start(context, args: list[str]) -> int:
    config, _ = load(context, args, "start")
    require_privilege(config, context.run_dir, "start")
    configuration.ensure_paths_exist(config)
    code = start_requirements(config, context)
    if code != Exit.OK:
        return code
    return start_service(config, context.run_dir)


def start_service(config: ServiceConfig, run_dir: str) -> int:
    rundir.ensure(run_dir, config.name)
    deadline = time.monotonic() + (config.ready_timeout if config.ready else config.start_seconds) + 15
    while True:
        try:
            lock = SupervisorLock.acquire(rundir.service_dir(run_dir, config.name), config.pidfile)
            break
        except AlreadyLocked:  # the run directory's lock: whatever became of the PID file
            obs = observe(config, run_dir)
            if obs.supervised and on_its_way_out(obs):  # a stop in progress: start once it is done
                wait_until_gone(obs.supervisor, deadline=deadline)
                continue
            if obs.supervised:  # another supervisor runs (or is starting): ask it, don't start a second
                return ask(config, obs, "start", timeout=deadline - time.monotonic())
            if time.monotonic() > deadline:
                raise SvctlError(f"{config.name}: the supervisor lock in {rundir.service_dir(run_dir, config.name)} "
                                 "is held by a process that never reported; refusing to start a second "
                                 "instance") from None
            time.sleep(0.02)  # a launcher is between lock and state file: wait for it to appear
    obs = observe(config, run_dir, locked=True)
    refusal = foreign_instance(config, obs)
    if refusal:
        lock.release()
        raise SvctlError(f"{config.name}: not started: {refusal}")
    adopt = adoption(obs)
    from supervisor.launch import launch

    code, message = launch(config, run_dir, lock, adopt)
    if code == Exit.OK:
        say(config, message)
        return code
    return report_start_failure(config, message)


def on_its_way_out(obs: Observation) -> bool:
    """The verified supervisor is stopping its service for good (a `stop`, SIGTERM). Never under
    `svctl up`: it goes on with its other services, and a `start` is its to answer."""
    if obs.under_up:
        return False
    machine = obs.machine
    return machine.get("goal") == "down" or machine.get("state") == "stopped"


def adoption(obs: Observation) -> tuple[int, int, int | None] | None:
    """(pid, process group, output pipe fd in the service) of a service whose supervisor died."""
    if not obs.orphaned:
        return None
    state = obs.state or {}
    pgid, output_fd = state.get("pgid"), state.get("output_fd")
    # the service leads its own session, so its process group is its PID (a session leader can't
    # change it); anything else recorded would be a corrupt state file
    pgid = pgid if pgid == obs.service.pid else obs.service.pid
    output_fd = output_fd if isinstance(output_fd, int) and not isinstance(output_fd, bool) and output_fd >= 0 else None
    return obs.service.pid, pgid, output_fd


def report_start_failure(config: ServiceConfig, message: str) -> int:
    from supervisor.unix.logcapture import tail

    code = Exit.FAILED
    if config.check:  # a config error is the usual cause: say so, with the LSB code for it
        from supervisor.unix.validate import run_check

        result = run_check(config)
        if not result.ok:
            message, code = f"{message}; config invalid: {result.summary}", Exit.NOT_CONFIGURED
    print(f"svctl: {config.name}: {message}", file=sys.stderr)
    lines = tail(config.log_file, 10)
    if lines:
        print(f"last output ({config.log_file}):", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
    return code


# ---- talking to a running supervisor ----------------------------------------------------------

STOPS = ("stop", "stop-all")  # stop-all: --stop-user-servers


def ask(config: ServiceConfig, obs: Observation, command: str, timeout: float | None) -> int:
    """Send a control request to the verified supervisor; print and return its answer.

    A `stop` that meets a supervisor on its way out (socket already gone, or the connection
    broken after the request) waits for that supervisor to be gone and then looks again: the
    service is stopped, or (if the supervisor was killed) running unsupervised and stopped here.
    """
    from supervisor.unix.identity import verify

    path = os.path.join(obs.directory, rundir.SOCKET)
    deadline = time.monotonic() + 5
    while True:
        try:
            code, message = control.request(path, command, obs.supervisor.pid, timeout, config.name)
            break
        except (FileNotFoundError, ConnectionRefusedError, control.SupervisorGone) as exc:
            if command in STOPS and (isinstance(exc, control.SupervisorGone) or not verify(obs.supervisor, allow_init=True)):
                wait_until_gone(obs.supervisor, deadline=time.monotonic() + 10)
                return stop_service(config, os.path.dirname(obs.directory), command)
            if time.monotonic() > deadline:
                raise SvctlError(f"cannot reach the supervisor (pid {obs.supervisor.pid}) at {path}") from None
            time.sleep(0.02)  # the supervisor is still setting up its socket
        except (OSError, ValueError) as exc:
            raise SvctlError(f"no answer from the supervisor (pid {obs.supervisor.pid}): {exc}") from None
    message = printable(str(message))  # a check's output may be in it: no terminal escapes, one line
    if code == Exit.OK and command in STOPS and not obs.under_up:
        from supervisor.unix.identity import wait_for_exit

        wait_for_exit(obs.supervisor, 5.0)  # "stopped" means nothing of it is left, its supervisor too
    if code == Exit.OK:
        say(config, message)
    else:
        print(f"svctl: {config.name}: {message}", file=sys.stderr)
    return code


def wait_until_gone(identity, deadline: float) -> None:
    from supervisor.unix.identity import verify

    while verify(identity, allow_init=True) and time.monotonic() < deadline:  # (a supervisor's)
        time.sleep(0.01)


# ---- stop -------------------------------------------------------------------------------------


def stop(context, args: list[str]) -> int:
    config = load_for_stop(context, args)
    require_privilege(config, context.run_dir, "stop")
    command = "stop-all" if "--stop-user-servers" in args else "stop"
    code, _ = stop_dependents(config, context, command)
    if code != Exit.OK:
        return code
    return stop_service(config, context.run_dir, command)


def load_for_stop(context, args: list[str]) -> ServiceConfig:
    """Like load; but a running service whose file is since broken, untrusted or gone is stopped
    with the definition its supervisor recorded (state.json, root's): a broken file must never
    keep a service from stopping. Nothing runs on a record: the file's error, as for any verb."""
    name = validate_name(options_for(context, "stop", args).name)
    state, _ = rundir.read_state(rundir.service_dir(context.run_dir, name))
    try:
        return configuration.load(name, context.config_dir, state=state)
    except SvctlError as exc:
        from supervisor.commands.status import running_definition

        config = running_definition(name, state, exc)  # (raises EXC when no supervisor runs on one)
        require_privilege(config, context.run_dir, "stop")  # a caller who may not stop it: no warning first
        print(f"svctl: {name}: warning: stopping it with the definition it runs with: {printable(str(exc))}",
              file=sys.stderr)
        return config


def stop_service(config: ServiceConfig, run_dir: str, command: str = "stop") -> int:
    """Stop CONFIG's service alone. COMMAND "stop-all" (--stop-user-servers) also stops what its
    preset keeps on purpose; an orphaned service adopted here gets the plain stop schedule."""
    obs = observe(config, run_dir)
    total = config.stop.total_seconds
    if obs.supervised:  # "stopped" comes once the service is gone and the PID file removed
        return ask(config, obs, command, timeout=None if total is None else total * 2 + 30)
    if obs.orphaned:  # its supervisor was killed: adopt it here, run the stop schedule, done
        try:
            lock = SupervisorLock.acquire(rundir.service_dir(run_dir, config.name), config.pidfile)
        except AlreadyLocked:
            raise SvctlError(f"{config.name}: another svctl is taking over the service right now") from None
        from supervisor.launch import supervise

        code = supervise(config, run_dir, lock, launcher_fd=None, adopt=adoption(obs), console=False,
                         stop_at_once=True)
        say(config, "stopped" if code == 0 else "stop failed")
        return Exit.OK if code == 0 else Exit.FAILED
    if starting_now(config, run_dir):  # a start holds the lock but has not published yet: wait, then stop it
        return stop_service(config, run_dir, command)
    foreign = foreign_instance(config, obs)
    if foreign:  # never svctl's to signal, and its PID file is not stale: leave both alone
        raise SvctlError(f"{config.name}: not stopped: {foreign}")
    remove_stale_pidfile(config, run_dir)
    say(config, "not running")
    return Exit.OK


def starting_now(config: ServiceConfig, run_dir: str, seconds: float = 15.0) -> bool:
    """True once a supervisor that holds the lock (a start in progress) has become visible;
    False when nobody holds it. A stop must never answer "not running" to a start under way."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            SupervisorLock.acquire(rundir.ensure(run_dir, config.name), config.pidfile).release()
            return False
        except AlreadyLocked:
            if observe(config, run_dir).supervised or time.monotonic() > deadline:
                return observe(config, run_dir).supervised
            time.sleep(0.02)
        except SvctlError:
            return False


def remove_stale_pidfile(config: ServiceConfig, run_dir: str) -> None:
    """Nothing of ours runs: a leftover PID file (dead, reused, garbage) only misleads; remove it.

    Only while holding the supervisor lock (no supervisor is starting meanwhile), and never
    through a directory someone else controls.
    """
    if read_pidfile(config.pidfile).kind == "missing":
        return
    try:
        lock = SupervisorLock.acquire(rundir.ensure(run_dir, config.name), config.pidfile)
    except (AlreadyLocked, SvctlError):
        return  # a supervisor is starting, or the PID file's directory is not root's: leave it
    try:
        from supervisor.unix.safefs import unlink_trusted

        unlink_trusted(config.pidfile)
    except OSError:
        pass
    finally:
        lock.release()


# ---- restart, reload and friends ---------------------------------------------------------------


def restart(context, args: list[str]) -> int:
    """Stop the running dependents, then the service; start what it requires, the service, and
    then the dependents that were running (requirements first)."""
    config, _ = load(context, args, "restart")
    require_privilege(config, context.run_dir, "restart")
    configuration.ensure_paths_exist(config)
    order, found, from_records = check_restart(config, context)  # a broken graph: exit 6 before anything stops
    code, stopped = stop_dependents(config, context, found=found)
    if code != Exit.OK:
        return code
    code = stop_service(config, context.run_dir)
    if code != Exit.OK:
        return code  # never start a second copy next to one that refused to stop
    code = start_requirements(config, context, order)
    if code == Exit.OK:
        code = start_service(config, context.run_dir)
    for dependent in reversed(stopped):
        if code != Exit.OK:
            print(f"svctl: {config.name}: {dependent.name} (requires it) left stopped", file=sys.stderr)
            continue
        code = start_again(config, dependent, context, from_records)
    return code


def try_restart(context, args: list[str]) -> int:
    config, _ = load(context, args, "try-restart")
    require_privilege(config, context.run_dir, "try-restart")
    if not is_running(observe(config, context.run_dir)):
        say(config, "not running; nothing to restart")
        return Exit.OK
    return restart(context, args)


def reload(context, args: list[str]) -> int:
    config, _ = load(context, args, "reload")
    require_privilege(config, context.run_dir, "reload")
    configuration.ensure_paths_exist(config)
    obs = observe(config, context.run_dir)
    if not obs.supervised:
        detail = "its supervisor is gone; `svctl start` re-adopts it first" if obs.orphaned else "not running"
        print(f"svctl: {config.name}: cannot reload: {detail}", file=sys.stderr)
        return Exit.NOT_RUNNING
    timeout = config.check_timeout + config.ready_timeout + (config.stop.total_seconds or 3600) + 30
    return ask(config, obs, "reload", timeout=timeout)


def force_reload(context, args: list[str]) -> int:
    config, _ = load(context, args, "force-reload")
    require_privilege(config, context.run_dir, "force-reload")
    if is_running(observe(config, context.run_dir)):
        return reload(context, args)
    configuration.ensure_paths_exist(config)
    code = start_requirements(config, context)  # a start, like `svctl start`
    return code if code != Exit.OK else start_service(config, context.run_dir)


def reopen_logs(context, args: list[str]) -> int:
    config, _ = load(context, args, "reopen-logs")
    require_privilege(config, context.run_dir, "reopen-logs")
    obs = observe(config, context.run_dir)
    if not obs.supervised:  # logrotate's postrotate on a stopped service: nothing is open, all is well
        say(config, "not running; no log file is open")
        return Exit.OK
    return ask(config, obs, "reopen-logs", timeout=10)


# ---- run (foreground) -------------------------------------------------------------------------


def run(context, args: list[str]) -> int:
    """Supervise in the foreground: systemd Type=notify, containers, `make run`, debugging."""
    config, _ = load(context, args, "run")
    require_privilege(config, context.run_dir, "run")
    configuration.ensure_paths_exist(config)
    wait_for_requirements(config, context)
    rundir.ensure(context.run_dir, config.name)
    try:
        lock = SupervisorLock.acquire(rundir.service_dir(context.run_dir, config.name), config.pidfile)
    except AlreadyLocked:
        raise SvctlError(f"{config.name} is already supervised (its run directory is locked)") from None
    obs = observe(config, context.run_dir, locked=True)
    refusal = foreign_instance(config, obs)
    if refusal:
        lock.release()
        raise SvctlError(f"{config.name}: not started: {refusal}")
    adopt = adoption(obs)
    from supervisor.launch import supervise

    code = supervise(config, context.run_dir, lock, launcher_fd=None, adopt=adopt, console=sys.stderr.isatty())
    if code != Exit.OK:
        return report_start_failure(config, "stopped after a failure (see above)")
    return code

