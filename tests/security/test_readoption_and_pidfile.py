"""What a service user can do to re-adoption and to `stop`'s clean-up (docs/security.md P1, F3)."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import IS_ROOT, alive, as_nobody, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody, the supervisor root")

# A service that puts /dev/null over every pipe it inherited, including its copy of the read end
# of svctl's output pipe, which re-adoption takes back with pidfd_getfd.
SWAPPER = """
import os, time
for fd in range(3, 64):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if target.startswith("pipe:"):
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, fd)
        os.close(null)
print("swapped", flush=True)
time.sleep(1000)
"""


def test_a_service_that_swapped_its_pipe_descriptor_is_still_readopted_and_stopped(sandbox):
    sandbox.service("demo", command=["/usr/bin/python3", "-c", SWAPPER], user="nobody")
    assert sandbox.cli("start", "demo").returncode == 0
    service, supervisor = sandbox.service_pid(), sandbox.supervisor_pid()
    try:
        os.kill(supervisor, signal.SIGKILL)
        poll_until(lambda: not alive(supervisor), what="the supervisor gone")
        start = sandbox.cli("start", "demo")
        assert start.returncode == 0, start.stderr
        assert sandbox.service_pid() == service, "re-adopted, not started twice"
        stop = sandbox.cli("stop", "demo")
        assert stop.returncode == 0 and "Traceback" not in stop.stderr, stop.stderr
        assert not alive(service)
    finally:
        if alive(service):
            os.kill(service, signal.SIGKILL)


def test_stop_never_removes_a_file_through_a_directory_the_user_controls(sandbox):
    """The PID file lives in nobody's directory, which nobody then swaps for a link to root's."""
    users = sandbox.base / "users"
    users.mkdir()
    os.chown(users, 65534, 65534)
    victim_dir = sandbox.base / "victim"
    victim_dir.mkdir()
    (victim_dir / "demo.pid").write_text("12345\n")
    sandbox.service("demo", pidfile=str(users / "run" / "demo.pid"))
    as_nobody(os.symlink, str(victim_dir), str(users / "run"))
    result = sandbox.cli("stop", "demo")
    assert result.returncode == 0, result.stderr
    assert (victim_dir / "demo.pid").read_text() == "12345\n"


def test_a_deleted_pid_file_never_gives_a_second_instance(sandbox):
    """The PID file is an interface, not the lock (start-stop-daemon --remove-pidfile, rm)."""
    sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor, service = sandbox.supervisor_pid(), sandbox.service_pid()
    os.unlink(sandbox.run / "demo.pid")
    again = sandbox.cli("start", "demo")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert (sandbox.supervisor_pid(), sandbox.service_pid()) == (supervisor, service)
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0
    assert not alive(supervisor) and not alive(service)
