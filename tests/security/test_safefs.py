"""The safe file layer on the real file system: what a directory's owner can plant never makes
root write, read, rename or delete anything that user could not (docs/security.md, F1-F4)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
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
