"""A service that execs (a wrapper becoming its daemon) is still the same process after its supervisor dies.

Issue 10 item 6: the identity recorded at spawn named the wrapper's executable (/bin/sh); after the
exec it was /usr/bin/sleep, the identity no longer matched, so once the supervisor was SIGKILLed
`svctl status` said 1 (stale PID file) and `svctl start` started a SECOND instance next to the one
still running. Identity is PID + start ticks + boot id; the executable is display only.
Issue 11 item 8: after the re-adoption the uptime must count from the service's real start.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, poll_until, processes_with
from supervisor.unix.identity import Identity, identify, verify

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


@pytest.fixture
def started_pids():
    """PIDs a test saw, with their identities: killed at teardown only if still the same process."""
    seen: list[Identity] = []
    yield seen
    for recorded in seen:
        if verify(recorded):
            os.kill(recorded.pid, signal.SIGKILL)


def wrapped(kind: str, marker: str) -> list[str]:
    """A wrapper that execs its daemon; MARKER makes the daemon's command line ours alone."""
    if kind == "sh-exec-sleep":  # the case, verbatim but for the unique duration
        return ["/bin/sh", "-c", f"exec /bin/sleep {marker}"]
    # some set-up first (as real wrappers do), so the shell is surely what the supervisor recorded
    return ["/bin/sh", "-c", f"sleep 0.3; exec {PYTHON} {SERVICE} --tag={marker}"]


def kill_the_supervisor(sandbox) -> None:
    """SIGKILL the supervisor named by the PID file, once we know it is ours (verified identity)."""
    supervisor = sandbox.supervisor_pid()
    recorded = Identity.from_dict(sandbox.state().get("supervisor"))
    assert recorded is not None and recorded.pid == supervisor and verify(recorded), "not our supervisor"
    os.kill(supervisor, signal.SIGKILL)
    poll_until(lambda: not alive(supervisor), what="the supervisor dead")


def start_after_exec(sandbox, seen: list, kind: str) -> tuple[int, str]:
    """Start the wrapped service; return (its PID, its unique marker) once it has exec'd its daemon."""
    marker = f"900.{secrets.randbelow(10**6):06d}"
    sandbox.service("demo", command=wrapped(kind, marker), restart="always", start_seconds=0.2)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    seen.append(Identity.from_dict(sandbox.state()["supervisor"]))
    service = sandbox.service_pid()
    seen.append(identify(service))
    daemon = "/usr/bin/sleep" if kind == "sh-exec-sleep" else os.path.realpath(PYTHON)
    poll_until(lambda: (identify(service) or Identity(0, 0, "", "")).exe == daemon, what=f"exec of {daemon}")
    if kind != "sh-exec-sleep":
        assert sandbox.state()["service"]["exe"] != daemon, "the supervisor must have recorded the wrapper"
    return service, marker


@pytest.mark.parametrize("kind", ["sh-exec-sleep", "sh-setup-then-exec-python"])
def test_a_service_that_execed_is_readopted_not_started_twice(sandbox, started_pids, kind):
    service, marker = start_after_exec(sandbox, started_pids, kind)
    assert processes_with(marker) == [service]
    kill_the_supervisor(sandbox)
    assert alive(service)

    status = sandbox.cli("status", "demo")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "(unsupervised)" in status.stdout and f"pid {service}" in status.stdout

    result = sandbox.cli("start", "demo")
    assert result.returncode == 0 and f"adopted the running service (pid {service})" in result.stdout
    started_pids.append(Identity.from_dict(sandbox.state()["supervisor"]))
    assert processes_with(marker) == [service], "exactly one instance, the one that was running"
    assert sandbox.service_pid() == service
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "is running" in status.stdout and "unsupervised" not in status.stdout
    assert f"supervisor: pid {sandbox.supervisor_pid()}" in status.stdout

    result = sandbox.cli("stop", "demo")
    assert result.returncode == 0, result.stderr
    assert not alive(service) and processes_with(marker) == []
    assert sandbox.cli("status", "demo").returncode == 3


def uptime_seconds(text: str) -> int:
    found = re.search(r"up (\d+) (s|min|h|d)\b", text)
    assert found, text
    return int(found[1]) * {"s": 1, "min": 60, "h": 3600, "d": 86400}[found[2]]


def test_uptime_after_readoption_counts_from_the_real_start(sandbox, started_pids):
    service, marker = start_after_exec(sandbox, started_pids, "sh-exec-sleep")
    time.sleep(2.2)
    kill_the_supervisor(sandbox)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0 and "adopted" in result.stdout
    started_pids.append(Identity.from_dict(sandbox.state()["supervisor"]))
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "unsupervised" not in status.stdout
    assert uptime_seconds(status.stdout) >= 2, status.stdout  # the old code said "up 0 s"
    assert sandbox.state()["machine"]["started_at"] <= time.time() - 2
    assert sandbox.cli("stop", "demo").returncode == 0
    assert not alive(service) and processes_with(marker) == []
