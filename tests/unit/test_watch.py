"""ConfigWatcher with real watchdog on temporary directories (works on watchdog 2.2.1 and 7.x).

Every editing style must wake the loop and show up in changed(); a touch, a chmod or an identical
rewrite must not show up in changed().
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import pytest

from supervisor.core.debounce import Debouncer
from supervisor.unix.watch import ConfigWatcher, watch_directories

WAIT = 5.0  # generous upper bound; the tests return as soon as the event arrives


class Wakes:
    """Counts wake() calls from the observer thread."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()
        self.times: queue.Queue[float] = queue.Queue()

    def __call__(self) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()
        self.times.put(time.monotonic())

    def wait_for_more_than(self, n: int, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count > n, timeout)

    def settle(self, quiet: float = 0.3) -> int:
        """Wait until no wake arrived for ``quiet`` seconds; return the count."""
        while True:
            with self.cond:
                seen = self.count
                if not self.cond.wait_for(lambda seen=seen: self.count > seen, quiet):
                    return self.count


@pytest.fixture
def make_watcher():
    watchers: list[ConfigWatcher] = []

    def make(*paths: str) -> tuple[ConfigWatcher, Wakes]:
        wakes = Wakes()
        watcher = ConfigWatcher([str(p) for p in paths], wakes)
        watcher.start()
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
    debouncer, reloads, applied = Debouncer(0.3, 1.0), 0, []
    quiet_until = time.monotonic() + WAIT
    while time.monotonic() < quiet_until:
        deadline = debouncer.deadline()
        timeout = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            debouncer.kick(wakes.times.get(timeout=timeout))
        except queue.Empty:
            pass
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


def test_stop_joins_the_observer_threads(tmp_path):
    write(tmp_path / "app.conf", "a\n")
    before = set(threading.enumerate())
    watcher = ConfigWatcher([str(tmp_path / "app.conf")], lambda: None)
    watcher.start()
    assert watcher.running
    watcher.stop()
    assert not watcher.running
    deadline = time.monotonic() + WAIT
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (set(threading.enumerate()) - before)


def test_wake_raising_oserror_does_not_kill_the_observer(tmp_path, make_watcher):
    conf = tmp_path / "app.conf"
    write(conf, "a\n")
    calls = []

    def wake():
        calls.append(1)
        raise BlockingIOError("pipe full")

    watcher = ConfigWatcher([str(conf)], wake)
    watcher.start()
    try:
        write(conf, "b\n")
        deadline = time.monotonic() + WAIT
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        count = len(calls)
        write(conf, "c\n")
        while len(calls) == count and time.monotonic() < deadline:
            time.sleep(0.02)
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
