"""A supervisor with a watched file: the watch is an inotify descriptor in its loop, no thread
(issue 15: per-service memory), and edits of every kind still restart the service."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import IS_ROOT, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


def tasks(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def inotify_inodes(pid: int) -> set[int]:
    """The inodes the process's inotify descriptors watch (from /proc/PID/fdinfo)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            lines = open(f"/proc/{pid}/fdinfo/{fd}").read().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("inotify wd:"):
                fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
                inodes.add(int(fields["ino"], 16))
    return inodes


def watching_service(sandbox):
    confdir = sandbox.base / "conf"
    confdir.mkdir(mode=0o755)
    conf = confdir / "app.conf"
    conf.write_text("a = 1\n")
    sandbox.service("demo", command=["/bin/sleep", "1000"], watch=[str(conf)])
    assert sandbox.cli("start", "demo").returncode == 0
    return confdir, conf


def spawns(sandbox) -> int:
    return len([e for e in sandbox.events() if e["event"] == "spawned"])


def restarted_after(sandbox, edit) -> None:
    before = spawns(sandbox)
    edit()
    poll_until(lambda: spawns(sandbox) == before + 1 and sandbox.state()["machine"]["state"] == "running",
               timeout=10, what="the restart on the edit")


def test_a_watching_supervisor_has_one_thread_and_an_inotify_watch_on_the_directory(sandbox):
    confdir, conf = watching_service(sandbox)
    supervisor = sandbox.supervisor_pid()
    assert tasks(supervisor) == 1, "the watcher must not start a thread"
    assert os.stat(confdir).st_ino in inotify_inodes(supervisor)
    restarted_after(sandbox, lambda: conf.write_text("a = 2\n"))
    assert tasks(supervisor) == 1
    assert [e for e in sandbox.events() if e["event"] == "config_changed"]
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_deleted_and_recreated_directory_is_watched_again(sandbox):
    confdir, conf = watching_service(sandbox)
    supervisor = sandbox.supervisor_pid()
    old_inode = os.stat(confdir).st_ino
    restarted_after(sandbox, lambda: shutil.rmtree(confdir))  # a deleted file is a change too

    def recreate():
        confdir.mkdir(mode=0o755)
        conf.write_text("a = 2\n")

    restarted_after(sandbox, recreate)
    poll_until(lambda: os.stat(confdir).st_ino in inotify_inodes(supervisor), what="the new directory watched")
    assert old_inode not in inotify_inodes(supervisor) or os.stat(confdir).st_ino == old_inode
    restarted_after(sandbox, lambda: conf.write_text("a = 3\n"))
    assert tasks(supervisor) == 1
    assert sandbox.cli("stop", "demo").returncode == 0
