"""What a service user can do to re-adoption and to `stop`'s clean-up (docs/security.md P1, F3)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, as_nobody, poll_until, processes_with

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


def test_a_daemon_an_old_init_script_started_is_not_started_twice(sandbox):
    """Migrating from a hand-written init.d script (the seed's): its daemon still runs and its PID
    file names it. `svctl start` refuses, naming the PID, and leaves both the daemon and its PID
    file alone (overwriting the file would aim the old script's `stop` at svctl's supervisor)."""
    tag = f"--tag={sandbox.base.name}"
    command = [PYTHON, SERVICE, tag]
    sandbox.service("demo", command=command)
    daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pidfile = sandbox.run / "demo.pid"
        pidfile.write_text(f"{daemon.pid}\n")  # as start-stop-daemon --make-pidfile writes it
        result = sandbox.cli("start", "demo")
        assert result.returncode == 1, result.stderr
        assert f"names pid {daemon.pid}" in result.stderr and "svctl did not start" in result.stderr
        assert "Traceback" not in result.stderr
        assert pidfile.read_text() == f"{daemon.pid}\n" and daemon.poll() is None
        assert processes_with(tag) == [daemon.pid]  # no second instance
        assert sandbox.cli("status", "demo").returncode != 0  # and svctl does not claim it
        stop = sandbox.cli("stop", "demo")  # nor signal it, nor remove its PID file
        assert stop.returncode == 1 and f"names pid {daemon.pid}" in stop.stderr, stop.stderr
        assert pidfile.read_text() == f"{daemon.pid}\n" and daemon.poll() is None
    finally:
        daemon.kill()
        daemon.wait()
    # Once it is gone the same PID file is merely stale: start goes ahead.
    assert sandbox.cli("start", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_reused_pid_of_another_program_in_the_pid_file_does_not_block_a_start(sandbox):
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag])
    other = subprocess.Popen(["sleep", "60"])
    try:
        (sandbox.run / "demo.pid").write_text(f"{other.pid}\n")
        assert sandbox.cli("start", "demo").returncode == 0
        assert other.poll() is None  # never signalled
        assert sandbox.cli("stop", "demo").returncode == 0
    finally:
        other.kill()
        other.wait()
