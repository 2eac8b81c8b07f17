"""``svctl status`` without NAME, and ``svctl list``: every service defined in the config directory
at a glance, one line each (``supervisorctl status``), or a JSON list with ``--json``.

Each service is judged exactly as ``svctl status NAME`` judges it (status.decide on observe.observe,
the state.json fast path that skips the TOML parser for an unchanged file), so the table and the
single-service verdict never disagree. One service's broken file, hostile state.json or unreadable
PID file is that service's line, never the end of the table. Exit codes: 0 every service running,
3 none (also when none is defined, or the config directory does not exist), 1 otherwise; 4 when
the config directory can't be listed. A run directory whose supervisor is alive but whose NAME.toml
is gone is listed too (running on its recorded definition). Graph errors (`requires` naming no
file, cycles) are warnings in the affected rows, from the definitions already loaded: no parsing.
"""

from __future__ import annotations

import json
import os
import sys
import time

from supervisor import config as configuration
from supervisor.commands.status import (ago, count, decide, health_of, moment, rejection,
                                        running_definition)
from supervisor.errors import Status, SvctlError, printable
from supervisor.names import validate_name
from supervisor.observe import observe
from supervisor.unix import rundir

SUFFIX = ".toml"
# the last column's parts and all of it are cut to these: the whole is in --json and `status NAME`
PART_WIDTH, LAST_WIDTH = 120, 240
UNTRUSTED = "refusing this service definition, root would run what it says: "
GRAPH_WARNING = "requires"  # how add_graph_warnings' warnings begin
COLUMNS = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST")


def list_all(context, args: list[str]) -> int:
    """``svctl list [--json]``."""
    from supervisor.cli import options_for

    return status_all(context, options_for(context, "list", args))


def status_all(context, options) -> int:
    if options.value("--lines") is not None:
        from supervisor.cli import bad_args

        raise bad_args("status", "--lines shows one service's output: give its NAME")
    now = time.time()
    names = defined(context.config_dir)
    graph: dict[str, tuple[str, ...]] = {}  # name -> its requires, from the definitions loaded anyway
    rows = [survey(name, context, now, graph) for name in names]
    rows += [survey(name, context, now, graph, state_read)
             for name, state_read in running_without_file(context.run_dir, set(names))]
    rows.sort(key=lambda row: row["name"])
    add_graph_warnings(rows, graph, set(names))
    if options.flag("--json"):
        text = json.dumps(rows, indent=2)
    elif rows:
        text = table(rows)
    else:
        text = None
    if not rows:  # (a running service without its file is a row: then the table says enough)
        why = "does not exist" if not os.path.lexists(context.config_dir) else f"has no NAME{SUFFIX}"
        print(f"svctl: no services defined: the config directory {context.config_dir} {why}", file=sys.stderr)
    if text is not None:
        try:
            print(text)
        except BrokenPipeError:  # `svctl status | head -3`: the exit code still tells
            from supervisor.cli import silence_stdout

            silence_stdout()
    running = sum(row["code"] == Status.RUNNING for row in rows)
    if rows and running == len(rows):
        return Status.RUNNING
    return Status.NOT_RUNNING if running == 0 else Status.DEAD_WITH_PIDFILE


def defined(config_dir: str) -> list[str]:
    """The NAME of every NAME.toml in CONFIG_DIR, sorted (hidden files skipped: editors' leftovers).
    Which of them can be trusted is each service's own question (config.load walks its path)."""
    try:
        entries = os.listdir(config_dir)
    except FileNotFoundError:
        return []
    except PermissionError:
        raise SvctlError(f"cannot list {config_dir}: permission denied (run it as root)", Status.UNKNOWN) from None
    except OSError as exc:
        raise SvctlError(f"cannot list {config_dir}: {exc.strerror or exc}", Status.UNKNOWN) from None
    return sorted(entry[:-len(SUFFIX)] for entry in entries
                  if entry.endswith(SUFFIX) and len(entry) > len(SUFFIX) and not entry.startswith("."))


def running_without_file(run_dir: str, names: set[str]) -> list[tuple[str, tuple]]:
    """(name, state read) of each run directory without a NAME.toml whose supervisor is alive
    and verified: a service whose file was removed still runs, and is listed."""
    from supervisor.observe import recorded
    from supervisor.unix.identity import verify

    try:
        entries = os.listdir(run_dir)
    except OSError:
        return []
    found = []
    for entry in sorted(entries):
        if entry in names or entry.startswith("."):
            continue
        try:
            validate_name(entry)
        except SvctlError:
            continue
        state_read = rundir.read_state(rundir.service_dir(run_dir, entry))
        if state_read[0] is not None and verify(recorded(state_read[0], "supervisor"), allow_init=True):
            found.append((entry, state_read))
    return found


def add_graph_warnings(rows: list[dict], graph: dict[str, tuple[str, ...]], names: set[str]) -> None:
    """A warning in the row of each service whose `requires` names a service without a file, or
    one whose definition can't be used, or is on a dependency cycle (what start would refuse)."""
    from supervisor.depgraph import cycle_text, find_cycle

    by_name = {row["name"]: row for row in rows}
    for name, requires in graph.items():
        for needed in requires:
            if needed not in names:
                by_name[name]["warnings"].append(f"requires {needed}, which has no service file")
            elif needed not in graph and by_name.get(needed, {}).get("state") in ("invalid", "untrusted"):
                by_name[name]["warnings"].append(f"requires {needed}, whose definition can't be used")
            elif by_name[name]["code"] == Status.RUNNING and by_name.get(needed, {}).get("code") != Status.RUNNING:
                by_name[name]["warnings"].append(f"requires {needed}, which is not running")
    edges = dict(graph)
    while cycle := find_cycle(edges):
        for member in cycle[:-1]:
            by_name[member]["warnings"].append(f"requires: a dependency cycle: {cycle_text(cycle)}")
        edges = {name: tuple(needed for needed in requires if needed not in cycle)
                 for name, requires in edges.items() if name not in cycle}


def survey(name: str, context, now: float, graph: dict | None = None, state_read: tuple | None = None) -> dict:
    """One service's row; whatever goes wrong stays in this row. GRAPH gets its `requires`."""
    try:
        return observed(validate_name(name), context, now, graph if graph is not None else {}, state_read)
    except SvctlError as exc:
        return unusable(name, exc)
    except Exception as exc:  # noqa: BLE001 - a bug or a surprise in one service must not hide the others
        return unusable(name, SvctlError(f"cannot be observed: {type(exc).__name__}: {exc}", Status.UNKNOWN),
                        "unknown")


def observed(name: str, context, now: float, graph: dict, state_read: tuple | None = None) -> dict:
    state_read = state_read or rundir.read_state(rundir.service_dir(context.run_dir, name))
    broken = None
    try:
        config = configuration.load(name, context.config_dir, state=state_read[0], for_display=True)
    except SvctlError as exc:  # a running service whose file was since broken is still running
        config, broken = running_definition(name, state_read[0], exc), exc
    if config.requires:
        graph[name] = config.requires
    obs = observe(config, context.run_dir, state_read)
    code, headline, warnings = decide(obs)
    machine = obs.machine
    started = moment(machine, "started_at") if obs.service else None
    exited = moment(machine, "last_exit_at")
    last_exit = machine.get("last_exit")
    gave_up = machine.get("gave_up_reason")
    rejected = rejection(obs)
    row = {
        "name": name, "code": code, "state": state_word(obs, code), "status": headline,
        "service_pid": obs.service.pid if obs.service else None,
        "supervisor_pid": obs.supervisor.pid if obs.supervisor else None,
        "started_at": started, "uptime_seconds": round(now - started, 3) if started else None,
        "restarts": count(machine.get("restarts")),
        "ready": (bool(machine.get("ready_at")) and obs.service is not None) if config.ready else None,
        "health": health_of(machine) if obs.service else None,  # (a stopped service's verdict is history)
        "last_exit": printable(last_exit) if isinstance(last_exit, str) and last_exit else None,
        "last_exit_at": exited,
        "gave_up_reason": printable(gave_up) if isinstance(gave_up, str) and gave_up else None,
        "rejected": {"reason": printable(rejected[0]), "at": rejected[1]} if rejected else None,
        "error": None, "warnings": warnings,
    }
    if code == Status.UNKNOWN:
        row["error"] = printable(headline.removeprefix("status unknown: "))
    if broken is not None and not os.path.lexists(configuration.service_path(name, context.config_dir)):
        row["error"] = "no service file: running on its recorded definition"
    elif broken is not None:
        row["error"] = f"the service file is invalid, running on its last definition: {short(broken)}"
    if obs.state_problem and row["error"] is None:  # a damaged state.json: who runs is unknown
        row["error"] = printable(obs.state_problem)
    return row


def state_word(obs, code: int) -> str:
    if code == Status.UNKNOWN:
        return "unknown"
    if obs.supervised:
        state = obs.machine.get("state")
        return state if state in ("stopped", "starting", "running", "stopping", "backoff", "exited",
                                  "gave-up") else "unknown"
    if obs.orphaned:
        return "unsupervised"
    return "dead" if code == Status.DEAD_WITH_PIDFILE else "stopped"  # dead: a stale PID file


def unusable(name: str, error: SvctlError, state: str | None = None) -> dict:
    """The row of a service whose definition can't be used (invalid, untrusted, unreadable), or
    whose observation failed: not running, with the one reason. Its code is what `svctl status
    NAME` exits with (6 for a definition that can't be used)."""
    message, reason = str(error), short(error)
    if state is not None:
        pass
    elif UNTRUSTED in message:
        state = "untrusted"
    elif error.code == Status.UNKNOWN and "another PID namespace" in message:
        state = "unknown"
    elif "Permission denied" in message:  # (a caller other than root, and a 0600 file)
        state = "unknown"
        reason += "" if os.geteuid() == 0 else " (run it as root)"
    else:
        state = "invalid"
    return {
        "name": printable(name), "code": error.code, "state": state, "status": printable(message),
        "service_pid": None, "supervisor_pid": None, "started_at": None, "uptime_seconds": None,
        "restarts": None, "ready": None, "health": None, "last_exit": None, "last_exit_at": None,
        "gave_up_reason": None, "rejected": None, "error": reason, "warnings": [],
    }


def short(error: SvctlError) -> str:
    """The reason without the file's path in front (the line already names the service)."""
    text = printable(str(error).split("\n", 1)[0])
    path, colon, reason = text.partition(": ")
    if colon and path.endswith(SUFFIX):
        text = reason
    return text.removeprefix(UNTRUSTED)


def table(rows: list[dict]) -> str:
    now = time.time()
    cells = [COLUMNS] + [line(row, now) for row in rows]
    widths = [max(len(cell[column]) for cell in cells) for column in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([*(cell[i].ljust(widths[i]) for i in range(len(widths))), cell[-1]]).rstrip()
                     for cell in cells)


def line(row: dict, now: float) -> tuple[str, ...]:
    health = []
    if row["ready"] is not None:
        health.append("ready" if row["ready"] else "not ready")
    if row["health"]:
        checked = row["health"]
        failing = checked["state"] == "failing" and checked["failures"]
        health.append(checked["state"] + (f" {checked['failures']}x" if failing else ""))
    return (row["name"], row["state"], str(row["service_pid"] or "-"),
            ago(row["uptime_seconds"]) if row["uptime_seconds"] is not None else "-",
            "-" if row["restarts"] is None else str(row["restarts"]),
            ", ".join(health) or "-", cut(last(row, now)))


def last(row: dict, now: float) -> str:
    """The last column: what went wrong most recently, most telling first."""
    said = [cut(row["error"])] if row["error"] else []  # (why a service can't be used: the fix matters)
    said += [cut(f"warning: {warning}", PART_WIDTH) for warning in row["warnings"]
             if warning.startswith(GRAPH_WARNING)]  # (what `start` would refuse: shown in the table)
    if row["rejected"]:
        said.append(cut(f"config rejected: {row['rejected']['reason']}", PART_WIDTH))
    if row["gave_up_reason"] and row["state"] == "gave-up":
        said.append(cut(f"gave up: {row['gave_up_reason']}", PART_WIDTH))
    if row["health"] and row["health"]["state"] == "failing" and row["health"]["last_failure"]:
        said.append(cut(f"health: {row['health']['last_failure']}", PART_WIDTH))
    if row["last_exit"]:
        at = row["last_exit_at"]
        said.append(cut(f"exit: {row['last_exit']}", PART_WIDTH) + (f", {ago(now - at)} ago" if at else ""))
    return "; ".join(said) or "-"


def cut(text: str, width: int = LAST_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
