"""The JupyterHub preset reads files the hub's user writes (its config, its pid files) and acts on
processes they name: none of it may make root delete, read, run or signal anything that user
could not (docs/security.md F2, P1, X2)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, as_nobody, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is the hub's user, nobody")


@pytest.fixture
def hub_dir(sandbox) -> Path:
    """The hub's working directory, owned by its user (nobody), with a config nobody wrote."""
    directory = sandbox.base / "hub"
    directory.mkdir(mode=0o755)
    os.chown(directory, 65534, 65534)
    return directory


def hub_service(sandbox, hub_dir: Path, **keys) -> None:
    # not tests/children/service.py: nobody may not be able to read the checkout (a 0700 clone)
    keys.setdefault("command", ["/usr/bin/python3", "-c", "import time; time.sleep(1000)"])
    sandbox.service("hub", user="nobody", preset="jupyterhub", working_directory=str(hub_dir), **keys)


def write_as_nobody(path: Path, text: str) -> None:
    as_nobody(path.write_text, text)


def test_a_hub_pid_file_pointed_at_roots_file_does_not_delete_it(sandbox, hub_dir):
    victim = sandbox.base / "victim"
    victim.mkdir()
    (victim / "important").write_text("root's\n")
    (victim / "important").chmod(0o600)
    write_as_nobody(hub_dir / "jupyterhub_config.py", f'c.JupyterHub.pid_file = "{victim}/important"\n')
    hub_service(sandbox, hub_dir)
    assert sandbox.cli("start", "hub").returncode == 0
    try:
        assert (victim / "important").read_text() == "root's\n"
    finally:
        assert sandbox.cli("stop", "hub").returncode == 0


def test_a_proxy_pid_file_naming_a_root_process_gets_it_no_signal(sandbox, hub_dir):
    log = sandbox.base / "configurable-http-proxy.log"
    log.touch()
    # an administrator's unrelated root process whose command line mentions the proxy
    victim = subprocess.Popen(["tail", "-f", str(log)], start_new_session=True)
    try:
        write_as_nobody(hub_dir / "jupyterhub_config.py", "")
        write_as_nobody(hub_dir / "jupyterhub-proxy.pid", f"{victim.pid}\n")
        hub_service(sandbox, hub_dir)
        assert sandbox.cli("start", "hub").returncode == 0
        time.sleep(0.3)
        assert victim.poll() is None, "the supervisor signalled a root process a pid file named"
        assert sandbox.cli("stop", "hub").returncode == 0
    finally:
        victim.kill()
        victim.wait()


def test_a_fifo_as_the_proxy_pid_file_or_config_never_hangs_the_start(sandbox, hub_dir):
    as_nobody(os.mkfifo, str(hub_dir / "jupyterhub-proxy.pid"))
    as_nobody(os.mkfifo, str(hub_dir / "jupyterhub_config.py"))
    hub_service(sandbox, hub_dir)
    started = time.monotonic()
    result = sandbox.cli("start", "hub", timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert sandbox.cli("stop", "hub").returncode == 0


def test_check_never_runs_the_hub_users_interpreter_as_root(sandbox, hub_dir):
    pwned = hub_dir / "pwned"
    write_as_nobody(hub_dir / "jupyterhub_config.py", "")
    write_as_nobody(hub_dir / "evil", f"#!/bin/sh\nid -u > {pwned}\nexit 0\n")
    as_nobody(os.chmod, str(hub_dir / "evil"), 0o755)
    write_as_nobody(hub_dir / "jupyterhub", f"#!{hub_dir}/evil\n")
    as_nobody(os.chmod, str(hub_dir / "jupyterhub"), 0o755)
    hub_service(sandbox, hub_dir, command=[str(hub_dir / "jupyterhub")])
    sandbox.cli("check", "hub")
    if pwned.exists():  # it may run: as the hub's own user, never as root
        assert pwned.read_text().strip() == "65534"


def test_an_orphaned_proxy_of_the_hubs_user_is_still_stopped(sandbox, hub_dir):
    """The control: what the clean-up is for still works under the new rules."""
    script = hub_dir / "configurable-http-proxy"
    write_as_nobody(script, "import time\ntime.sleep(1000)\n")
    proxy = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", str(script)], start_new_session=True)
    try:
        poll_until(lambda: "configurable-http-proxy" in Path(f"/proc/{proxy.pid}/cmdline").read_text(),
                   what="the proxy running as nobody")
        write_as_nobody(hub_dir / "jupyterhub_config.py", "")
        write_as_nobody(hub_dir / "jupyterhub-proxy.pid", f"{proxy.pid}\n")
        hub_service(sandbox, hub_dir)
        assert sandbox.cli("start", "hub").returncode == 0
        poll_until(lambda: proxy.poll() is not None, what="the orphaned proxy stopped")
        assert not (hub_dir / "jupyterhub-proxy.pid").exists()
        assert sandbox.cli("stop", "hub").returncode == 0
    finally:
        if proxy.poll() is None:
            proxy.kill()
        proxy.wait()
