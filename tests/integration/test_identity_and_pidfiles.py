"""Identity checks and PID file trust rules against the real kernel and filesystem."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import IS_ROOT, poll_until
from supervisor.unix.identity import (Identity, boot_id, identify, monotonic_start, process_group_alive,
                                      seconds_since_start, verify)
from supervisor.unix.pidfile import AlreadyLocked, PidfileRead, SupervisorLock, read_pidfile


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["/bin/sleep", "100"], start_new_session=True)
    yield child
    child.kill()
    child.wait()


def test_identity_agrees_with_psutil(sleeper):
    """Our /proc reading (used because status must not import psutil) matches psutil's view."""
    me = identify(sleeper.pid)
    process = psutil.Process(sleeper.pid)
    ticks = os.sysconf("SC_CLK_TCK")
    assert me.exe == process.exe() == "/usr/bin/sleep"
    assert abs(psutil.boot_time() + me.start_ticks / ticks - process.create_time()) < 0.05
    assert me.boot_id == boot_id() and verify(me)


def test_a_reused_pid_fails_verification(sleeper):
    """Same PID, other start time (what PID reuse looks like) or other boot is not the same process;
    another executable is (issue 10 item 6: exec changes it, not the process): it is display only."""
    me = identify(sleeper.pid)
    assert not verify(Identity(me.pid, me.start_ticks - 1, me.exe, me.boot_id))
    assert not verify(Identity(me.pid, me.start_ticks + 1, me.exe, me.boot_id))
    assert not verify(Identity(me.pid, me.start_ticks, me.exe, "another-boot"))
    assert verify(Identity(me.pid, me.start_ticks, "/usr/bin/other", me.boot_id))
    assert verify(Identity(me.pid, me.start_ticks, "", me.boot_id))
    assert Identity(me.pid, me.start_ticks, "/usr/bin/other", me.boot_id) == me
    assert hash(Identity(me.pid, me.start_ticks, "/usr/bin/other", me.boot_id)) == hash(me)
    assert Identity(me.pid, me.start_ticks - 1, me.exe, me.boot_id) != me
    assert Identity(me.pid, me.start_ticks, me.exe, "another-boot") != me


def test_a_process_that_execs_keeps_its_identity():
    """Issue 10 item 6: a wrapper that execs its daemon (sh -c "exec sleep") is the same process."""
    wrapper = subprocess.Popen(["/bin/sh", "-c", "read line; exec /bin/sleep 100"], stdin=subprocess.PIPE,
                               start_new_session=True)
    try:
        before = poll_until(lambda: (i := identify(wrapper.pid)) and i.exe != sys.executable and i,
                            what="the shell running")
        assert before.exe.endswith(("/sh", "/dash", "/bash"))
        wrapper.stdin.write(b"go\n")
        wrapper.stdin.close()
        after = poll_until(lambda: (i := identify(wrapper.pid)) and i.exe == "/usr/bin/sleep" and i,
                           what="the exec of sleep")
        assert after == before and verify(before) and after.start_ticks == before.start_ticks
    finally:
        wrapper.kill()
        wrapper.wait()


def test_the_age_of_a_process_agrees_with_psutil(sleeper):
    """The uptime shown after a re-adoption comes from the kernel's start time (issue 11 item 8)."""
    time.sleep(1.1)
    me = identify(sleeper.pid)
    age = seconds_since_start(me.start_ticks)
    assert abs(age - (time.time() - psutil.Process(sleeper.pid).create_time())) < 0.05
    assert 1.0 <= age < 30
    assert abs(time.monotonic() - monotonic_start(me) - age) < 0.05
    assert monotonic_start(None) is None


def test_zombies_and_pid_one_are_never_identified():
    child = subprocess.Popen(["/bin/true"])
    deadline = time.monotonic() + 5
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert identify(child.pid) is None  # a zombie: not alive for us
    assert not process_group_alive(child.pid)
    child.wait()
    assert identify(1) is None and identify(0) is None


def test_process_group_alive(sleeper):
    assert process_group_alive(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert not process_group_alive(sleeper.pid)


def write(path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)


@pytest.mark.parametrize("content, kind", [
    ("1234\n", "ok"), ("1234", "ok"), ("garbage", "garbage"), ("", "garbage"), ("0\n", "garbage"),
    ("-1\n", "garbage"), ("1\n", "garbage"), ("12 34\n", "garbage"), ("  1234\n", "garbage"),
    ("1234\n5678\n", "garbage"), ("99999999999\n", "garbage"),
])
def test_content_must_be_exactly_one_pid_above_one(tmp_path, content, kind):
    write(tmp_path / "x.pid", content)
    assert read_pidfile(str(tmp_path / "x.pid")).kind == kind


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_group_or_world_writable_files_are_insecure(tmp_path, mode):
    write(tmp_path / "x.pid", "1234\n", mode)
    found = read_pidfile(str(tmp_path / "x.pid"))
    assert found.kind == "insecure" and "writable" in found.reason


def test_symlinks_and_writable_directories_are_insecure(tmp_path):
    write(tmp_path / "real.pid", "1234\n")
    os.symlink(tmp_path / "real.pid", tmp_path / "link.pid")
    assert read_pidfile(str(tmp_path / "link.pid")).kind == "insecure"
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    write(shared / "x.pid", "1234\n")
    assert read_pidfile(str(shared / "x.pid")).kind == "insecure"
    assert read_pidfile(str(tmp_path / "absent.pid")).kind == "missing"


@pytest.mark.skipif(not IS_ROOT, reason="needs root: chown to another user")
def test_files_owned_by_another_user_are_insecure(tmp_path):
    write(tmp_path / "x.pid", "1234\n")
    os.chown(tmp_path / "x.pid", 65534, 65534)
    assert read_pidfile(str(tmp_path / "x.pid")).kind == "insecure"


def test_the_lock_is_exclusive_and_dies_with_its_holder_whatever_happens_to_the_pid_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    path = str(tmp_path / "x.pid")
    lock = SupervisorLock.acquire(str(run), path)
    assert not os.path.exists(path), "no PID file until the supervisor writes one, never an empty one"
    lock.write(4242)
    assert read_pidfile(path) == PidfileRead("ok", 4242, "")
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    os.unlink(path)  # start-stop-daemon --remove-pidfile, an operator's rm
    with pytest.raises(AlreadyLocked):
        SupervisorLock.acquire(str(run), path)  # the lock is the run directory's, not the PID file's
    lock.write(4242)
    os.replace(path, path + ".moved")
    write(tmp_path / "x.pid", "999\n")  # someone else's file under the name
    lock.remove()
    assert (tmp_path / "x.pid").read_text() == "999\n", "only the file we wrote is ours to remove"
    again = SupervisorLock.acquire(str(run), path)  # the holder is gone: the kernel dropped the lock
    again.release()


def test_a_symlinked_pid_file_is_never_written_through(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious")
    os.symlink(target, tmp_path / "x.pid")
    (tmp_path / "run").mkdir()
    lock = SupervisorLock.acquire(str(tmp_path / "run"), str(tmp_path / "x.pid"))
    lock.write(4242)  # replaces the link itself, atomically
    lock.remove()
    assert target.read_text() == "precious"
