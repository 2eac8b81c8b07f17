"""The LSB conformance matrix (README, "The LSB conformance matrix"), against real processes.

Scenarios S1-S10 (state before the action) x the seven actions; each cell sets up its scenario from
scratch, runs the real CLI, and checks the exit code and what happened to the processes and the
PID file. S7 runs the CLI as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, poll_until, processes_with

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the matrix runs supervisors as root and S7 "
                                                    "switches to nobody")

ACTIONS = ["start", "stop", "status", "restart", "reload", "force-reload", "bogus"]
SCENARIOS = ["S1", "S2", "S3", "S4", "S4n", "S5", "S5s", "S5e", "S6", "S7", "S7s", "S8", "S9", "S10"]

# expected exit code per (scenario, action); see the module docstring of §7.1 for the reasoning
EXPECTED = {
    "S1": dict(start=0, stop=0, status=3, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S2": dict(start=0, stop=0, status=0, restart=0, reload=0, **{"force-reload": 0}, bogus=3),
    "S3": dict(start=0, stop=0, status=1, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S4": dict(start=0, stop=0, status=1, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S4n": dict(start=0, stop=0, status=1, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S5": dict(start=0, stop=0, status=4, restart=0, reload=0, **{"force-reload": 0}, bogus=3),
    "S5s": dict(start=0, stop=0, status=4, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S5e": dict(start=0, stop=0, status=4, restart=0, reload=7, **{"force-reload": 0}, bogus=3),
    "S6": dict(start=0, stop=0, status=0, restart=0, reload=0, **{"force-reload": 0}, bogus=3),
    "S7": dict(start=4, stop=4, status=0, restart=4, reload=4, **{"force-reload": 4}, bogus=3),
    "S7s": dict(start=4, stop=4, status=3, restart=4, reload=4, **{"force-reload": 4}, bogus=3),
    "S8": dict(start=6, stop=0, status=3, restart=6, reload=7, **{"force-reload": 6}, bogus=3),
    "S9": dict(start=5, stop=0, status=3, restart=5, reload=5, **{"force-reload": 5}, bogus=3),
    "S10": dict(start=0, stop=0, status=4, restart=0, reload=0, **{"force-reload": 0}, bogus=3),
}


class Cell:
    """One scenario, set up for real."""

    def __init__(self, sandbox, scenario: str) -> None:
        self.box, self.scenario = sandbox, scenario
        self.tag = f"--tag={sandbox.base.name}"
        self.hup_log = sandbox.base / "hups"
        self.pidfile = sandbox.run / "demo.pid"
        self.unrelated: subprocess.Popen | None = None
        command = [PYTHON, SERVICE, "--hup-log", str(self.hup_log), self.tag]
        keys: dict = {"reload": "HUP"}
        if scenario == "S6":
            command.append("--ignore-term")
        if scenario == "S8":
            conf = str(sandbox.base / "missing.conf")
            command = [PYTHON, SERVICE, "--exit", "1", self.tag]
            keys["check"] = [PYTHON, "-c", f"import os, sys; sys.exit(0 if os.path.exists({conf!r}) "
                                           f"else 'missing config {conf}')"]
        if scenario == "S9":
            command = [str(sandbox.base / "not-installed"), self.tag]
        sandbox.service("demo", command=command, **keys)

    def setup(self) -> None:
        s = self.scenario
        if s in ("S2", "S5", "S6", "S7", "S10", "S3"):
            assert self.cli("start").returncode == 0
        if s == "S3":  # the supervisor is killed, then the service crashes: a stale PID file remains
            supervisor, service = self.box.supervisor_pid(), self.box.service_pid()
            os.kill(supervisor, signal.SIGKILL)
            poll_until(lambda: not alive(supervisor), what="supervisor gone")
            os.kill(service, signal.SIGKILL)
            poll_until(lambda: not alive(service), what="service gone")
        if s in ("S4", "S4n"):
            program = "/bin/sleep"
            if s == "S4n":  # an unrelated process whose name (comm) is the service's name
                program = str(self.box.base / "demo")
                shutil.copy("/bin/sleep", program)
            self.unrelated = subprocess.Popen([program, "1000"])
            self.pidfile.write_text(f"{self.unrelated.pid}\n")
        if s in ("S5", "S5s"):
            with open(self.pidfile, "r+" if s == "S5" else "w") as handle:  # in place: same inode
                handle.truncate(0)
                handle.write("garbage")
        if s == "S5e":
            self.pidfile.write_text("")
        if s == "S10":
            os.chmod(self.pidfile, 0o666)

    def cli(self, *args, user=None):
        return self.box.cli(*args, "demo", user=user) if args[0] != "bogus" else self.box.cli("bogus", "demo")

    def services(self) -> list[int]:
        return processes_with(self.tag)

    def hups(self) -> int:
        return len(self.hup_log.read_text().splitlines()) if self.hup_log.exists() else 0

    def cleanup(self) -> None:
        if self.unrelated is not None:
            self.unrelated.kill()
            self.unrelated.wait()


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_matrix_cell(sandbox, scenario, action):
    cell = Cell(sandbox, scenario)
    try:
        cell.setup()
        before_services, before_hups = cell.services(), cell.hups()
        before_supervisor = (sandbox.state().get("supervisor") or {}).get("pid")
        started = time.monotonic()
        result = cell.cli(action, user="nobody" if scenario in ("S7", "S7s") else None)
        elapsed = time.monotonic() - started
        expected = EXPECTED[scenario][action]
        assert result.returncode == expected, (
            f"{scenario} {action}: exit {result.returncode}, expected {expected}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}")
        check_effects(cell, scenario, action, result, before_services, before_hups, before_supervisor, elapsed)
    finally:
        cell.cleanup()


def check_effects(cell, scenario, action, result, before_services, before_hups, before_supervisor, elapsed):
    services = cell.services()
    if action == "bogus":
        assert "Usage:" in result.stderr and services == before_services
        return
    if result.stderr:
        assert "Traceback" not in result.stderr
    if cell.unrelated is not None:  # S4/S4n: the unrelated process is never signalled
        assert cell.unrelated.poll() is None, "the unrelated process was killed"
    if scenario in ("S7", "S7s"):
        assert services == before_services, "a non-root caller changed the service"
        if action != "status":
            assert "root" in result.stderr
        return
    if action == "reload":
        expected_hups = 1 if EXPECTED[scenario]["reload"] == 0 else 0
        poll_until(lambda: cell.hups() == before_hups + expected_hups, timeout=2, what="HUP count")
        time.sleep(0.05)
        assert cell.hups() == before_hups + expected_hups, "reload must send exactly one SIGHUP or none"
        assert services == before_services, "reload must not restart a HUP-reloading service"
    if action in ("start", "restart", "force-reload") and result.returncode == 0:
        assert len(services) == 1, f"exactly one service process expected, found {services}"
        assert alive(cell.box.supervisor_pid()), "the PID file must name the live supervisor"
        if action == "start" and scenario in ("S2", "S5", "S6", "S10"):
            assert services == before_services and cell.box.supervisor_pid() == before_supervisor, "no 2nd instance"
        if action == "restart" and before_services:
            assert services != before_services, "restart must run a new service process"
    if action in ("start", "restart", "force-reload") and result.returncode != 0:
        assert services == [] and not cell.pidfile.exists(), "a failed start leaves nothing behind"
        assert result.stderr.strip(), "a failed start says why"
    if action == "stop":
        assert services == [] and not cell.pidfile.exists()
        if scenario == "S6":
            assert 0.9 < elapsed < 3.5, f"TERM-ignoring service: KILL after the 1 s TERM timeout, took {elapsed}"
        if scenario == "S5":
            exits = [e for e in cell.box.events() if e["event"] == "exited"]
            assert exits and "SIGTERM" in exits[-1]["status"], "TERM first, never KILL only"
    if action == "status":
        assert result.stdout.startswith("demo "), result.stdout
