"""Import budgets of the hot paths: what `status`, `stop`, `start` and a running supervisor may load.

Each path runs for real (`python -X importtime`, the CLI's own entry point, a real service) and
the modules it imported are read from the interpreter's own report. A change that pulls asyncio,
psutil or even `re` onto a hot path fails here, with the module and who imported it, instead of in
a benchmark (docs/architecture.md, "Import budgets", has the figures behind each line).

- HEAVY: never on any hot path (each costs 1-12 MB and 5-90 ms; most on every start).
- Per path: the stdlib it may not load, and every supervisor module it may load.
The steady state is a foreground supervisor (`svctl run`, what `start` detaches) with a watched
file and a readiness probe, through a config edit (validated reload) and a crash (respawn).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


from conftest import PYTHON, REPO, needs_root, poll_until

HEAVY = {"asyncio", "structlog", "psutil", "watchdog", "ssl", "_ssl", "hashlib", "_hashlib", "dataclasses",
         "inspect", "ast", "typing", "argparse", "logging", "pathlib", "tempfile", "shutil", "urllib.request",
         "email", "http", "uuid", "lockfile", "pickle", "datetime", "tomllib"}
# status and stop are run by monitoring and init scripts: not even the regex engine or the JSON module
LEAN = {"re", "enum", "json", "subprocess", "threading", "selectors", "daemon", "ctypes", "socket", "signal"}

COMMON = {"supervisor", "supervisor.cli", "supervisor.errors", "supervisor.names", "supervisor.commands",
          "supervisor.config", "supervisor.config_values", "supervisor.settings", "supervisor.presets",
          "supervisor.core", "supervisor.core.record", "supervisor.core.schedule", "supervisor.core.signals",
          "supervisor.jsontext",
          "supervisor.unix", "supervisor.unix.trust", "supervisor.unix.trustchain", "supervisor.unix.safefs",
          "supervisor.unix.rundir", "supervisor.unix.identity", "supervisor.unix.pidfile", "supervisor.observe"}
STATUS = COMMON | {"supervisor.commands.status", "supervisor.unix.logcapture"}
STOP = COMMON | {"supervisor.commands.lifecycle", "supervisor.commands.cascade", "supervisor.commands.stop",
               "supervisor.depgraph", "supervisor.unix.control"}
START = STOP | {"supervisor.launch", "supervisor.core.record", "supervisor.core.events", "supervisor.unix.spawn",
                "supervisor.unix.envfile", "supervisor.core.envfile", "supervisor.unix.apart"}
RUNNING = START | {
    "supervisor.runtime", "supervisor.driver", "supervisor.loop", "supervisor.clients", "supervisor.adoption",
    "supervisor.faults", "supervisor.log", "supervisor.presets.base", "supervisor.reloader",
    "supervisor.core.backoff", "supervisor.core.deadline", "supervisor.core.debounce", "supervisor.core.liveness",
    "supervisor.core.machine", "supervisor.core.reloads", "supervisor.core.states", "supervisor.unix.asuser",
    "supervisor.unix.escapees", "supervisor.unix.health", "supervisor.unix.hooks", "supervisor.unix.inotify",
    "supervisor.unix.logcapture", "supervisor.unix.probe", "supervisor.unix.proc", "supervisor.unix.snapshots",
    "supervisor.unix.statefile", "supervisor.unix.userfiles", "supervisor.unix.validate", "supervisor.unix.watch"}

pytestmark = needs_root()


def imported(stderr: str) -> dict[str, str]:
    """Module -> the module whose import loaded it, from -X importtime's indented report."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "imported package" in line:
            continue
        field = line.rsplit("|", 1)[1]
        depth, name = len(field) - len(field.lstrip(" ")), field.strip()
        # the report lists a module after the modules it imported, indented deeper than it
        while stack and stack[-1][0] > depth:
            parents[stack.pop()[1]] = name
        stack.append((depth, name))
    for _, name in stack:
        parents.setdefault(name, "(top level)")
    return parents


def cli(sandbox, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    code = "import sys; from supervisor.cli import main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run([PYTHON, "-X", "importtime", "-c", code, "--config-dir", str(sandbox.etc),
                           "--run-dir", str(sandbox.run / "svctl"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def check_budget(path: str, loaded: dict[str, str], allowed_own: set[str], forbidden: set[str]) -> None:
    own = {m for m in loaded if m == "supervisor" or m.startswith("supervisor.")}
    extra = sorted(f"{m} (imported by {loaded[m]})" for m in own - allowed_own)
    bad = sorted(f"{m} (imported by {loaded[m]})" for m in loaded
                 if m in forbidden or m.split(".")[0] in forbidden)
    assert not bad, f"{path} loads what its budget forbids: {bad}"
    assert not extra, f"{path} loads supervisor modules outside its budget (add them here only with figures): {extra}"


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


def test_start_status_stop_stay_in_their_budgets(sandbox):
    sandbox.service("svc", command=["/bin/sleep", "60"], start_seconds=0)
    first = cli(sandbox, "start", "svc")
    assert first.returncode == 0, first.stderr[-2000:]
    try:
        # the first start parses the TOML file; a later one reads the supervisor's record of it
        start_loaded = imported(first.stderr)
        check_budget("start", start_loaded, START, HEAVY - {"tomllib", "typing", "datetime"})
        status = cli(sandbox, "status", "svc")
        assert status.returncode == 0, status.stderr[-2000:]
        check_budget("status", imported(status.stderr), STATUS, HEAVY | LEAN)
        stop = cli(sandbox, "stop", "svc")
        assert stop.returncode == 0, stop.stderr[-2000:]
        check_budget("stop", imported(stop.stderr), STOP, HEAVY | (LEAN - {"socket", "signal", "enum"}))
        again = cli(sandbox, "start", "svc")
        assert again.returncode == 0, again.stderr[-2000:]
        check_budget("start (file unchanged)", imported(again.stderr), START, HEAVY)
    finally:
        cli(sandbox, "stop", "svc")


def test_a_running_supervisor_stays_in_its_budget(sandbox, tmp_path):
    port = free_port()
    watched = sandbox.base / "app.conf"
    watched.write_text("one\n")
    listener = ("import socket, sys, time; s = socket.socket(socket.AF_INET6); "
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                f"s.bind(('::1', {port})); s.listen(); time.sleep(60)")
    sandbox.service("hot", command=[PYTHON, "-c", listener], ready=f"tcp://[::1]:{port}", ready_timeout=10,
                    watch=[str(watched)], stop="TERM/1/KILL/1")
    code = "import sys; from supervisor.cli import main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    log = open(tmp_path / "importtime.txt", "w+")
    run = subprocess.Popen([PYTHON, "-X", "importtime", "-c", code, "--config-dir", str(sandbox.etc),
                            "--run-dir", str(sandbox.run / "svctl"), "run", "hot"],
                           stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env=env)
    try:
        poll_until(lambda: sandbox.state("hot").get("machine", {}).get("ready_at"), 15, "ready")
        first = sandbox.service_pid("hot")
        watched.write_text("two\n")  # a validated reload: the new service is started and probed
        poll_until(lambda: sandbox.service_pid("hot") not in (None, first)
                   and sandbox.state("hot").get("machine", {}).get("state") == "running", 15, "reloaded")
        second = sandbox.service_pid("hot")
        os.kill(second, signal.SIGKILL)  # a crash: the respawn path
        poll_until(lambda: sandbox.service_pid("hot") not in (None, second)
                   and sandbox.state("hot").get("machine", {}).get("state") == "running", 15, "respawned")
        time.sleep(0.3)
        run.send_signal(signal.SIGTERM)
        assert run.wait(10) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        pid = sandbox.service_pid("hot")
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log.seek(0)
    loaded = imported(log.read())
    assert "supervisor.runtime" in loaded, "the report holds the supervisor's imports"
    check_budget("the running supervisor", loaded, RUNNING,
                 (HEAVY - {"tomllib", "typing", "datetime"}) | {"daemon"})
    print(f"{len(loaded)} modules", file=sys.stderr)
