"""The dependency cascade of the lifecycle verbs (`requires = [...]`): start what a service
requires first, stop what requires it first, check the whole graph before a restart touches
anything, and make `run` wait for its requirements.

The graph itself (loading, cycles, orders) is supervisor/depgraph.py; this module only drives the
verbs of lifecycle.py over it. A start or restart refuses a broken graph (exit 6, nothing done);
a stop reports a cycle as a warning and goes ahead: stopping must always be possible.
"""

from __future__ import annotations

import sys
import time

from supervisor import config as configuration
from supervisor.config import ServiceConfig
from supervisor.errors import ConfigError, Exit, SvctlError, printable
from supervisor.observe import Observation, observe


def say(config: ServiceConfig, message: str) -> None:
    print(f"{config.name}: {message}")


def warner(config: ServiceConfig):
    def warn(message: str) -> None:
        print(f"svctl: {config.name}: warning: {message}", file=sys.stderr)

    return warn


def running_and_up(obs: Observation) -> bool:
    """A verified supervisor whose service is running and meant to stay up."""
    return obs.supervised and obs.machine.get("state") == "running" and obs.machine.get("goal") != "down"


def is_running(obs: Observation) -> bool:
    """Its supervisor runs (a per-service daemon lives as long as its service), or the service runs
    unsupervised; under `svctl up`, whose members stay after a stop, what state.json says."""
    if obs.supervised and obs.under_up:
        return obs.machine.get("state") not in ("stopped", None)
    return obs.supervised or obs.orphaned


def start_requirements(config: ServiceConfig, context, order: list[ServiceConfig] | None = None) -> int:
    """Start what CONFIG requires (recursively, requirements first), each until it is started
    (ready, when it has `ready`). A requirement that fails stops the chain: its exit code.
    ORDER: the requirements already loaded (check_restart), else they are loaded here."""
    from supervisor.commands.lifecycle import require_privilege, start_service

    if not config.requires:
        return Exit.OK
    if order is None:
        from supervisor import depgraph

        order = depgraph.requirements(config.name, context.config_dir)[:-1]
    for needed in order:
        require_privilege(needed, context.run_dir, "start")
        configuration.ensure_paths_exist(needed)
    for needed in order:
        if running_and_up(observe(needed, context.run_dir)):
            continue
        say(config, f"starting {needed.name} first (required)")
        code = start_service(needed, context.run_dir)
        if code != Exit.OK:
            print(f"svctl: {config.name}: not started: its requirement {needed.name} failed to start "
                  f"(exit {code})", file=sys.stderr)
            return code
    return Exit.OK


def find_dependents(config: ServiceConfig, context, strict: bool,
                    from_records: set[str] | None = None) -> list[ServiceConfig]:
    """The services that require CONFIG (directly or not), in stop order. STRICT (restart): a
    cycle is a ConfigError; otherwise (stop) a warning line, and the dependents found are used.
    A running dependent whose file is since broken or gone counts with the definition its
    supervisor recorded (its name added to FROM_RECORDS): it must not keep running without its
    requirement. STRICT refuses (exit 6) a running candidate with neither file nor record."""
    from supervisor import depgraph

    warn = warner(config)

    def fallback(candidate: str, error: SvctlError) -> ServiceConfig | None:
        from supervisor.commands.status import running_definition
        from supervisor.unix import rundir

        state, _ = rundir.read_state(rundir.service_dir(context.run_dir, candidate))
        try:
            recorded_config = running_definition(candidate, state, error)
        except SvctlError:
            if strict and runs(state):
                raise SvctlError(f"{config.name}: not restarted: cannot tell whether {candidate}, which is "
                                 f"running, requires it: {printable(str(error))}", Exit.NOT_CONFIGURED) from None
            return None
        warn(f"{candidate}: using the definition it runs with: {printable(str(error))}")
        if from_records is not None:
            from_records.add(candidate)
        return recorded_config

    return depgraph.dependents(config.name, context.config_dir, warn=warn, requires=config.requires,
                               on_cycle=None if strict else warn, fallback=fallback)


def runs(state: dict | None) -> bool:
    """A supervisor or service that state.json recorded is alive (no definition needed to tell)."""
    from supervisor.observe import recorded
    from supervisor.unix.identity import verify

    return any(verify(recorded(state or {}, key), allow_init=key == "supervisor") for key in ("supervisor", "service"))


def stop_dependents(config: ServiceConfig, context, command: str = "stop",
                    found: list[ServiceConfig] | None = None) -> tuple[int, list[ServiceConfig]]:
    """Stop, dependents first, the running services that require CONFIG (directly or not).
    Returns (exit code, the services stopped, in stop order); a dependent that does not stop
    leaves CONFIG running (its exit code, with a line naming it). FOUND: already looked up."""
    from supervisor import depgraph
    from supervisor.commands.lifecycle import require_privilege, stop_service

    if found is None:
        found = find_dependents(config, context, strict=False)
    among = {config.name} | {dependent.name for dependent in found}
    stopped = []
    for dependent in found:
        if not is_running(observe(dependent, context.run_dir)):
            continue
        require_privilege(dependent, context.run_dir, "stop")
        say(config, f"stopping {dependent.name} first (requires {depgraph.direct_requirement(dependent, among)})")
        code = stop_service(dependent, context.run_dir, command)
        if code != Exit.OK:
            print(f"svctl: {config.name}: not stopped: {dependent.name}, which requires it, did not stop "
                  f"(exit {code})", file=sys.stderr)
            return code, stopped
        stopped.append(dependent)
    return Exit.OK, stopped


def check_restart(config: ServiceConfig, context) -> tuple[list[ServiceConfig], list[ServiceConfig], set[str]]:
    """Everything a restart of CONFIG will need, checked before anything is stopped: its
    requirements (unknown names, cycles), its dependents (a cycle through it, too) and each
    running dependent's own requirements (it is started again). Returns (the requirements in
    start order, the dependents in stop order, the names of those found only by the definition
    their supervisor recorded: their file is broken); a broken graph is a ConfigError (exit 6)."""
    from supervisor import depgraph

    order = depgraph.requirements(config.name, context.config_dir)[:-1] if config.requires else []
    from_records: set[str] = set()
    found = find_dependents(config, context, strict=True, from_records=from_records)
    for dependent in found:
        if dependent.name in from_records:
            # it runs on a definition whose file is now broken: stopped, it could not be started
            # again (nothing starts from a record), so the restart would lose it: refuse now
            try:
                configuration.load(dependent.name, context.config_dir)
            except SvctlError as exc:
                raise ConfigError(f"{config.name}: not restarted, nothing stopped: {dependent.name} requires it "
                                  f"and could not be started again: {printable(str(exc))} (fix that file, or "
                                  f"stop {dependent.name} first)") from None
        if dependent.requires and is_running(observe(dependent, context.run_dir)):
            depgraph.requirements(dependent.name, context.config_dir)
    return order, found, from_records


def start_again(config: ServiceConfig, dependent: ServiceConfig, context, from_records: set[str]) -> int:
    """Start a dependent that a restart of CONFIG stopped. One stopped with its recorded
    definition starts only from its file (nothing runs on a record): still broken, it stays
    stopped, exit 6 with the file's error."""
    from supervisor.commands.lifecycle import start_service

    if dependent.name in from_records:
        try:
            dependent = configuration.load(dependent.name, context.config_dir)
        except SvctlError as exc:
            print(f"svctl: {config.name}: {dependent.name} (requires it) left stopped: its service file "
                  f"can't be used: {printable(str(exc))}", file=sys.stderr)
            return Exit.NOT_CONFIGURED
    say(config, f"starting {dependent.name} again (requires {config.name})")
    return start_service(dependent, context.run_dir)


def wait_for_requirements(config: ServiceConfig, context) -> None:
    """`run` starts no requirement (under systemd, the unit's Requires=/After= do that), but does
    not start without them: one that a supervisor is bringing up is waited for (its own start
    budget plus 15 s); one that nobody is starting, or that does not come up, is exit 1."""
    if not config.requires:
        return
    from supervisor import depgraph

    for needed in depgraph.requirements(config.name, context.config_dir)[:-1]:
        budget = (needed.ready_timeout if needed.ready else needed.start_seconds) + 15
        deadline = time.monotonic() + budget
        said = False
        while not running_and_up(obs := observe(needed, context.run_dir)):
            if not obs.supervised or obs.machine.get("goal") == "down" or time.monotonic() > deadline:
                why = "is not running" if not obs.supervised else f"is {obs.machine.get('state', 'not running')}"
                raise SvctlError(f"{config.name}: not started: it requires {needed.name}, which {why} "
                                 f"(start it first, or use `svctl start {config.name}`)")
            if not said:
                say(config, f"waiting for {needed.name} (required) to be started")
                said = True
            time.sleep(0.05)
