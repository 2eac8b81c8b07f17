"""The service's user cannot turn svctl's config rollback or file watching against root.

Issue 10 item 1: a service running as `nobody`, watching a file in a directory it owns, swaps the
file for a symlink to a root-owned file and makes the next start fail. The rollback used to
resolve the link and write the snapshot over root's file (chowned to the saved owner), or, for a
file that did not exist when the snapshot was taken, delete root's file. Now the rollback acts
with nobody's rights on the path itself: the link is replaced (or removed), its target untouched.

Issue 10 item 5: a FIFO swapped in at the watched path made the supervisor block forever in
open() when the watcher re-read the file, and `svctl stop` hung. Now it is "unreadable", a
rejected config, and stop returns within its schedule.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import time

import pytest

from conftest import IS_ROOT, alive, free_port, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody")

SYSTEM_PYTHON = "/usr/bin/python3"  # nobody cannot run the venv's interpreter under /root
# Reads its config at once and is ready once it listens; with "fail": N it dies N seconds later
# without ever listening (a start that fails slowly: time for the attacker to swap the file).
SLOW_FAILING_SERVICE = """\
import json, socket, sys, time
config = json.load(open(sys.argv[1]))
print("running on", config, flush=True)
if config.get("fail"):
    time.sleep(float(config["fail"]))
    sys.exit(1)
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("::1", int(sys.argv[2])))
server.listen()
while True:
    time.sleep(1000)
"""
VICTIM_TEXT = '{"message": "root\'s own file"}\n'



def as_nobody(*command: str) -> None:
    """The attacker's step: a shell command as nobody."""
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/sh", "-c",
                    " ".join(command)], check=True, timeout=10)


class Attack:
    """A service run as nobody from a config directory nobody owns, and a root file next to it."""

    def __init__(self, sandbox, extra_watched: bool = False) -> None:
        nobody = pwd.getpwnam("nobody")
        self.box = sandbox
        self.confdir = sandbox.base / "conf"
        self.confdir.mkdir(mode=0o755)
        os.chown(self.confdir, nobody.pw_uid, nobody.pw_gid)
        self.conf, self.extra = self.confdir / "app.json", self.confdir / "extra.json"
        self.write_as_nobody({"message": "good"})
        self.victim = sandbox.base / "victim.json"
        self.victim.write_text(VICTIM_TEXT)
        os.chmod(self.victim, 0o644)
        script = sandbox.base / "slow_failing_service.py"
        script.write_text(SLOW_FAILING_SERVICE)
        os.chmod(script, 0o644)
        watch = [str(self.conf)] + ([str(self.extra)] if extra_watched else [])
        port = free_port()
        sandbox.service("demo", command=[SYSTEM_PYTHON, str(script), str(self.conf), str(port)], user="nobody",
                        watch=watch, ready=f"tcp://[::1]:{port}", ready_timeout=10)

    def write_as_nobody(self, config: dict) -> None:
        temporary = self.confdir / ".app.json.new"
        as_nobody(f"printf '%s' '{json.dumps(config)}' > {temporary} && mv -f {temporary} {self.conf}")

    def start(self) -> None:
        assert self.box.cli("start", "demo").returncode == 0
        manifest = self.box.run / "svctl" / "demo" / "lkg" / "manifest.json"
        poll_until(manifest.exists, what="the first known-good snapshot")

    def make_the_next_start_fail_slowly(self) -> None:
        self.write_as_nobody({"message": "bad", "fail": 3})
        log = self.box.log / "demo.log"
        poll_until(lambda: log.exists() and "'fail': 3" in log.read_text(), timeout=10,
                   what="the service starting on the failing config")

    def wait_for_the_rollback(self) -> None:
        try:
            poll_until(lambda: [e for e in self.box.events() if e["event"] in ("rollback", "snapshot_failed")],
                       timeout=15, what="the rollback")
        except AssertionError:
            seen = [(e["event"], e.get("reason")) for e in self.box.events()]
            raise AssertionError(f"no rollback; events: {seen}") from None

    def victim_untouched(self) -> bool:
        info = os.lstat(self.victim)
        return (stat.S_ISREG(info.st_mode) and (info.st_uid, info.st_gid) == (0, 0)
                and self.victim.read_text() == VICTIM_TEXT)


def test_rollback_replaces_the_planted_symlink_and_never_writes_roots_file(sandbox):
    attack = Attack(sandbox)
    attack.start()
    attack.make_the_next_start_fail_slowly()
    as_nobody(f"ln -s {attack.victim} {attack.confdir}/link && mv -f {attack.confdir}/link {attack.conf}")
    attack.wait_for_the_rollback()
    assert attack.victim.exists(), "root's file is gone"
    assert attack.victim_untouched(), (
        f"root's file was written through the symlink: {attack.victim.read_text()!r}, "
        f"owner uid {os.lstat(attack.victim).st_uid}")
    info = os.lstat(attack.conf)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == pwd.getpwnam("nobody").pw_uid
    assert json.loads(attack.conf.read_text()) == {"message": "good"}, "the good config is back"
    assert sandbox.cli("stop", "demo").returncode == 0


def test_rollback_of_a_file_absent_when_good_removes_the_link_not_roots_file(sandbox):
    attack = Attack(sandbox, extra_watched=True)
    attack.start()
    attack.make_the_next_start_fail_slowly()
    as_nobody(f"ln -s {attack.victim} {attack.extra}")
    attack.wait_for_the_rollback()
    assert attack.victim.exists(), "root's file was deleted through the symlink"
    assert attack.victim_untouched()
    assert not os.path.lexists(attack.extra), "the planted link itself is removed"
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_fifo_at_the_watched_path_is_rejected_and_stop_still_returns(sandbox):
    nobody = pwd.getpwnam("nobody")
    confdir = sandbox.base / "conf"
    confdir.mkdir(mode=0o755)
    conf = confdir / "app.conf"
    conf.write_text("a = 1\n")
    os.chown(confdir, nobody.pw_uid, nobody.pw_gid)
    os.chown(conf, nobody.pw_uid, nobody.pw_gid)
    # not tests/children/service.py: nobody may not be able to read the checkout (a 0700 clone)
    sandbox.service("demo", command=[SYSTEM_PYTHON, "-c", "import time; time.sleep(1000)"], user="nobody",
                    watch=[str(conf)],
                    stop="TERM/1/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    service = sandbox.service_pid()
    as_nobody(f"mkfifo {confdir}/fifo && mv -f {confdir}/fifo {conf} && touch {conf}")
    time.sleep(1.0)  # the debounced (0.2 s) re-read of the file has happened by now
    started = time.monotonic()
    try:
        result = sandbox.cli("stop", "demo", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("svctl stop hung: the supervisor is blocked opening the FIFO")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 6, f"stop took {took:.1f}s; its schedule is TERM/1/KILL/1"
    rejected = [e for e in sandbox.events() if e["event"] == "reload_refused"]
    assert rejected and "unreadable" in rejected[-1]["reason"], sandbox.events()
    poll_until(lambda: not alive(service), what="the service stopped")
