"""Nothing left behind (issue 13 item 7): helpers a service daemonized with `setsid` (they leave its
process group) are stopped with it and before each respawn; the jupyterhub preset keeps them
(users' servers) unless the stop is `stop-all` (svctl stop --stop-user-servers)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import IS_ROOT, alive, poll_until
from supervisor.unix import control
from supervisor.unix.escapees import Leftovers, children_of

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


def recorded(path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


@pytest.fixture
def escapees():
    """PIDs a test learns of; whatever is still alive at the end is killed (by PID)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def escaping_service(helpers, then: str) -> list[str]:
    """A shell that daemonizes `sleep 300` into its own session, records its PID, then THEN."""
    return ["/bin/sh", "-c", f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {helpers}; {then}"]


def test_a_setsid_escapee_is_stopped_with_the_service(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    sandbox.service("demo", command=escaping_service(helpers, "exec sleep 1000"))
    assert sandbox.cli("start", "demo").returncode == 0
    escapees += poll_until(lambda: recorded(helpers), what="the helper's PID")
    helper = escapees[0]
    assert alive(helper) and os.getsid(helper) == helper  # really out of the service's group
    result = sandbox.cli("stop", "demo")
    assert result.returncode == 0, result.stderr
    assert not alive(helper)
    assert not alive(sandbox.supervisor_pid())


def test_an_escapee_that_ignores_sigterm_gets_the_rest_of_the_schedule(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    stubborn = "setsid sh -c 'trap \"\" TERM; echo $$ >> {0}; while :; do sleep 0.1; done' </dev/null >/dev/null 2>&1 &"
    sandbox.service("demo", command=["/bin/sh", "-c", stubborn.format(helpers) + " exec sleep 1000"])
    assert sandbox.cli("start", "demo").returncode == 0
    escapees += poll_until(lambda: recorded(helpers), what="the helper's PID")
    result = sandbox.cli("stop", "demo")
    assert result.returncode == 0, result.stderr
    assert not alive(escapees[0])
    reaped = [e for e in sandbox.events() if e["event"] == "reaped" and e["pid"] == escapees[0]]
    assert reaped and reaped[0]["status"] == "killed by SIGKILL"


def test_crash_restarts_never_pile_up_escapees(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    sandbox.service("demo", command=escaping_service(helpers, "sleep 0.3; exit 1"), restart="always",
                    min_uptime=0, give_up_after=0, backoff_initial=0.05, backoff_max=0.05, start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    for count in range(1, 6):
        poll_until(lambda n=count: len(recorded(helpers)) >= n, timeout=10, what=f"start #{count}")
        escapees[:] = recorded(helpers)
        assert sum(alive(pid) for pid in escapees) <= 1, [pid for pid in escapees if alive(pid)]
    assert sandbox.cli("stop", "demo").returncode == 0
    escapees[:] = recorded(helpers)
    assert not any(alive(pid) for pid in escapees)


def hub_service(sandbox, helpers):
    hub_config = sandbox.base / "jupyterhub_config.py"
    hub_config.write_text("c = get_config()  # noqa\n")
    command = escaping_service(helpers, "exec sleep 1000")
    sandbox.service("hub", command=[*command, "-f", str(hub_config)], preset="jupyterhub",
                    working_directory=str(sandbox.base))


def test_jupyterhub_users_servers_survive_a_plain_stop(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    hub_service(sandbox, helpers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(helpers), what="the user server's PID")
    assert sandbox.cli("stop", "hub").returncode == 0
    assert alive(escapees[0])  # killed by the fixture


def test_jupyterhub_stop_all_takes_the_users_servers_too(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    hub_service(sandbox, helpers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(helpers), what="the user server's PID")
    socket_path = str(sandbox.run / "svctl" / "hub" / "control.sock")
    code, message = control.request(socket_path, "stop-all", sandbox.supervisor_pid("hub"), 30)
    assert (code, message) == (0, "stopped")
    assert not alive(escapees[0])
    assert any(e["event"] == "stop_all_requested" for e in sandbox.events("hub"))


def test_svctl_stop_with_stop_user_servers_takes_them(sandbox, escapees):
    helpers = sandbox.base / "helpers"
    hub_service(sandbox, helpers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(helpers), what="the user server's PID")
    result = sandbox.cli("stop", "hub", "--stop-user-servers")
    assert result.returncode == 0, result.stderr
    assert not alive(escapees[0])


def test_the_jupyterhub_rule_at_the_unit_level(escapees):
    """Leftovers sees our own children: the preset hides them until take_all (stop-all)."""
    before = set(children_of(os.getpid()))

    def others():  # whatever else this test process has is no escapee
        return before

    plain, hub = Leftovers("", others), Leftovers("jupyterhub", others)  # made before the "service" runs
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    escapees.append(server.pid)
    try:
        assert server.pid in plain.escapees()
        assert hub.escapees() == [] and not hub.alive(None)
        hub.take_all = True
        assert hub.escapees() == [server.pid] and hub.alive(None)
        hub.signal(signal.SIGTERM)
        assert server.wait(5) == -signal.SIGTERM
        assert not hub.alive(None)
        # a child we had before the supervisor's first spawn is nobody's leftover
        late = Leftovers("", others)
        newcomer = subprocess.Popen(["sleep", "300"], start_new_session=True)
        escapees.append(newcomer.pid)
        assert newcomer.pid in late.escapees() and newcomer.pid not in Leftovers("", others).escapees()
        newcomer.kill()
        newcomer.wait()
    finally:
        if server.returncode is None:
            server.kill()
            server.wait()
