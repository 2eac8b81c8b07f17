"""The safe file layer on the real file system: what a directory's owner can plant never makes
root write, read, rename or delete anything that user could not (docs/security.md, F1-F4)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, as_nobody
from supervisor.unix import asuser, safefs, userfiles

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody, the victim root")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def base():
    """A root-owned 0755 directory (in /var/tmp: sticky, a trusted ancestor) with nobody's dir in it."""
    root = Path(tempfile.mkdtemp(prefix="svctl-safefs-", dir="/var/tmp"))
    root.chmod(0o755)
    user_dir = root / "user"
    user_dir.mkdir()
    os.chown(user_dir, NOBODY.pw_uid, NOBODY.pw_gid)
    yield root
    shutil.rmtree(root, ignore_errors=True)



@pytest.fixture
def victim(base):
    victim = base / "victim"
    victim.write_text("root's own file\n")
    return victim


def test_trusted_chain_is_worked_on_directly(base):
    safefs.write_trusted(str(base / "state" / "s.json"), b"{}", 0o644, create_dirs=True)
    assert (base / "state" / "s.json").read_bytes() == b"{}"
    assert (base / "state" / "s.json").stat().st_uid == 0
    assert safefs.controller(str(base / "state" / "s.json")) is None
    assert safefs.read_trusted(str(base / "state" / "s.json"), "state") == b"{}"


def test_symlink_at_log_path_is_not_followed(base, victim):
    as_nobody(lambda: os.symlink(str(victim), str(base / "user" / "app.log")))
    with pytest.raises(OSError):
        userfiles.open_append(str(base / "user" / "app.log"))
    assert victim.read_text() == "root's own file\n"


def test_symlinked_parent_directory_creates_nothing_as_root(base):
    target = base / "rootonly"
    target.mkdir(mode=0o755)
    as_nobody(lambda: os.symlink(str(target), str(base / "user" / "logs")))
    with pytest.raises(OSError):
        userfiles.open_append(str(base / "user" / "logs" / "app.log"))
    assert list(target.iterdir()) == []


def test_log_in_user_directory_is_created_as_that_user(base):
    fd = userfiles.open_append(str(base / "user" / "sub" / "app.log"))
    try:
        os.write(fd, b"line\n")
    finally:
        os.close(fd)
    info = (base / "user" / "sub" / "app.log").stat()
    assert (info.st_uid, info.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_hard_link_to_a_root_file_is_refused_for_reading(base, victim):
    os.link(victim, base / "user" / "app.log")  # root makes it (protected_hardlinks stops nobody)
    with pytest.raises(safefs.UnsafePath):
        safefs.read_bytes(str(base / "user" / "app.log"))


def test_fifo_is_refused_without_blocking(base):
    as_nobody(lambda: os.mkfifo(str(base / "user" / "config.py")))
    started = time.monotonic()
    with pytest.raises(OSError):
        userfiles.read_bytes(str(base / "user" / "config.py"))
    with pytest.raises(OSError):
        safefs.read_bytes(str(base / "user" / "config.py"))
    assert time.monotonic() - started < 2


def test_replace_through_a_planted_symlink_leaves_the_target_alone(base, victim):
    as_nobody(lambda: os.symlink(str(victim), str(base / "user" / "config.py")))
    userfiles.replace(str(base / "user" / "config.py"), b"restored\n", 0o644)
    assert victim.read_text() == "root's own file\n"
    restored = base / "user" / "config.py"
    assert not restored.is_symlink() and restored.read_bytes() == b"restored\n"
    assert restored.stat().st_uid == NOBODY.pw_uid  # written by nobody: nothing root-owned to abuse


def test_remove_through_a_planted_symlink_removes_only_the_link(base, victim):
    as_nobody(lambda: os.symlink(str(victim), str(base / "user" / "config.py")))
    assert userfiles.remove(str(base / "user" / "config.py"))
    assert victim.exists()


def test_rotation_skips_what_it_cannot_do(base):
    log = base / "user" / "app.log"
    as_nobody(lambda: (log.write_text("x"), (base / "user" / "app.log.2").mkdir(),
                       (base / "user" / "app.log.2" / "keep").write_text("k"), (base / "user" / "app.log.1").write_text("1")))
    problems = userfiles.rotate(str(log), 2)  # app.log.1 -> app.log.2 hits the directory
    assert "app.log.1" in problems
    assert (base / "user" / "app.log.1").read_text() == "x"


def test_world_writable_directory_is_refused_with_the_fix(base):
    open_dir = base / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(safefs.UnsafePath, match=f"chmod go-w {open_dir}"):
        safefs.write_trusted(str(open_dir / "x"), b"", 0o644)


def test_user_owned_directory_is_refused_for_root_files(base):
    with pytest.raises(safefs.UnsafePath, match="belongs to uid"):
        safefs.write_trusted(str(base / "user" / "state.json"), b"{}", 0o644)


def test_helper_signals_never_reach_the_callers_wakeup_pipe(base):
    """nobody may signal the helper (it runs as them): our wake-up fd must not hear of it."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK)
    signal.signal(signal.SIGTERM, lambda *_: None)
    old = signal.set_wakeup_fd(write_end)
    try:
        def stop_self() -> tuple[None, bytes]:
            os.kill(os.getpid(), signal.SIGTERM)
            return None, b""
        asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, stop_self)
    except asuser.AsUserError:
        pass  # killed by its own SIGTERM: default action restored, as it should be
    finally:
        signal.set_wakeup_fd(old)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with pytest.raises(BlockingIOError):
        os.read(read_end, 16)
    os.close(read_end)
    os.close(write_end)


def test_stopped_helper_costs_a_bounded_wait(base, monkeypatch):
    monkeypatch.setattr(asuser, "TIMEOUT", 0.5)

    def freeze() -> tuple[None, bytes]:
        os.kill(os.getpid(), signal.SIGSTOP)
        return None, b""
    started = time.monotonic()
    with pytest.raises(asuser.AsUserError, match="no answer"):
        asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, freeze)
    assert time.monotonic() - started < 3


def test_a_hard_link_planted_as_the_log_is_neither_written_nor_chmodded(base):
    """nobody links a root-owned 0666 file into their own log directory under the events name."""
    victim = base / "shared-0666"
    victim.write_text("root's\n")
    victim.chmod(0o666)
    os.link(victim, base / "user" / "events.json")  # what protected_hardlinks lets nobody do to a 0666 file
    with pytest.raises(OSError, match="links"):
        userfiles.open_append(str(base / "user" / "events.json"), 0o600)
    assert victim.read_text() == "root's\n" and stat.S_IMODE(victim.stat().st_mode) == 0o666


def test_a_group_writable_root_log_directory_works_but_only_for_roots_own_files(base):
    """Ubuntu's /var/log is root:syslog 0775: logs go there, planted entries are refused."""
    logs = base / "varlog"
    logs.mkdir()
    os.chown(logs, 0, 4)  # group adm
    logs.chmod(0o775)
    fd = userfiles.open_append(str(logs / "demo.log"))
    os.close(fd)
    assert (logs / "demo.log").stat().st_uid == 0
    (logs / "other.log").write_text("x")
    os.chown(logs / "other.log", 65534, 4)  # an entry a group member made
    with pytest.raises(safefs.UnsafePath):
        userfiles.open_append(str(logs / "other.log"))
    with pytest.raises(safefs.UnsafePath, match="others may add entries"):
        safefs.write_trusted(str(logs / "demo.pid"), b"1\n", 0o644)
