"""``svctl status NAME [--json]`` and ``svctl logs NAME [-f] [-n N]``.

Status imports only the light modules (no psutil, python-daemon, watchdog or structlog): it is the
verb monitoring runs every few seconds. Exit codes: 0 running, 1 dead but PID file exists (crashed,
backing off, gave up), 3 not running, 4 unknown (untrusted or unreadable PID file).
"""

from __future__ import annotations

import json
import sys
import time

from supervisor import config as configuration
from supervisor.errors import Status, SvctlError
from supervisor.names import validate_name
from supervisor.observe import Observation, observe
from supervisor.unix.logcapture import tail

UP_STATES = ("running", "starting", "stopping")


def decide(obs: Observation) -> tuple[int, str, list[str]]:
    """(exit code, headline, warnings) from an observation (pure)."""
    machine, warnings = obs.machine, []
    state = machine.get("state")
    if obs.pidfile.kind in ("insecure", "garbage", "unreadable"):
        if obs.supervised:
            warnings.append(f"a verified supervisor (pid {obs.supervisor.pid}) is running, per the run directory")
        return Status.UNKNOWN, f"status unknown: {obs.pidfile.reason}", warnings
    if obs.supervised and obs.pidfile.kind == "ok" and obs.pidfile.pid != obs.supervisor.pid:
        return Status.UNKNOWN, (f"status unknown: PID file names pid {obs.pidfile.pid}, "
                                f"but the supervisor is pid {obs.supervisor.pid}"), warnings
    if obs.supervised:
        if obs.pidfile.kind == "missing":
            warnings.append("the PID file is missing (was it deleted?)")
        if state in UP_STATES:
            return Status.RUNNING, "is running" if state == "running" else f"is {state}", warnings
        return Status.DEAD_WITH_PIDFILE, f"is not running ({state})", warnings
    if obs.orphaned:
        warnings.append("its supervisor is gone: the service runs unsupervised; `svctl start` re-adopts it")
        return Status.RUNNING, "is running (unsupervised)", warnings
    if obs.pidfile.kind == "ok":
        return Status.DEAD_WITH_PIDFILE, f"is not running (stale PID file names pid {obs.pidfile.pid})", warnings
    return Status.NOT_RUNNING, "is not running", warnings


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def details(config: configuration.ServiceConfig, obs: Observation) -> list[str]:
    machine, now, lines = obs.machine, time.time(), []
    if obs.supervisor:
        lines.append(f"supervisor: pid {obs.supervisor.pid}")
    if obs.service:
        started = machine.get("started_at")
        up = f", up {ago(now - started)}" if started else ""
        lines.append(f"service:    pid {obs.service.pid}{up}")
    if config.ready:
        ready = "ready" if machine.get("ready_at") and obs.service else "not ready"
        lines.append(f"readiness:  {ready} ({config.ready})")
    if machine.get("restarts"):
        lines.append(f"restarts:   {machine['restarts']}")
    if machine.get("last_exit"):
        lines.append(f"last exit:  {machine['last_exit']}" + (f", {ago(now - machine['last_exit_at'])} ago"
                                                             if machine.get("last_exit_at") else ""))
    if machine.get("gave_up_reason"):
        lines.append(f"gave up:    {machine['gave_up_reason']}")
    if machine.get("next_retry_at") and machine.get("state") in ("backoff", "gave-up"):
        lines.append(f"next retry: in {ago(machine['next_retry_at'] - now)}")
    if machine.get("rejected"):
        reason, at = machine["rejected"]
        lines.append(f"config rejected: {reason} (at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))})")
    if machine.get("degraded_at"):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(machine["degraded_at"]))
        lines.append(f"degraded: running last known good config from {stamp}")
    if machine.get("stop_failed"):
        lines.append(f"stop failed: {machine['stop_failed']}")
    return lines


def status(context, args: list[str]) -> int:
    if not args or args[0].startswith("-"):
        raise SvctlError("usage: svctl status NAME [--json]", 2)
    name, options = args[0], args[1:]
    validate_name(name)
    from supervisor.unix import rundir

    state_read = rundir.read_state(rundir.service_dir(context.run_dir, name))
    config = configuration.load(name, context.config_dir, state=state_read[0])
    obs = observe(config, context.run_dir, state_read)
    code, headline, warnings = decide(obs)
    output = tail(config.log_file, 10)
    if "--json" in options:
        print(json.dumps({
            "name": name, "code": code, "status": headline, "warnings": warnings,
            "pidfile": {"path": config.pidfile, "kind": obs.pidfile.kind, "pid": obs.pidfile.pid,
                        "reason": obs.pidfile.reason},
            "supervisor_pid": obs.supervisor.pid if obs.supervisor else None,
            "service_pid": obs.service.pid if obs.service else None,
            "machine": obs.machine, "log_file": config.log_file, "output": output,
        }, indent=2))
        return code
    pid = f" (pid {obs.service.pid}" if obs.service else ""
    if pid and obs.machine.get("started_at"):
        pid += f", up {ago(time.time() - obs.machine['started_at'])}"
    print(f"{name} {headline}{pid + ')' if pid else ''}")
    for line in details(config, obs):
        print(f"  {line}")
    for warning in warnings:
        print(f"  warning: {warning}")
    if output and code != Status.NOT_RUNNING:
        print(f"  last output ({config.log_file}):")
        for line in output:
            print(f"    {line}")
    return code


def logs(context, args: list[str]) -> int:
    if not args or args[0].startswith("-"):
        raise SvctlError("usage: svctl logs NAME [-f] [-n LINES]", 2)
    config = configuration.load(args[0], context.config_dir)
    count = int(args[args.index("-n") + 1]) if "-n" in args else 50
    for line in tail(config.log_file, count):
        print(line)
    if "-f" in args:
        import os

        with open(config.log_file, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                data = handle.read()
                if data:
                    sys.stdout.write(data.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)  # a human is watching; a 5 Hz check costs nothing
    return 0
