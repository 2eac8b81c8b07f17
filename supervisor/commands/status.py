"""``svctl status NAME [--json]`` and ``svctl logs NAME [-f] [-n N]`` (``svctl status`` without NAME,
and ``svctl list``: status_all.py, built from the pieces here).

Status imports only the light modules (no psutil, python-daemon, watchdog or structlog): it is the
verb monitoring runs every few seconds. Exit codes: 0 running, 1 dead but PID file exists (crashed,
backing off, gave up), 3 not running, 4 unknown (untrusted or unreadable PID file).
"""

from __future__ import annotations

import os
import sys
import time

from supervisor import config as configuration
from supervisor.cli import options_for
from supervisor.errors import Exit, Status, SvctlError, printable
from supervisor.names import validate_name
from supervisor.observe import Observation, observe
from supervisor.unix.logcapture import tail
from supervisor.unix.rundir import HIDDEN_REASON

UP_STATES = ("running", "starting", "stopping")
LATEST_TIME = 2**35  # seconds since 1970 (year 3058): a recorded time past this is not one


def decide(obs: Observation) -> tuple[int, str, list[str]]:
    """(exit code, headline, warnings) from an observation (pure)."""
    machine, warnings = obs.machine, []
    state = machine.get("state")
    if obs.pidfile.kind in ("insecure", "garbage", "unreadable"):
        if obs.supervised:
            warnings.append(f"a verified supervisor (pid {obs.supervisor.pid}) is running, per the run directory")
        return Status.UNKNOWN, f"status unknown: {obs.pidfile.reason}", warnings
    if obs.supervised and obs.pidfile.kind == "ok" and obs.pidfile.pid != obs.supervisor.pid \
            and obs.pidfile_alive:  # (a dead PID there: the old supervisor's, about to be rewritten)
        return Status.UNKNOWN, (f"status unknown: PID file names pid {obs.pidfile.pid}, "
                                f"but the supervisor is pid {obs.supervisor.pid}"), warnings
    if obs.supervised:
        if state == "stopped":  # a clean stop, its supervisor on the way out: not a crash
            return Status.NOT_RUNNING, "is not running (stopped)", warnings
        if obs.pidfile.kind == "missing" and state != "starting" and not obs.without_pidfile:
            # (starting: not written yet; `svctl up` writes none)
            warnings.append("the PID file is missing (was it deleted?)")
        if state in UP_STATES:
            return Status.RUNNING, "is running" if state == "running" else f"is {state}", warnings
        return Status.DEAD_WITH_PIDFILE, f"is not running ({state})", warnings
    if obs.orphaned:
        warnings.append("its supervisor is gone: the service runs unsupervised; `svctl start` re-adopts it")
        return Status.RUNNING, "is running (unsupervised)", warnings
    if obs.pidfile.kind == "ok" and not obs.pidfile_alive and (state == "stopped" or machine.get("goal") == "down"):
        # a clean stop whose supervisor was killed before it removed its PID file (say by
        # start-stop-daemon's own KILL step): stopped, not crashed
        return Status.NOT_RUNNING, "is not running (stopped; its PID file was left behind)", warnings
    if obs.starting:  # locked, state not written yet (a `svctl start`, or `svctl up` spawning)
        return Status.RUNNING, "is starting (its supervisor has not written its state yet)", warnings
    if obs.pidfile.kind == "ok":
        return Status.DEAD_WITH_PIDFILE, f"is not running (stale PID file names pid {obs.pidfile.pid})", warnings
    return Status.NOT_RUNNING, "is not running", warnings


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def moment(machine: dict, key: str) -> float | None:
    """A time the supervisor recorded, or None if absent or not a plausible one (state.json is
    root's, but another version's or a damaged one must not crash status)."""
    value = machine.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < LATEST_TIME:
        return None  # also nan, inf
    return float(value)


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def count(value) -> int | None:
    """A count the supervisor recorded, or None if it is not one (a damaged state.json)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def health_of(machine: dict) -> dict | None:
    """The liveness probe's verdict from state.json, checked field by field; None when the service
    has no `health` (or an older supervisor wrote the file, or its shape is wrong)."""
    health = machine.get("health")
    if not isinstance(health, dict) or health.get("state") not in ("passing", "failing", "pending"):
        return None
    last = health.get("last_failure")
    return {"state": health["state"], "failures": count(health.get("failures")) or 0,
            "last_failure": printable(last)[:200] if isinstance(last, str) else None,
            "last_failure_at": moment(health, "last_failure_at"), "restarts": count(health.get("restarts")) or 0}


def health_line(health: dict, now: float) -> str:
    """"passing", "failing (3 failures in a row)", "pending", plus the last failure and restarts."""
    text = health["state"]
    if health["state"] == "failing" and health["failures"]:
        text += f" ({health['failures']} failure{'s' if health['failures'] != 1 else ''} in a row)"
    if health["last_failure"]:
        at = health["last_failure_at"]
        text += f"; last failure: {health['last_failure']}" + (f", {ago(now - at)} ago" if at else "")
    if health["restarts"]:
        text += f"; {health['restarts']} restart{'s' if health['restarts'] != 1 else ''} by the health check"
    return text


def rejection(obs: Observation) -> tuple[str, float | None] | None:
    """The rejected config's reason and time, if the last reload was rejected (root sees the reason
    itself when state.json hides it from everyone else)."""
    rejected = obs.machine.get("rejected")
    if not (isinstance(rejected, list) and len(rejected) == 2 and isinstance(rejected[0], str)):
        return None
    if rejected[0] == HIDDEN_REASON:
        from supervisor.unix import rundir

        private = rundir.read_private(obs.directory).get("rejected")
        if isinstance(private, list) and len(private) == 2 and isinstance(private[0], str):
            rejected = [private[0], rejected[1]]
    return rejected[0], moment({"at": rejected[1]}, "at")


def shown(value) -> str:
    """A string from state.json, fit for root's terminal: it may quote what a service user
    controls (a check's output, an exit reason, a problem), and an escape sequence must not act."""
    return printable(value if isinstance(value, str) else str(value))


def details(config: configuration.ServiceConfig, obs: Observation) -> list[str]:
    machine, now, lines = obs.machine, time.time(), []
    if obs.supervisor:
        lines.append(f"supervisor: pid {obs.supervisor.pid}")
    if obs.service:
        started = moment(machine, "started_at")
        up = f", up {ago(now - started)}" if started else ""
        lines.append(f"service:    pid {obs.service.pid}{up}")
    if config.ready:
        ready = "ready" if machine.get("ready_at") and obs.service else "not ready"
        lines.append(f"readiness:  {ready} ({shown(config.ready)})")
    if machine.get("restarts"):
        lines.append(f"restarts:   {shown(machine['restarts'])}")
    if machine.get("last_exit"):
        exited = moment(machine, "last_exit_at")
        lines.append(f"last exit:  {shown(machine['last_exit'])}" + (f", {ago(now - exited)} ago" if exited else ""))
    if machine.get("gave_up_reason"):
        lines.append(f"gave up:    {shown(machine['gave_up_reason'])}")
    retry = moment(machine, "next_retry_at")
    if retry and machine.get("state") in ("backoff", "gave-up"):
        lines.append(f"next retry: in {ago(retry - now)}")
    health = health_of(machine) if obs.service else None  # (a stopped service's verdict is history)
    if health:
        lines.append(f"health:     {health_line(health, now)}")
    rejected = rejection(obs)
    if rejected:
        reason, at = rejected
        lines.append(f"config rejected: {shown(reason)}" + (f" (at {stamp(at)})" if at else ""))
    degraded = moment(machine, "degraded_at")
    if degraded:
        lines.append(f"degraded: running last known good config from {stamp(degraded)}")
    if machine.get("stop_failed"):
        lines.append(f"stop failed: {shown(machine['stop_failed'])}")
    problems = (obs.state or {}).get("problems")
    if isinstance(problems, list):  # what the supervisor could not do, while it kept supervising
        lines += [f"problem:    {shown(problem)}" for problem in problems[:8] if isinstance(problem, str)]
    return lines


def status(context, args: list[str]) -> int:
    options = options_for(context, "status", args)
    if options.name is None:  # every service: `svctl list`
        from supervisor.commands.status_all import status_all

        return status_all(context, options)
    name = validate_name(options.name)
    from supervisor.unix import rundir

    state_read = rundir.read_state(rundir.service_dir(context.run_dir, name))
    broken = None
    try:
        config = configuration.load(name, context.config_dir, state=state_read[0], for_display=True)
    except SvctlError as exc:  # a running service whose file was since broken is still running
        config, broken = running_definition(name, state_read[0], exc), exc
    obs = observe(config, context.run_dir, state_read)
    code, headline, warnings = decide(obs)
    if broken is not None and not os.path.lexists(configuration.service_path(name, context.config_dir)):
        warnings.append(f"the service file {configuration.service_path(name, context.config_dir)} is missing, "
                        "this is the definition it runs with")
    elif broken is not None:
        warnings.append(f"the service file is invalid, this is the definition it runs with: {broken}")
    # The log tail is for a person at a terminal (or asked for): init scripts, `service
    # --status-all` and monitoring grep status output, and a log line saying "usage" or "failed"
    # must not change their verdict.
    wanted = options.number("--lines", 10 if sys.stdout.isatty() else 0, 0, 1000)
    output = tail(config.log_file, max(wanted, 10)) if options.flag("--json") or wanted else []
    if options.flag("--json"):
        import json

        text = json.dumps({
            "name": name, "code": code, "status": headline, "warnings": warnings,
            "pidfile": {"path": config.pidfile, "kind": obs.pidfile.kind, "pid": obs.pidfile.pid,
                        "reason": obs.pidfile.reason},
            "supervisor_pid": obs.supervisor.pid if obs.supervisor else None,
            "service_pid": obs.service.pid if obs.service else None,
            "machine": obs.machine, "health": health_of(obs.machine) if obs.service else None,
            "log_file": config.log_file, "output": output,
        }, indent=2)
    else:
        pid = f" (pid {obs.service.pid}" if obs.service else ""
        started = moment(obs.machine, "started_at")
        if pid and started:
            pid += f", up {ago(time.time() - started)}"
        lines = [f"{name} {headline}{pid + ')' if pid else ''}"]
        lines += [f"  {line}" for line in details(config, obs)]
        lines += [f"  warning: {warning}" for warning in warnings]
        if output and code != Status.NOT_RUNNING and wanted:
            lines += [f"  last output ({config.log_file}):", *(f"    {shown(line)}" for line in output[-wanted:])]
        text = "\n".join(lines)
    try:
        print(text)
    except BrokenPipeError:  # `svctl status NAME | head -1`: the reader left; the exit code still tells
        from supervisor.cli import silence_stdout

        silence_stdout()
    return code


def running_definition(name: str, state: dict | None, error: SvctlError) -> configuration.ServiceConfig:
    """The definition a running supervisor recorded (state.json, root-written), or raise ERROR:
    monitoring must not report a running hub down because someone broke its file meanwhile."""
    record = (state or {}).get("config")
    if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
        raise error
    from supervisor.observe import recorded, verify

    if not verify(recorded(state, "supervisor"), allow_init=True):
        raise error  # nobody runs on that definition any more: the broken file is the truth
    try:
        return configuration.from_mapping(name, str(record.get("path", "")), record["data"], validated=True)
    except SvctlError:
        raise error from None


def logs(context, args: list[str]) -> int:
    """The last LINES of the captured output; with -f, then what follows (until Ctrl-C).

    A log file that does not exist (yet) is one line and exit 1, with or without -f: there is
    nothing to show or follow, and waiting for a file that may never come would look like a hang.
    """
    options = options_for(context, "logs", args)
    count = options.number("-n", 50, 0, 10**6)
    config = configuration.load(validate_name(options.name), context.config_dir)
    import os

    from supervisor.unix import safefs

    path = config.log_file
    try:  # like tail(): no symlink followed, no FIFO or device opened (a user may own the directory)
        with safefs.locate(path) as place:
            fd = safefs.open_regular(place, os.O_RDONLY)
    except FileNotFoundError:
        raise SvctlError(f"{config.name}: no output captured yet ({path} does not exist)") from None
    except PermissionError:
        raise SvctlError(f"{config.name}: {path} is not readable by you: run it as root", Exit.NOT_ROOT) from None
    except OSError as exc:
        raise SvctlError(f"{config.name}: cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if count:
            for line in tail(path, count):
                print(line)
        if not options.flag("-f"):
            return Exit.OK
        sys.stdout.flush()
        handle.seek(0, os.SEEK_END)
        while True:
            data = handle.read()
            if data:
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
            else:
                time.sleep(0.2)  # a human is watching; a 5 Hz check costs nothing
