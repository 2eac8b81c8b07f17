"""Last-known-good snapshots: save, restore atomically with mode/owner, keep the rejected version."""

from __future__ import annotations

import json
import os
import pwd
import stat

import pytest

from conftest import as_nobody, check_to_the_end
from supervisor.unix import snapshots
from supervisor.unix.snapshots import SnapshotError, capture, good_since, rejected_path, restore_good, save_good

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
    saved = save_good(capture([str(conf)]), run)
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
    save_good(capture([str(conf)]), run)
    conf.write_text("port = 2\n")
    inode = os.stat(conf).st_ino
    restore_good([str(conf)], run)
    assert os.stat(conf).st_ino != inode
    assert [p for p in os.listdir(conf.parent) if "svctl" in p] == [], "no temporary file left behind"


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_owner_is_preserved(setup):
    conf, run = setup
    nobody = pwd.getpwnam("nobody")
    os.chown(conf, nobody.pw_uid, nobody.pw_gid)
    save_good(capture([str(conf)]), run)
    os.chown(conf, 0, 0)
    conf.write_text("port = 2\n")
    restore_good([str(conf)], run)
    st = os.stat(conf)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o640


def test_identical_content_is_left_alone(setup):
    conf, run = setup
    save_good(capture([str(conf)]), run)
    inode = os.stat(conf).st_ino
    restore_good([str(conf)], run)
    assert os.stat(conf).st_ino == inode, "no rewrite, so no file event and no reload"
    assert not os.path.exists(rejected_path(str(conf), run))


def test_newer_save_replaces_the_snapshot_and_old_copies_are_collected(setup):
    conf, run = setup
    save_good(capture([str(conf)]), run)
    conf.write_text("port = 2\n")
    save_good(capture([str(conf)]), run)
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
    save_good(capture(paths), run)
    (a / "config.py").write_text("A2\n")
    (b / "config.py").write_text("B2\n")
    restore_good(paths, run)
    assert (a / "config.py").read_text() == "A\n" and (b / "config.py").read_text() == "B\n"


def test_file_absent_when_good_is_moved_aside_on_restore(tmp_path):
    extra = tmp_path / "extra.conf"
    run = str(tmp_path / "run")
    save_good(capture([str(extra)]), run)
    extra.write_text("new and broken\n")
    restore_good([str(extra)], run)
    assert not extra.exists()
    assert open(rejected_path(str(extra), run)).read() == "new and broken\n"


def test_symlinked_config_is_restored_at_its_target(tmp_path):
    (tmp_path / "real.conf").write_text("good\n")
    link = tmp_path / "app.conf"
    os.symlink("real.conf", link)
    run = str(tmp_path / "run")
    save_good(capture([str(link)]), run)
    (tmp_path / "real.conf").write_text("bad\n")
    restore_good([str(link)], run)
    assert os.path.islink(link), "the symlink itself is kept"
    assert (tmp_path / "real.conf").read_text() == "good\n"


def test_path_not_in_snapshot_is_an_error(setup, tmp_path):
    conf, run = setup
    save_good(capture([str(conf)]), run)
    with pytest.raises(SnapshotError, match="not watched then"):
        restore_good([str(conf), str(tmp_path / "other.conf")], run)


def test_corrupt_copy_is_not_restored(setup):
    conf, run = setup
    save_good(capture([str(conf)]), run)
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
    save_good(capture([str(conf)]), run)
    assert stat.S_IMODE(os.stat(os.path.join(run, "lkg")).st_mode) == 0o700


def test_unwritable_target_directory_raises_snapshot_error(tmp_path):
    """A vanished directory (or a read-only mount) is a SnapshotError naming the path, not a crash."""
    confdir = tmp_path / "conf"
    confdir.mkdir()
    conf = confdir / "app.conf"
    conf.write_text("good\n")
    run = str(tmp_path / "run")
    save_good(capture([str(conf)]), run)
    conf.unlink()
    confdir.rmdir()
    with pytest.raises(SnapshotError, match=f"cannot restore {conf}"):
        restore_good([str(conf)], run)


def test_snapshot_error_is_both_a_user_facing_error_and_an_oserror(tmp_path):
    from supervisor.errors import SvctlError

    with pytest.raises(OSError) as info:
        restore_good(["/x"], str(tmp_path))
    assert isinstance(info.value, SvctlError) and str(info.value).startswith("no known-good config")


# -- issue 10 item 7: what is saved is what was validated ---------------------------------------


def test_what_is_saved_is_the_captured_content_not_what_is_on_disk_by_then(setup):
    conf, run = setup
    validated = capture([str(conf)])
    conf.write_text("port = written after the check\n")  # lands before the service is ready
    save_good(validated, run)
    conf.write_text("port = 3\n")
    restore_good([str(conf)], run)
    assert conf.read_text() == "port = 1\n"


def test_kubernetes_configmap_layout_is_read_and_restored_at_the_current_generation(tmp_path):
    """Root-owned links in a root-controlled chain (a ConfigMap) are followed, as before."""
    (tmp_path / "..2024_01").mkdir()
    (tmp_path / "..2024_01" / "app.conf").write_text("good\n")
    os.symlink("..2024_01", tmp_path / "..data")
    os.symlink("..data/app.conf", tmp_path / "app.conf")
    conf, run = str(tmp_path / "app.conf"), str(tmp_path / "run")
    assert capture([conf]) == {conf: b"good\n"}
    save_good(capture([conf]), run)
    (tmp_path / "..2024_01" / "app.conf").write_text("bad\n")
    restore_good([conf], run)
    assert os.path.islink(tmp_path / "app.conf") and os.path.islink(tmp_path / "..data")
    assert (tmp_path / "..2024_01" / "app.conf").read_text() == "good\n"


# -- issue 10 item 5: a FIFO never blocks -------------------------------------------------------


def run_with_deadline(function, seconds: float = 5.0):
    """Call FUNCTION in a thread; fail (instead of hanging the suite) if it blocks."""
    import threading

    outcome: list = []

    def target():
        try:
            outcome.append(("ok", function()))
        except BaseException as exc:  # noqa: B036 - reported to the test below
            outcome.append(("raised", exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"blocked for more than {seconds:g}s"
    return outcome[0]


def test_a_fifo_at_the_watched_path_is_unreadable_at_once(tmp_path):
    fifo = tmp_path / "app.conf"
    os.mkfifo(fifo)
    kind, value = run_with_deadline(lambda: capture([str(fifo)]))
    assert kind == "raised" and isinstance(value, SnapshotError), value
    assert "unreadable" in str(value) and "not a regular file" in str(value)


def test_restoring_over_a_fifo_replaces_it_without_opening_it(setup):
    conf, run = setup
    save_good(capture([str(conf)]), run)
    conf.unlink()
    os.mkfifo(conf)
    kind, value = run_with_deadline(lambda: restore_good([str(conf)], run))
    assert kind == "ok", value
    assert conf.read_text() == "port = 1\n"


# -- issue 10 item 1: a rollback never follows what the service's user planted -------------------

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody")


@pytest.fixture
def nobody_dir():
    """A directory nobody owns (the service user's config dir), under a root-owned 0755 base."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="svctl-snap-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    nobody = pwd.getpwnam("nobody")
    confdir = base / "conf"
    confdir.mkdir(mode=0o755)
    os.chown(confdir, nobody.pw_uid, nobody.pw_gid)
    victim = base / "victim"  # a root-owned file the service user must never get written or removed
    victim.write_text("root's own\n")
    os.chmod(victim, 0o644)
    yield confdir, victim, str(base / "run")
    shutil.rmtree(base, ignore_errors=True)



def swap_for_symlink(path, target) -> None:
    temporary = f"{path}.swap"
    os.symlink(str(target), temporary)
    os.replace(temporary, str(path))


def untouched(victim) -> bool:
    info = os.lstat(victim)
    return victim.read_text() == "root's own\n" and (info.st_uid, info.st_gid) == (0, 0) and stat.S_ISREG(info.st_mode)


@needs_root
def test_rollback_replaces_a_planted_symlink_and_leaves_its_target_alone(nobody_dir):
    confdir, victim, run = nobody_dir
    conf = confdir / "app.conf"
    as_nobody(lambda: conf.write_text("good\n"))
    save_good(capture([str(conf)]), run)
    as_nobody(lambda: swap_for_symlink(conf, victim))
    restore_good([str(conf)], run)
    assert untouched(victim), "root's file was overwritten (or chowned) through the symlink"
    info = os.lstat(conf)
    assert stat.S_ISREG(info.st_mode) and conf.read_text() == "good\n"
    assert info.st_uid == pwd.getpwnam("nobody").pw_uid, "written as the directory's owner"
    assert not os.path.exists(rejected_path(str(conf), run)), "root's file must not be copied as 'rejected'"


@needs_root
def test_rollback_of_a_file_absent_when_good_removes_the_link_not_its_target(nobody_dir):
    confdir, victim, run = nobody_dir
    conf, extra = confdir / "app.conf", confdir / "extra.conf"
    as_nobody(lambda: conf.write_text("good\n"))
    save_good(capture([str(conf), str(extra)]), run)
    as_nobody(lambda: os.symlink(str(victim), extra))
    restore_good([str(conf), str(extra)], run)
    assert untouched(victim), "root's file was deleted through the symlink"
    assert not os.path.lexists(extra)


@needs_root
def test_a_symlink_to_a_root_only_file_is_never_read_as_root(nobody_dir):
    """Else /etc/shadow would become "known good" and be written into the user's file later."""
    confdir, victim, run = nobody_dir
    os.chmod(victim, 0o600)
    conf = confdir / "app.conf"
    as_nobody(lambda: os.symlink(str(victim), conf))
    with pytest.raises(SnapshotError, match="unreadable"):
        capture([str(conf)])


@needs_root
def test_rollback_in_a_users_directory_is_done_as_that_user(nobody_dir):
    confdir, victim, run = nobody_dir
    conf = confdir / "app.conf"
    as_nobody(lambda: conf.write_text("good\n"))
    os.chmod(conf, 0o4755)  # whatever mode the user's file had, root never re-applies setuid bits
    save_good(capture([str(conf)]), run)
    as_nobody(lambda: conf.write_text("bad\n"))
    restore_good([str(conf)], run)
    info = os.stat(conf)
    assert conf.read_text() == "good\n" and info.st_uid == pwd.getpwnam("nobody").pw_uid
    assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID)


# -- the reloader promotes exactly the validated bytes (issue 10 item 7) --------------------------


def make_reloader(tmp_path, conf, check=("/bin/true",), reload_signal=None):
    from supervisor.config import ServiceConfig
    from supervisor.log import EventLog
    from supervisor.reloader import ConfigReloader

    config = ServiceConfig(name="demo", path="/dev/null", command=("/bin/true",), watch=(str(conf),),
                           check=tuple(check), reload_signal=reload_signal)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    events = tmp_path / "events.json"
    return ConfigReloader(config, str(run), EventLog(str(events), "demo", False), lambda: None), str(run), events



def logged(events, name: str) -> list[dict]:
    return [entry for entry in map(json.loads, events.read_text().splitlines()) if entry["event"] == name]


def test_a_reload_promotes_the_checked_bytes_not_what_was_written_during_startup(setup, tmp_path):
    conf, _ = setup
    reloader, run, _ = make_reloader(tmp_path, conf)
    assert check_to_the_end(reloader).ok
    reloader.before_spawn("reload")
    conf.write_text("port = broken\n")  # the service is still starting
    reloader.snapshot("save")
    conf.write_text("port = 3\n")
    restore_good([str(conf)], run)
    assert conf.read_text() == "port = 1\n"


def test_an_edit_between_the_check_and_the_spawn_is_not_promoted(setup, tmp_path):
    conf, _ = setup
    reloader, run, events = make_reloader(tmp_path, conf)
    assert check_to_the_end(reloader).ok
    conf.write_text("port = unchecked\n")
    reloader.before_spawn("reload")
    reloader.snapshot("save")
    assert good_since(run) is None, "nothing promoted"
    [entry] = logged(events, "config_not_promoted")
    assert "config changed while starting; not promoted" in entry["reason"]


def test_the_first_start_promotes_the_bytes_read_just_before_the_spawn(setup, tmp_path):
    conf, _ = setup
    reloader, run, _ = make_reloader(tmp_path, conf)
    reloader.before_spawn("initial")
    conf.write_text("port = broken\n")
    reloader.snapshot("save")
    restore_good([str(conf)], run)
    assert conf.read_text() == "port = 1\n"


def test_a_signal_reload_is_promoted_only_if_the_files_still_hold_the_checked_bytes(setup, tmp_path):
    conf, _ = setup
    reloader, run, events = make_reloader(tmp_path, conf, reload_signal=1)
    assert check_to_the_end(reloader).ok
    reloader.snapshot("save")  # SaveGood right after the signal: nothing spawned
    assert good_since(run) is not None
    assert check_to_the_end(reloader).ok
    conf.write_text("port = unchecked\n")
    saved = good_since(run)
    reloader.snapshot("save")
    assert good_since(run) == saved and logged(events, "config_not_promoted")


def test_restarts_and_rollbacks_promote_nothing(setup, tmp_path):
    conf, _ = setup
    reloader, run, _ = make_reloader(tmp_path, conf)
    assert check_to_the_end(reloader).ok
    reloader.before_spawn("restart")
    reloader.snapshot("save")
    assert good_since(run) is None
