"""Last-known-good snapshots: save, restore atomically with mode/owner, keep the rejected version."""

from __future__ import annotations

import json
import os
import pwd
import stat

import pytest

from supervisor.unix import snapshots
from supervisor.unix.snapshots import SnapshotError, good_since, rejected_path, restore_good, save_good

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def setup(tmp_path):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    conf = etc / "app.conf"
    conf.write_text("port = 1\n")
    os.chmod(conf, 0o640)
    return conf, str(run)


def test_no_snapshot_yet(setup):
    conf, run = setup
    assert good_since(run) is None
    with pytest.raises(SnapshotError, match="no known-good config"):
        restore_good([str(conf)], run)


def test_save_then_restore_brings_back_the_good_content_and_keeps_the_rejected(setup):
    conf, run = setup
    saved = save_good([str(conf)], run)
    since = good_since(run)
    assert since is not None and snapshots.format_time(since) == saved
    conf.write_text("port = oops\n")
    assert restore_good([str(conf)], run) == saved
    assert conf.read_text() == "port = 1\n"
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640
    rejected = rejected_path(str(conf), run)
    assert open(rejected).read() == "port = oops\n"
    assert os.path.basename(rejected).startswith("rejected-")


def test_restore_is_an_atomic_rename(setup):
    """A new inode replaces the file; no half-written state is ever at the path."""
    conf, run = setup
    save_good([str(conf)], run)
    conf.write_text("port = 2\n")
    inode = os.stat(conf).st_ino
    restore_good([str(conf)], run)
    assert os.stat(conf).st_ino != inode
    assert [p for p in os.listdir(conf.parent) if p.startswith(".svctl-")] == []


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_owner_is_preserved(setup):
    conf, run = setup
    nobody = pwd.getpwnam("nobody")
    os.chown(conf, nobody.pw_uid, nobody.pw_gid)
    save_good([str(conf)], run)
    os.chown(conf, 0, 0)
    conf.write_text("port = 2\n")
    restore_good([str(conf)], run)
    st = os.stat(conf)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o640


def test_identical_content_is_left_alone(setup):
    conf, run = setup
    save_good([str(conf)], run)
    inode = os.stat(conf).st_ino
    restore_good([str(conf)], run)
    assert os.stat(conf).st_ino == inode, "no rewrite, so no file event and no reload"
    assert not os.path.exists(rejected_path(str(conf), run))


def test_newer_save_replaces_the_snapshot_and_old_copies_are_collected(setup):
    conf, run = setup
    save_good([str(conf)], run)
    conf.write_text("port = 2\n")
    save_good([str(conf)], run)
    conf.write_text("port = broken\n")
    restore_good([str(conf)], run)
    assert conf.read_text() == "port = 2\n"
    lkg = os.listdir(os.path.join(run, "lkg"))
    copies = [name for name in lkg if name not in ("manifest.json",) and not name.startswith("rejected-")]
    assert len(copies) == 1


def test_several_files_and_same_basename_in_different_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "config.py").write_text("A\n")
    (b / "config.py").write_text("B\n")
    paths = [str(a / "config.py"), str(b / "config.py")]
    run = str(tmp_path / "run")
    save_good(paths, run)
    (a / "config.py").write_text("A2\n")
    (b / "config.py").write_text("B2\n")
    restore_good(paths, run)
    assert (a / "config.py").read_text() == "A\n" and (b / "config.py").read_text() == "B\n"


def test_file_absent_when_good_is_moved_aside_on_restore(tmp_path):
    extra = tmp_path / "extra.conf"
    run = str(tmp_path / "run")
    save_good([str(extra)], run)
    extra.write_text("new and broken\n")
    restore_good([str(extra)], run)
    assert not extra.exists()
    assert open(rejected_path(str(extra), run)).read() == "new and broken\n"


def test_symlinked_config_is_restored_at_its_target(tmp_path):
    (tmp_path / "real.conf").write_text("good\n")
    link = tmp_path / "app.conf"
    os.symlink("real.conf", link)
    run = str(tmp_path / "run")
    save_good([str(link)], run)
    (tmp_path / "real.conf").write_text("bad\n")
    restore_good([str(link)], run)
    assert os.path.islink(link), "the symlink itself is kept"
    assert (tmp_path / "real.conf").read_text() == "good\n"


def test_path_not_in_snapshot_is_an_error(setup, tmp_path):
    conf, run = setup
    save_good([str(conf)], run)
    with pytest.raises(SnapshotError, match="not watched then"):
        restore_good([str(conf), str(tmp_path / "other.conf")], run)


def test_corrupt_copy_is_not_restored(setup):
    conf, run = setup
    save_good([str(conf)], run)
    manifest = json.loads(open(os.path.join(run, "lkg", "manifest.json")).read())
    copy = os.path.join(run, "lkg", manifest["files"][str(conf)]["copy"])
    os.chmod(copy, 0o600)
    open(copy, "w").write("tampered\n")
    conf.write_text("bad\n")
    with pytest.raises(SnapshotError, match="corrupt"):
        restore_good([str(conf)], run)
    assert conf.read_text() == "bad\n"


def test_snapshot_directory_is_private(setup):
    conf, run = setup
    save_good([str(conf)], run)
    assert stat.S_IMODE(os.stat(os.path.join(run, "lkg")).st_mode) == 0o700


def test_unwritable_target_directory_raises_snapshot_error(setup):
    conf, run = setup
    save_good([str(conf)], run)
    conf.write_text("bad\n")
    missing_dir_conf = conf.parent / "gone" / "app.conf"
    save_good([str(missing_dir_conf)], run + "2")  # absent: fine
    # Simulate a read-only mount: the directory vanishes under the target.
    with pytest.raises(SnapshotError):
        snapshots._write_atomic(str(missing_dir_conf), b"x", 0o644, 0, 0)


def test_snapshot_error_is_both_a_user_facing_error_and_an_oserror(tmp_path):
    from supervisor.errors import SvctlError

    with pytest.raises(OSError) as info:
        restore_good(["/x"], str(tmp_path))
    assert isinstance(info.value, SvctlError) and str(info.value).startswith("no known-good config")
