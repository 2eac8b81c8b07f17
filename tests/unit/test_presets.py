"""Presets (supervisor/presets): the registry, the plain preset that does nothing, the jupyterhub
preset's kept escapees (users' servers, told by their environment), and in_service, by which
`svctl up` attributes an escapee to a service (its session, or SVCTL_SERVICE=NAME)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import alive, poll_until
from supervisor.config import PRESETS, from_mapping
from supervisor.presets import NAMES, Preset, preset_for, scaffolding
from supervisor.unix.escapees import Leftovers, children_of, in_service

PATH = {"PATH": os.environ["PATH"]}


@pytest.fixture
def started():
    """Start `sleep 300`s (Popen keyword arguments); every one still alive at the end is killed by PID."""
    processes: list[subprocess.Popen] = []

    def start(argv=("sleep", "300"), **keys) -> subprocess.Popen:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, **keys)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def test_the_registry_names_the_presets_and_config_takes_them_from_it():
    assert NAMES == ("jupyterhub",) and PRESETS == NAMES
    hub = preset_for("jupyterhub")
    assert type(hub).__name__ == "JupyterHubPreset" and isinstance(hub, Preset) and hub.name == "jupyterhub"
    for nobody in (None, "", "nginx", "__class__"):
        assert type(preset_for(nobody)) is Preset
    assert scaffolding() == ("jupyterhub",)  # `svctl init jupyterhub`


def test_the_registry_loads_no_preset_until_one_is_asked_for():
    """config.py and the supervisor import the registry at every start: it must stay free."""
    code = ("import sys; import supervisor.config, supervisor.presets as p; "
            "loaded = lambda: sorted(m for m in sys.modules if 'jupyterhub' in m); a = loaded(); "
            "p.preset_for('jupyterhub'); print(a, loaded())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # asking for the preset loads its (light) module, still none of supervisor/jupyterhub/
    assert out.strip() == "[] ['supervisor.presets.jupyterhub']"


def test_the_plain_preset_does_nothing():
    config = from_mapping("demo", "/etc/svctl/demo.toml", {"command": ["/bin/true"]})
    plain = preset_for(config.preset)
    assert plain.name == "" and not plain.scaffolds
    assert plain.before_start(config) == ([], None)
    assert plain.doctor(config) == []
    assert not plain.keeps_escapee(os.getpid())


def test_the_jupyterhub_preset_keeps_only_users_servers(started):
    """JUPYTERHUB_USER marks a user's server; JUPYTERHUB_SERVICE_NAME a managed service of the hub
    (restarted with it: not kept); a check's leftover (TMPDIR in svctl-check-) is never kept."""
    cases = {"server": ({"JUPYTERHUB_USER": "alice", "JUPYTERHUB_API_TOKEN": "t"}, True),
             "managed": ({"JUPYTERHUB_USER": "", "JUPYTERHUB_SERVICE_NAME": "idle-culler"}, False),
             "check": ({"JUPYTERHUB_USER": "alice", "TMPDIR": "/tmp/svctl-check-x1"}, False),
             "plain": ({}, False)}
    processes = {name: started(env={**PATH, **env}) for name, (env, _) in cases.items()}
    hub, plain = preset_for("jupyterhub"), Preset()
    assert {name: hub.keeps_escapee(each.pid) for name, each in processes.items()} == \
        {name: kept for name, (_, kept) in cases.items()}
    assert not any(plain.keeps_escapee(each.pid) for each in processes.values())


def test_leftovers_keeps_what_the_preset_keeps_until_a_stop_all(started):
    before = set(children_of(os.getpid()))
    hub, by_name, plain = (Leftovers(preset_for("jupyterhub"), lambda: before),
                           Leftovers("jupyterhub", lambda: before),  # runtime.py still passes the name
                           Leftovers(None, lambda: before))
    server = started(env={**PATH, "JUPYTERHUB_USER": "alice"}, start_new_session=True)
    helper = started(env=PATH, start_new_session=True)
    assert hub.escapees() == by_name.escapees() == [helper.pid]
    assert set(plain.escapees()) == {server.pid, helper.pid}
    hub.take_all = True
    assert set(hub.escapees()) == {server.pid, helper.pid}


def test_in_service_by_session_or_by_environment(started):
    """One escapee still in the service's session (a plain `&`), one that left it (setsid) but
    carries SVCTL_SERVICE=x, one with neither: only the first two are x's."""
    shell = started(["/bin/sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $!; wait"],
                    env=PATH, start_new_session=True, stdout=subprocess.PIPE)
    in_session = int(shell.stdout.readline())
    escaped = started(env={**PATH, "SVCTL_SERVICE": "x"}, start_new_session=True)
    neither = started(env={**PATH, "SVCTL_SERVICEX": "x", "OTHER": "SVCTL_SERVICE=x"}, start_new_session=True)
    try:
        sessions = {shell.pid}  # the service's session: its leader's PID
        assert os.getsid(in_session) == shell.pid and os.getsid(escaped.pid) == escaped.pid
        assert in_service(in_session, "x", sessions) and in_service(in_session, "y", sessions)  # the kernel's word
        assert in_service(escaped.pid, "x", sessions) and in_service(escaped.pid, b"x", set())
        assert not in_service(escaped.pid, "y", sessions)
        assert not any(in_service(escaped.pid, name, sessions) for name in ("", "X", "x ", "xx"))  # exactly
        assert not in_service(neither.pid, "x", sessions) and not in_service(neither.pid, "x", set())
        assert not in_service(in_session, "x", set())  # out of the sessions, no variable: no claim
    finally:
        os.kill(in_session, signal.SIGKILL)  # the shell's child: it reaps it
        poll_until(lambda: not alive(in_session), what="the shell's sleep gone")
    shell.kill()
    shell.wait()
    assert not in_service(in_session, "x", {shell.pid})  # gone: a zombie (ours now, un-reaped) too


def test_leftovers_of_one_service_among_many(started):
    """Under `svctl up` every service's escapees are our children: BELONGS picks this service's.
    FOREIGN replaces the children found at construction."""
    before = set(children_of(os.getpid()))
    mine = started(env={**PATH, "SVCTL_SERVICE": "x"}, start_new_session=True)
    theirs = started(env={**PATH, "SVCTL_SERVICE": "y"}, start_new_session=True)
    unclaimed = started(env=PATH, start_new_session=True)
    # made after they started: FOREIGN says which children are nobody's leftovers
    x = Leftovers(Preset(), lambda: (), belongs=lambda pid: in_service(pid, "x", set()), foreign=before)
    y = Leftovers(Preset(), lambda: (), belongs=lambda pid: in_service(pid, "y", set()), foreign=before)
    daemon = Leftovers(Preset(), lambda: (), foreign=before)  # belongs None: every child is its service's
    assert x.escapees() == [mine.pid] and y.escapees() == [theirs.pid]
    assert set(daemon.escapees()) == {mine.pid, theirs.pid, unclaimed.pid}
    assert Leftovers(Preset(), lambda: ()).escapees() == []  # foreign None: the children it has now
    x.signal(signal.SIGTERM)
    assert mine.wait(5) == -signal.SIGTERM
    assert theirs.poll() is None and not x.alive(None) and y.alive(None)
