"""Nothing left behind (issue 13 item 7): helpers a service daemonized with `setsid` (they leave its
process group) are stopped with it and before each respawn; the jupyterhub preset keeps them
(users' servers, told by their JUPYTERHUB_* environment) unless the stop is `stop-all` (svctl stop
--stop-user-servers); a non-root service's escapees are only those running as its user."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, alive, poll_until
from supervisor.presets import Preset, preset_for
from supervisor.unix import control
from supervisor.unix.escapees import Leftovers, children_of

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


def real_uid(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/status").read().split("Uid:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


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


# what JupyterHub's Spawner.get_env sets for a user's server (a part of it)
SERVER_ENV = "env JUPYTERHUB_USER=alice JUPYTERHUB_API_TOKEN=t0ken JUPYTERHUB_SERVICE_PREFIX=/user/alice/"
# what Service.start sets for a managed service (its _ServiceSpawner's get_env adds JUPYTERHUB_USER=)
MANAGED_ENV = ("env JUPYTERHUB_SERVICE_NAME=idle-culler JUPYTERHUB_API_TOKEN=x JUPYTERHUB_USER= "
               "JUPYTERHUB_SERVICE_PREFIX=/services/idle-culler/")


def hub_command(servers, helpers=None, then: str = "exec sleep 1000") -> list[str]:
    """A fake hub: starts a fake user's server the way a spawner does (its own session, the
    JUPYTERHUB_* variables set), and with HELPERS also a setsid helper of its own (no such variables)."""
    script = f"{SERVER_ENV} setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {servers}; "
    if helpers is not None:
        script += f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {helpers}; "
    return ["/bin/sh", "-c", script + then]


def hub_service(sandbox, servers, helpers=None, then: str = "exec sleep 1000", **keys):
    hub_config = sandbox.base / "jupyterhub_config.py"
    hub_config.write_text("c = get_config()  # noqa\n")
    sandbox.service("hub", command=[*hub_command(servers, helpers, then), "-f", str(hub_config)],
                    preset="jupyterhub", working_directory=str(sandbox.base), **keys)


def test_jupyterhub_users_servers_survive_a_plain_stop_the_hubs_helpers_do_not(sandbox, escapees):
    servers, helpers = sandbox.base / "servers", sandbox.base / "helpers"
    hub_service(sandbox, servers, helpers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(servers), what="the user server's PID")
    escapees += poll_until(lambda: recorded(helpers), what="the hub helper's PID")
    server, helper = escapees
    assert sandbox.cli("stop", "hub").returncode == 0
    assert alive(server)  # killed by the fixture
    assert not alive(helper)


def test_jupyterhub_crash_restarts_pile_up_no_helpers_and_keep_the_servers(sandbox, escapees):
    servers, helpers = sandbox.base / "servers", sandbox.base / "helpers"
    hub_service(sandbox, servers, helpers, then="sleep 0.3; exit 1", restart="always", min_uptime=0,
                give_up_after=0, backoff_initial=0.05, backoff_max=0.05, start_seconds=0.1)
    assert sandbox.cli("start", "hub").returncode == 0
    for count in range(1, 5):
        poll_until(lambda n=count: len(recorded(helpers)) >= n, timeout=10, what=f"start #{count}")
        escapees[:] = recorded(helpers) + recorded(servers)
        assert sum(alive(pid) for pid in recorded(helpers)) <= 1
    assert sandbox.cli("stop", "hub").returncode == 0
    escapees[:] = recorded(helpers) + recorded(servers)
    assert not any(alive(pid) for pid in recorded(helpers))
    assert all(alive(pid) for pid in recorded(servers))  # every start's server: users' work is kept


def test_jupyterhub_managed_services_pile_up_at_no_restart_and_go_with_a_stop(sandbox, escapees):
    """The hub's managed services (idle-culler...: JUPYTERHUB_SERVICE_NAME, an API token, their own
    session) are the hub's: a new copy comes with every start, so the old one must go."""
    servers, managed = sandbox.base / "servers", sandbox.base / "managed"
    then = f"{MANAGED_ENV} setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {managed}; sleep 0.3; exit 1"
    hub_service(sandbox, servers, then=then, restart="always", min_uptime=0, give_up_after=0,
                backoff_initial=0.05, backoff_max=0.05, start_seconds=0.1)
    assert sandbox.cli("start", "hub").returncode == 0
    for count in range(1, 5):
        poll_until(lambda n=count: len(recorded(managed)) >= n, timeout=10, what=f"start #{count}")
        escapees[:] = recorded(managed) + recorded(servers)
        assert sum(alive(pid) for pid in recorded(managed)) <= 1, [p for p in recorded(managed) if alive(p)]
    assert sandbox.cli("stop", "hub").returncode == 0
    escapees[:] = recorded(managed) + recorded(servers)
    assert not any(alive(pid) for pid in recorded(managed))
    assert all(alive(pid) for pid in recorded(servers))  # the users' servers are still kept


def test_only_a_users_server_environment_is_kept(escapees):
    """JUPYTERHUB_USER marks a user's server; JUPYTERHUB_SERVICE_NAME a managed service (never
    kept, even with JUPYTERHUB_USER); an API token or a service prefix alone is no mark."""
    from supervisor.unix.escapees import is_user_server

    cases = {"server": ({"JUPYTERHUB_USER": "alice", "JUPYTERHUB_API_TOKEN": "t"}, True),
             "managed": ({"JUPYTERHUB_SERVICE_NAME": "idle-culler", "JUPYTERHUB_USER": "",
                          "JUPYTERHUB_API_TOKEN": "x", "JUPYTERHUB_SERVICE_PREFIX": "/services/c/"}, False),
             "token only": ({"JUPYTERHUB_API_TOKEN": "x"}, False),
             "prefix only": ({"JUPYTERHUB_SERVICE_PREFIX": "/user/a/"}, False)}
    started = {name: subprocess.Popen(["sleep", "300"], env={"PATH": os.environ["PATH"], **env})
               for name, (env, _) in cases.items()}
    escapees += [each.pid for each in started.values()]
    try:
        assert {name: is_user_server(each.pid) for name, each in started.items()} == \
            {name: kept for name, (_, kept) in cases.items()}
    finally:
        for each in started.values():
            each.kill()
            each.wait()


def test_jupyterhub_stop_all_takes_the_users_servers_too(sandbox, escapees):
    servers = sandbox.base / "servers"
    hub_service(sandbox, servers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(servers), what="the user server's PID")
    socket_path = str(sandbox.run / "svctl" / "hub" / "control.sock")
    code, message = control.request(socket_path, "stop-all", sandbox.supervisor_pid("hub"), 30, "hub")
    assert (code, message) == (0, "stopped")
    assert not alive(escapees[0])
    assert any(e["event"] == "stop_all_requested" for e in sandbox.events("hub"))


def test_svctl_stop_with_stop_user_servers_takes_them(sandbox, escapees):
    servers = sandbox.base / "servers"
    hub_service(sandbox, servers)
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(servers), what="the user server's PID")
    result = sandbox.cli("stop", "hub", "--stop-user-servers")
    assert result.returncode == 0, result.stderr
    assert not alive(escapees[0])


def test_a_stop_all_that_failed_does_not_reach_later_respawns(sandbox, escapees):
    """The hub ignores its first TERM and the schedule has no KILL: the stop-all ends in
    stop_failed with the hub running. A later restart (a reload) must keep the users' servers."""
    servers, ask = sandbox.base / "servers", sandbox.base / "spawn"
    spawner = (f"trap 'trap - TERM' TERM; while :; do if [ -e {ask} ]; then rm -f {ask}; {SERVER_ENV} setsid "
               f"sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {servers}; fi; sleep 0.05; done")
    hub_service(sandbox, servers, then=spawner, stop="TERM/0.5")
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(servers), what="the first server's PID")
    result = sandbox.cli("stop", "hub", "--stop-user-servers")
    assert result.returncode != 0, result.stdout
    assert any(e["event"] == "stop_failed" for e in sandbox.events("hub"))
    # (the server is still the hub's child, no escapee yet: the stop-all had nothing more to take)
    ask.write_text("")  # a user's server started after the failed stop-all
    escapees[:] = poll_until(lambda: recorded(servers) if len(recorded(servers)) >= 2 else None,
                             what="the second server")
    hub = sandbox.service_pid("hub")
    sandbox.cli("reload", "hub")  # a restart: the hub goes (TERM now ends it), its servers must not
    poll_until(lambda: not alive(hub), timeout=10, what="the hub restarted")
    poll_until(lambda: any(e["event"] == "exited" for e in sandbox.events("hub")), what="its exit handled")
    time.sleep(0.5)  # the schedule's TERM/0.5 would have reached the escapees by now
    escapees[:] = recorded(servers)
    assert all(alive(pid) for pid in escapees[:2]), "the restart after a failed stop-all killed users' servers"
    sandbox.kill_all()  # the supervisor and the hub, by PID (the schedule has no KILL)


def test_what_a_check_leaves_behind_is_no_users_server(sandbox, escapees):
    """The check's environment has the service's table (here with a JupyterHub variable in it):
    its leftovers are still not kept; what stayed in its group dies when it is reaped."""
    left = sandbox.base / "check_left"
    servers = sandbox.base / "servers"
    check = ["/bin/sh", "-c", (f"sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {left}; "
                               f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {left}; exit 0")]
    hub_service(sandbox, servers, check=check, environment={"JUPYTERHUB_USER": "alice"})
    assert sandbox.cli("start", "hub").returncode == 0
    escapees += poll_until(lambda: recorded(servers), what="the user server's PID")
    sandbox.cli("reload", "hub")
    in_group, escaped = poll_until(lambda: recorded(left) if len(recorded(left)) >= 2 else None,
                                   what="the check's leftovers")
    escapees += [in_group, escaped]
    poll_until(lambda: not alive(in_group), timeout=5, what="the check's group killed at its reaping")
    assert sandbox.cli("stop", "hub").returncode == 0
    assert not alive(escaped)
    assert alive(escapees[0])  # the real user's server is kept
    escapees += recorded(servers)  # the reload restarted the hub: its new server too


def test_a_flood_of_orphans_writes_a_few_reaped_lines_and_a_count(sandbox):
    relay = "for i in $(seq 150); do (sleep 0.01 &); done; exec sleep 1000"
    sandbox.service("demo", command=["/bin/sh", "-c", relay])
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: sum(e.get("count", 0) for e in sandbox.events() if e["event"] == "reaped_more")
               + sum(e["event"] == "reaped" for e in sandbox.events()) >= 140, timeout=10,
               what="the orphans reaped and counted")
    reaped = [e for e in sandbox.events() if e["event"] == "reaped"]
    assert len(reaped) <= 5 * 4, len(reaped)  # at most 5 a second: the relay is over in a second or two
    assert any(e["event"] == "reaped_more" for e in sandbox.events())
    assert sandbox.cli("stop", "demo").returncode == 0


def test_the_jupyterhub_rule_at_the_unit_level(escapees):
    """Leftovers sees our own children: the preset hides users' servers (their environment says so)
    until take_all (stop-all); any other child is an escapee like any service's."""
    before = set(children_of(os.getpid()))

    def others():  # whatever else this test process has is no escapee
        return before

    # made before the "service" runs
    plain, hub = Leftovers(Preset(), others), Leftovers(preset_for("jupyterhub"), others)
    server = subprocess.Popen(["sleep", "300"], start_new_session=True,
                              env={"PATH": os.environ["PATH"], "JUPYTERHUB_API_TOKEN": "t0ken",
                                   "JUPYTERHUB_USER": "alice"})
    helper = subprocess.Popen(["sleep", "300"], start_new_session=True, env={"PATH": os.environ["PATH"]})
    escapees += [server.pid, helper.pid]
    try:
        assert {server.pid, helper.pid} <= set(plain.escapees())
        assert hub.escapees() == [helper.pid] and hub.alive(None)
        helper.kill()
        helper.wait()
        assert hub.escapees() == [] and not hub.alive(None)
        hub.take_all = True
        assert hub.escapees() == [server.pid] and hub.alive(None)
        hub.signal(signal.SIGTERM)
        assert server.wait(5) == -signal.SIGTERM
        assert not hub.alive(None)
        # a child we had before the supervisor's first spawn is nobody's leftover
        late = Leftovers(Preset(), others)
        newcomer = subprocess.Popen(["sleep", "300"], start_new_session=True)
        escapees.append(newcomer.pid)
        assert newcomer.pid in late.escapees() and newcomer.pid not in Leftovers(Preset(), others).escapees()
        newcomer.kill()
        newcomer.wait()
    finally:
        for each in (server, helper):
            if each.returncode is None:
                each.kill()
                each.wait()


def test_a_non_root_services_escapees_are_only_those_of_its_user(escapees):
    """A descendant running as root (it went through su, sudo, a setuid helper) is not the service
    user's to kill: never signalled, never waited for. A root service's escapees: all of them."""
    before = set(children_of(os.getpid()))
    nobody = pwd.getpwnam("nobody").pw_uid
    as_nobody, as_root = Leftovers(Preset(), lambda: before, uid=nobody), Leftovers(Preset(), lambda: before)
    own = subprocess.Popen(["sleep", "300"], start_new_session=True, user=nobody)
    root = subprocess.Popen(["sleep", "300"], start_new_session=True)
    escapees += [own.pid, root.pid]
    try:
        assert as_nobody.escapees() == [own.pid]
        assert set(as_root.escapees()) == {own.pid, root.pid}
        as_nobody.signal(signal.SIGTERM)
        assert own.wait(5) == -signal.SIGTERM
        assert root.poll() is None and not as_nobody.alive(None)
    finally:
        for each in (own, root):
            if each.returncode is None:
                each.kill()
                each.wait()


def test_a_stopped_escapee_is_continued_after_the_stop_signal(escapees):
    """SIGSTOPped, a process never acts on TERM: SIGCONT follows it (as systemd does)."""
    before = set(children_of(os.getpid()))
    leftovers = Leftovers(Preset(), lambda: before)
    stopped = subprocess.Popen(["/bin/sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.05; done"],
                               start_new_session=True)
    escapees.append(stopped.pid)
    try:
        time.sleep(0.2)  # the trap is set
        os.kill(stopped.pid, signal.SIGSTOP)
        leftovers.signal(signal.SIGTERM)
        assert stopped.wait(5) == 7
    finally:
        if stopped.returncode is None:
            stopped.kill()
            stopped.wait()


@pytest.fixture
def open_dir():
    """A directory nobody can reach (the sandbox's and pytest's are root's alone)."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="svctl-setuid-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_non_root_services_escapee_that_became_root_is_not_signalled(sandbox, escapees, open_dir):
    """The service (nobody) runs a setuid-root helper that makes itself root for good (like su):
    that escapee is not nobody's to kill; nobody's own escapee still gets the schedule."""
    tools = open_dir
    rootme = tools / "rootme"
    shutil.copyfile("/usr/bin/setpriv", rootme)
    rootme.chmod(0o4755)  # root's, setuid: euid 0, and setpriv then sets all three uids to 0
    became_root, own = tools / "root_pid", tools / "own_pid"
    for path in (became_root, own):
        path.write_text("")
        path.chmod(0o666)
    script = (f"setsid {rootme} --reuid=0 --regid=0 --clear-groups sleep 300 </dev/null >/dev/null 2>&1 & "
              f"echo $! >> {became_root}; setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {own}; "
              "exec sleep 1000")
    sandbox.service("demo", command=["/bin/sh", "-c", script], user="nobody", working_directory="/")
    assert sandbox.cli("start", "demo").returncode == 0
    escapees += poll_until(lambda: recorded(became_root), what="the root helper's PID")
    escapees += poll_until(lambda: recorded(own), what="the service user's helper's PID")
    rooted, helper = escapees
    poll_until(lambda: real_uid(rooted) == 0, timeout=5, what="the helper running as root (real uid 0)")
    result = sandbox.cli("stop", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not alive(helper)
    assert alive(rooted)  # killed by the fixture
    skipped = [e for e in sandbox.events() if e["event"] == "escapee_skipped"]
    assert [(e["pid"], e["uid"]) for e in skipped] == [(rooted, 0)]  # said once, with its uid


def test_what_a_failure_hook_leaves_behind_is_no_users_server(sandbox, escapees):
    """A hook (minimal environment: never a JupyterHub variable) that daemonizes a helper: the
    jupyterhub preset does not keep it; the stop takes it."""
    left = sandbox.base / "hook_left"
    hook = ["/bin/sh", "-c", f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {left}"]
    hub_service(sandbox, sandbox.base / "servers", then="sleep 0.4; exit 1", on_failure=hook,
                restart="on-failure", min_uptime=5, backoff_initial=0.05, backoff_max=0.1,
                give_up_after=2, give_up_window=30, give_up_cooldown=600)
    sandbox.cli("start", "hub")
    escapees += recorded(sandbox.base / "servers")
    escapees += poll_until(lambda: recorded(left), timeout=10, what="the hook's helper")
    escapees += recorded(sandbox.base / "servers")
    assert sandbox.cli("stop", "hub").returncode == 0
    assert not alive(recorded(left)[0])


def test_the_held_back_reaped_count_is_written_when_the_supervisor_exits(sandbox):
    """The service makes 30 orphans as it stops and the supervisor exits well within the second
    the count is held for: the count still reaches the events file."""
    burst = ("trap 'for i in $(seq 30); do (sleep 0.01 &); done; sleep 0.3; exit 0' TERM; "
             "while :; do sleep 0.05; done")
    sandbox.service("demo", command=["/bin/sh", "-c", burst], stop="TERM/5/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    time.sleep(1.2)  # any "reaped" window of the start is over
    assert sandbox.cli("stop", "demo").returncode == 0
    events = sandbox.events()
    counted = sum(e.get("count", 0) for e in events if e["event"] == "reaped_more")
    assert counted + sum(e["event"] == "reaped" for e in events) >= 30, [e["event"] for e in events]
