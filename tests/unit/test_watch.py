"""ConfigWatcher on temporary directories, against the real kernel's inotify (no thread: the
descriptor is in a real process loop's selector, pumped here by ``Wakes``).

Every editing style must wake the loop and show up in changed(); a touch, a chmod or an identical
rewrite must not show up in changed(). The watchdog fallback (no inotify) is tested once at the end.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

import pytest

from supervisor.core.debounce import Debouncer
from supervisor.loop import Loop
from supervisor.unix import inotify
from supervisor.unix.watch import ConfigWatcher, FileChange, WatchError, watch_directories

WAIT = 5.0  # generous upper bound; the tests return as soon as the event arrives


class Front:
    """What a Loop needs of its front end here: a handler's failure fails the test."""

    drivers: list = []

    class faults:
        @staticmethod
        def internal(what, exc):
            raise exc

    def owns(self, fileobj) -> bool:
        return False


@pytest.fixture
def loop():
    loop = Loop(Front())
    yield loop
    loop.close()


class Wakes:
    """Counts wake() calls; pumps LOOP (the watcher's descriptor is in its selector) while waiting."""

    def __init__(self, loop: Loop) -> None:
        self.loop, self.count, self.times = loop, 0, []

    def __call__(self) -> None:
        self.count += 1
        self.times.append(time.monotonic())

    def pump(self, timeout: float) -> None:
        self.loop.dispatch(max(0.0, timeout))

    def wait_for_more_than(self, n: int, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while self.count <= n and time.monotonic() < deadline:
            self.pump(deadline - time.monotonic())
        return self.count > n

    def settle(self, quiet: float = 0.3) -> int:
        """Pump until no wake arrived for ``quiet`` seconds; return the count."""
        while True:
            seen = self.count
            if not self.wait_for_more_than(seen, quiet):
                return self.count


@pytest.fixture
def make_watcher(loop):
    watchers: list[ConfigWatcher] = []

    def make(*paths: str) -> tuple[ConfigWatcher, Wakes]:
        wakes = Wakes(loop)
        watcher = ConfigWatcher([str(p) for p in paths], wakes, loop)
        watcher.start()
        assert watcher.backend == "inotify"
        watchers.append(watcher)
        return watcher, wakes

    yield make
    for watcher in watchers:
        watcher.stop()


def write(path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def edit_and_expect(wakes: Wakes, watcher: ConfigWatcher, edit, expected: list[str]) -> None:
    before = wakes.settle()
    edit()
    assert wakes.wait_for_more_than(before), f"no wake-up within {WAIT:.0f}s"
    wakes.settle()
    assert watcher.changed() == expected
    watcher.accept()
    assert watcher.changed() == [], "accepted content must not be reported again"


def test_in_place_write(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 2\n"), [str(conf)])


def test_tmp_and_rename(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)

    def edit():
        write(tmp_path / ".app.conf.tmp", "a = 2\n")
        os.replace(tmp_path / ".app.conf.tmp", conf)

    edit_and_expect(wakes, watcher, edit, [str(conf)])
    # The watch survives the replace (a per-file watch would be attached to the old inode).
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 3\n"), [str(conf)])


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_sed_in_place(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    run_sed = lambda: subprocess.run(["sed", "-i", "s/1/2/", str(conf)], check=True, timeout=10)  # noqa: E731
    edit_and_expect(wakes, watcher, run_sed, [str(conf)])
    assert conf.read_text() == "a = 2\n"


def test_vim_style_save(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)

    def edit():
        os.rename(conf, tmp_path / "app.conf~")
        write(conf, "a = 2\n")
        os.unlink(tmp_path / "app.conf~")

    edit_and_expect(wakes, watcher, edit, [str(conf)])


def make_configmap(directory, generation: str, text: str) -> None:
    """Kubernetes' AtomicWriter: write ..<gen>/, point ..data_tmp at it, rename over ..data."""
    gen = directory / generation
    gen.mkdir()
    write(gen / "app.conf", text)
    os.symlink(generation, directory / "..data_tmp")
    os.replace(directory / "..data_tmp", directory / "..data")


def test_kubernetes_configmap_symlink_swap(tmp_path, make_watcher):
    make_configmap(tmp_path, "..2024_01", "a = 1\n")
    conf = tmp_path / "app.conf"
    os.symlink("..data/app.conf", conf)
    watcher, wakes = make_watcher(conf)
    assert str(tmp_path) in watcher.directories()

    def swap(old: str, new: str, text: str):
        def edit():
            make_configmap(tmp_path, new, text)
            shutil.rmtree(tmp_path / old)
        return edit

    edit_and_expect(wakes, watcher, swap("..2024_01", "..2024_02", "a = 2\n"), [str(conf)])
    edit_and_expect(wakes, watcher, swap("..2024_02", "..2024_03", "a = 3\n"), [str(conf)])
    assert str(tmp_path / "..2024_01") not in watcher.directories()


def test_symlink_to_another_directory_sees_edits_of_the_target(tmp_path, make_watcher):
    real_dir, link_dir = tmp_path / "real", tmp_path / "etc"
    real_dir.mkdir(), link_dir.mkdir()
    write(real_dir / "app.conf", "a = 1\n")
    conf = link_dir / "app.conf"
    os.symlink(real_dir / "app.conf", conf)
    assert watch_directories(str(conf)) == [str(link_dir), str(real_dir)]
    watcher, wakes = make_watcher(conf)
    edit_and_expect(wakes, watcher, lambda: write(real_dir / "app.conf", "a = 2\n"), [str(conf)])
    # Repointing the link is seen in the link's directory.
    write(real_dir / "other.conf", "a = 3\n")
    wakes.settle()

    def repoint():
        os.symlink(real_dir / "other.conf", link_dir / "tmp-link")
        os.replace(link_dir / "tmp-link", conf)

    edit_and_expect(wakes, watcher, repoint, [str(conf)])


def test_touch_chmod_and_identical_rewrite_change_nothing(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    os.utime(conf)
    os.chmod(conf, 0o600)
    write(conf, "a = 1\n")
    assert wakes.wait_for_more_than(before)  # they do wake the loop...
    wakes.settle()
    assert watcher.changed() == []  # ...but the content hash says nothing changed


def test_reading_the_file_does_not_wake(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    for _ in range(5):
        conf.read_bytes()
        watcher.changed()  # our own re-read opens and closes the file too
    assert not wakes.wait_for_more_than(before, timeout=0.5), "opened/closed_no_write must be ignored"


def test_unrelated_file_in_the_same_directory_is_filtered_by_hash(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    write(tmp_path / "unrelated.txt", "x")
    assert wakes.wait_for_more_than(before)
    assert watcher.changed() == []


def test_delete_is_reported_and_recreate_too(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    os.unlink(conf)
    assert wakes.wait_for_more_than(before)
    wakes.settle()
    [change] = watcher.scan()
    assert (change.path, change.kind) == (str(conf), "deleted")
    watcher.accept()
    before = wakes.settle()
    write(conf, "a = 1\n")
    assert wakes.wait_for_more_than(before)
    wakes.settle()
    assert [(c.path, c.kind) for c in watcher.scan()] == [(str(conf), "created")]


def test_accept_keeps_the_scanned_content_not_a_later_edit(tmp_path, make_watcher):
    """An edit landing while the check runs must still count as a change after accept()."""
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, _ = make_watcher(conf)
    write(conf, "a = 2\n")
    assert watcher.changed() == [str(conf)]
    write(conf, "a = 3\n")  # lands during validation
    watcher.accept()
    assert watcher.changed() == [str(conf)]
    watcher.accept(rescan=True)
    assert watcher.changed() == []


def test_unreadable_file_is_reported_not_raised(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    conf.mkdir()  # reading a directory fails with EISDIR
    watcher, _ = make_watcher(conf)
    [change] = watcher.scan()
    assert change.kind == "unreadable" and change.detail


def test_burst_of_100_writes_in_one_second_gives_at_most_two_reloads(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "n = 0\n")
    watcher, wakes = make_watcher(conf)
    wakes.settle()

    def writer():
        for i in range(1, 101):
            write(conf, f"n = {i}\n")
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    debouncer, reloads, applied, taken = Debouncer(0.3, 1.0), 0, [], 0
    quiet_until = time.monotonic() + WAIT
    while time.monotonic() < quiet_until:
        deadline = debouncer.deadline()
        wakes.pump(0.5 if deadline is None else deadline - time.monotonic())
        for at in wakes.times[taken:]:
            debouncer.kick(at)
        taken = len(wakes.times)
        if debouncer.take(time.monotonic()):
            if watcher.changed():
                reloads += 1
                applied.append(conf.read_text())
                watcher.accept()
        if not thread.is_alive() and not debouncer.pending:
            quiet_until = min(quiet_until, time.monotonic() + 0.5)
    thread.join()
    assert 1 <= reloads <= 2
    assert applied[-1] == "n = 100\n", "the final content is the one reloaded"
    assert watcher.changed() == []


def test_missing_directory_is_skipped_not_fatal(tmp_path, make_watcher):
    watcher, _ = make_watcher(tmp_path / "nope" / "app.conf")
    assert str(tmp_path / "nope") in watcher.skipped
    assert watcher.changed() == []  # absent at start, still absent


def test_one_descriptor_in_the_loop_and_no_thread(tmp_path, loop):
    write(tmp_path / "app.conf", "a\n")
    before = threading.active_count()
    watcher = ConfigWatcher([str(tmp_path / "app.conf")], lambda: None, loop)
    watcher.start()
    assert watcher.running and watcher.backend == "inotify"
    assert threading.active_count() == before, "the watcher must not start a thread"
    [fd] = [key.fd for key in loop.selector.get_map().values() if key.fd != loop.wake_r]
    assert fd == watcher.fileno()
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    watcher.stop()
    assert not watcher.running
    assert fd not in loop.selector.get_map()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed (nothing else opened meanwhile could have taken the number)


def test_wake_raising_oserror_does_not_stop_the_watching(tmp_path, loop):
    conf = tmp_path / "app.conf"
    write(conf, "a\n")
    calls = []

    def wake():
        calls.append(1)
        raise BlockingIOError("pipe full")

    watcher = ConfigWatcher([str(conf)], wake, loop)
    watcher.start()
    try:
        write(conf, "b\n")
        deadline = time.monotonic() + WAIT
        while not calls and time.monotonic() < deadline:
            loop.dispatch(0.1)
        count = len(calls)
        write(conf, "c\n")
        while len(calls) == count and time.monotonic() < deadline:
            loop.dispatch(0.1)
        assert len(calls) > count
    finally:
        watcher.stop()


def test_importing_the_module_does_not_import_watchdog():
    code = "import sys, supervisor.unix.watch; print('watchdog' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr


def test_a_fifo_swapped_in_is_reported_unreadable_without_blocking(tmp_path, make_watcher):
    """Issue 10 item 5: open() on a FIFO without a writer blocks forever, and with it the loop."""
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    os.mkfifo(tmp_path / "fifo")
    os.replace(tmp_path / "fifo", conf)
    assert wakes.wait_for_more_than(before)
    found: list = []
    thread = threading.Thread(target=lambda: found.append(watcher.scan()), daemon=True)
    thread.start()
    thread.join(5)
    assert found, "scan() blocked on the FIFO"
    [change] = found[0]
    assert change.kind == "unreadable" and "not a regular file" in change.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the attacker is nobody")
def test_a_symlink_planted_in_a_users_directory_is_not_read_through(make_watcher):
    """Root never reads through the service user's link (to a file only root may read)."""
    import pwd
    import tempfile
    from pathlib import Path

    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="svctl-watch-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        secret = base / "secret"
        write(secret, "root only\n")
        os.chmod(secret, 0o600)
        confdir = base / "conf"
        confdir.mkdir()
        conf = confdir / "app.conf"
        os.symlink(secret, conf)
        os.lchown(conf, nobody.pw_uid, nobody.pw_gid)
        os.chown(confdir, nobody.pw_uid, nobody.pw_gid)
        watcher, _ = make_watcher(conf)
        [change] = watcher.scan()
        assert change.kind == "unreadable" and "symbolic link" in change.detail
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- inotify itself: the editing styles of real tools, directories coming and going, the queue ----


def test_vim_backup_write_with_its_4913_probe(tmp_path, make_watcher):
    """vim's default write of a regular file: a '4913' probe file, the original renamed to the backup,
    the new content written to a new inode and fsynced, the backup deleted."""
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)

    def edit(text: str):
        fd = os.open(tmp_path / "4913", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(tmp_path / "4913")
        os.rename(conf, tmp_path / "app.conf~")
        with open(conf, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copymode(tmp_path / "app.conf~", conf)
        os.unlink(tmp_path / "app.conf~")

    edit_and_expect(wakes, watcher, lambda: edit("a = 2\n"), [str(conf)])
    edit_and_expect(wakes, watcher, lambda: edit("a = 3\n"), [str(conf)])  # the directory still watched


def test_a_directory_deleted_and_recreated_is_noticed(tmp_path, make_watcher):
    """Its watch dies with it (IN_IGNORED); its parent is watched for its name until it is back."""
    confdir = tmp_path / "conf"
    confdir.mkdir()
    conf = confdir / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    edit_and_expect(wakes, watcher, lambda: shutil.rmtree(confdir), [str(conf)])
    assert str(confdir) in watcher.skipped and str(confdir) not in watcher.directories()

    def recreate():
        confdir.mkdir()
        write(conf, "a = 2\n")

    edit_and_expect(wakes, watcher, recreate, [str(conf)])
    assert str(confdir) in watcher.directories() and not watcher.skipped
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 3\n"), [str(conf)])  # the new one is watched


def test_a_directory_that_appears_later_is_watched_from_then_on(tmp_path, make_watcher):
    conf = tmp_path / "not" / "yet" / "app.conf"
    watcher, wakes = make_watcher(conf)
    assert watcher.skipped == (str(conf.parent),)
    before = wakes.settle()
    write(tmp_path / "unrelated", "x")  # the ancestor is watched for "not" only
    assert not wakes.wait_for_more_than(before, timeout=0.3)

    def appear():
        conf.parent.mkdir(parents=True)
        write(conf, "a = 1\n")

    edit_and_expect(wakes, watcher, appear, [str(conf)])
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 2\n"), [str(conf)])


def record(wd: int, mask: int, name: bytes = b"", cookie: int = 0, pad: int = 16) -> bytes:
    """One struct inotify_event as the kernel writes it: the name NUL-padded."""
    padded = name + b"\0" * (-(len(name) + 1) % pad + 1) if name else b""
    return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded


def test_the_parser_reads_the_kernels_records():
    buffer = (record(1, inotify.IN_CREATE, b"app.conf") + record(1, inotify.IN_MOVED_FROM, b"a", cookie=7)
              + record(2, inotify.IN_DELETE_SELF) + record(-1, inotify.IN_Q_OVERFLOW))
    assert inotify.parse(buffer) == [inotify.Event(1, inotify.IN_CREATE, 0, "app.conf"),
                                     inotify.Event(1, inotify.IN_MOVED_FROM, 7, "a"),
                                     inotify.Event(2, inotify.IN_DELETE_SELF), inotify.Event(-1, inotify.IN_Q_OVERFLOW)]
    assert inotify.parse(buffer[:-3]) == inotify.parse(buffer)[:3], "a truncated record is dropped, not guessed"
    assert inotify.parse(record(1, inotify.IN_CREATE, "é.conf".encode())) == [inotify.Event(1, inotify.IN_CREATE, 0, "é.conf")]


def test_a_queue_overflow_wakes_like_an_edit(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before, seen = wakes.settle(), watcher.events_seen
    watcher._backend.deliver(inotify.parse(record(-1, inotify.IN_Q_OVERFLOW)))
    assert wakes.count == before + 1 and watcher.events_seen == seen + 1
    assert watcher.changed() == []  # the scan decides: nothing moved


def test_ignored_wakes_for_our_watches_only(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before = wakes.settle()
    [wd] = watcher.owners
    watcher._backend.deliver([inotify.Event(wd + 1000, inotify.IN_IGNORED), inotify.Event(wd + 1000, inotify.IN_MODIFY, 0, "x")])
    assert wakes.count == before, "a watch we removed (or never had) wakes nothing"
    watcher._backend.deliver([inotify.Event(wd, inotify.IN_IGNORED)])
    assert wakes.count == before + 1 and wd not in watcher.owners
    watcher.changed()  # the scan adds the watch again
    assert watcher.owners and str(tmp_path) in watcher.directories()
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 2\n"), [str(conf)])


def test_a_real_queue_overflow_is_survived(tmp_path, make_watcher):
    """Fill the kernel's queue (fs.inotify.max_queued_events, left as it is) while the loop is not reading."""
    limit = int(open("/proc/sys/fs/inotify/max_queued_events").read())
    if limit > 50_000:
        pytest.skip(f"max_queued_events is {limit}: too many files to fill it")
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, wakes = make_watcher(conf)
    before, masks = wakes.settle(), []
    deliver = watcher._backend.deliver
    watcher._backend.deliver = lambda events: (masks.extend(e.mask for e in events), deliver(events))
    for index in range(limit // 2 + 10):  # IN_CREATE and IN_CLOSE_WRITE each, never coalesced
        os.close(os.open(f"{tmp_path}/n{index}", os.O_WRONLY | os.O_CREAT, 0o644))
    write(conf, "a = 2\n")  # lost in the overflow: the scan finds it anyway
    assert wakes.wait_for_more_than(before)
    wakes.settle()
    assert any(mask & inotify.IN_Q_OVERFLOW for mask in masks), "the queue did not overflow"
    assert watcher.changed() == [str(conf)]
    watcher.accept()
    edit_and_expect(wakes, watcher, lambda: write(conf, "a = 3\n"), [str(conf)])


def test_the_watch_limit_is_one_clear_line_and_leaves_nothing_open(tmp_path, loop, monkeypatch):
    write(tmp_path / "app.conf", "a\n")

    def full(self, path, mask):
        raise OSError(errno.ENOSPC, f"inotify_add_watch {path}: {os.strerror(errno.ENOSPC)}")

    monkeypatch.setattr(inotify.Inotify, "add_watch", full)
    watcher = ConfigWatcher([str(tmp_path / "app.conf")], lambda: None, loop)
    with pytest.raises(WatchError) as raised:
        watcher.start()
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path) in message and "max_user_watches" in message
    assert not watcher.running and list(loop.selector.get_map()) == [loop.wake_r]


def test_the_watch_limit_on_a_later_scan_still_compares_the_files(tmp_path, make_watcher, monkeypatch):
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    watcher, _ = make_watcher(conf)

    def full(self, path, mask):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(inotify.Inotify, "add_watch", full)
    write(conf, "a = 2\n")
    assert watcher.changed() == [str(conf)]
    assert "max_user_watches" in watcher.problem and "\n" not in watcher.problem
    monkeypatch.undo()
    watcher.accept()
    assert watcher.changed() == [] and watcher.problem is None and str(tmp_path) in watcher.directories()


def test_the_instance_limit_is_one_clear_line(tmp_path, loop, monkeypatch):
    write(tmp_path / "app.conf", "a\n")

    def no_more(self):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(inotify.Inotify, "__init__", no_more)
    watcher = ConfigWatcher([str(tmp_path / "app.conf")], lambda: None, loop)
    with pytest.raises(WatchError, match="max_user_instances") as raised:
        watcher.start()
    assert "\n" not in str(raised.value) and "Too many open files" in str(raised.value)


def test_file_change_is_a_plain_value():
    change = FileChange("/etc/a", "unreadable", "EACCES")
    assert change == FileChange("/etc/a", "unreadable", "EACCES") != FileChange("/etc/a", "deleted")
    assert hash(change) == hash(FileChange("/etc/a", "unreadable", "EACCES"))
    assert repr(FileChange("/etc/a", "deleted")) == "FileChange(path='/etc/a', kind='deleted', detail='')"


CHILD = """
import os, sys, threading, time
from supervisor.loop import Loop
import supervisor.errors, supervisor.unix.safefs, supervisor.unix.userfiles  # the watcher's file layer
before = set(sys.modules)
from supervisor.unix.watch import ConfigWatcher
class Front:
    drivers = []
    class faults:
        @staticmethod
        def internal(what, exc): raise exc
loop, wakes = Loop(Front()), []
conf = os.path.join(sys.argv[1], "app.conf")
open(conf, "w").write("a = 1\\n")
watcher = ConfigWatcher([conf], lambda: wakes.append(1), loop)
watcher.start()
open(conf, "w").write("a = 2\\n")
deadline = time.monotonic() + 5
while not wakes and time.monotonic() < deadline:
    loop.dispatch(0.1)
assert wakes and watcher.changed() == [conf], wakes
heavy = sorted(m for m in set(sys.modules) - before
               if m.split(".")[0] in ("watchdog", "threading", "dataclasses", "typing", "inspect", "hashlib", "asyncio"))
print(watcher.backend, threading.active_count(), len(os.listdir("/proc/self/task")), heavy)
"""


def test_a_running_watcher_imports_no_watchdog_and_starts_no_thread(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "inotify 1 1 []", "backend, threads, tasks, heavy modules imported"


def test_falls_back_to_watchdog_without_inotify(tmp_path, loop, monkeypatch):
    pytest.importorskip("watchdog")

    def missing(self):
        raise inotify.Unavailable(errno.ENOSYS, "no inotify in the C library")

    monkeypatch.setattr(inotify.Inotify, "__init__", missing)
    conf = tmp_path / "app.conf"
    write(conf, "a = 1\n")
    calls: list[int] = []
    before = set(threading.enumerate())
    watcher = ConfigWatcher([str(conf)], lambda: calls.append(1), loop)  # wake: from watchdog's thread
    watcher.start()
    try:
        assert watcher.backend == "watchdog" and watcher.running
        write(conf, "a = 2\n")
        deadline = time.monotonic() + WAIT
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls and watcher.changed() == [str(conf)]
    finally:
        watcher.stop()
    deadline = time.monotonic() + WAIT
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (set(threading.enumerate()) - before), "stop() joins watchdog's threads"
