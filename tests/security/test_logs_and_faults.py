"""Logs, events and faults: what a service user or a full disk must never do to the root supervisor.

Issue 10, run as root with `nobody` as the attacker (the service user who owns its log directory):

* item 4: events_file followed a planted symlink; a symlinked parent directory of log_file made
  root create the log where the attacker chose; `status` printed any file through a log symlink.
* item 5: a symlink at log_file plus `svctl reopen-logs` (or SIGUSR1, what logrotate sends) killed
  the supervisor; a non-empty directory at log_file.2 killed it at rotation.
* item 8: a full disk (tmpfs in a private mount namespace) or the fd limit killed the supervisor,
  silently; the service was no longer restarted and `stop` printed a traceback.
* item 3 (part): events and state.json must not carry the service's environment values.
* item 10 (part): concurrent stops got "Connection reset by peer"; a failure while daemonizing
  wrote its report into a descriptor that had been closed and reused.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import IS_ROOT, PYTHON, REPO, SERVICE, alive, poll_until, as_nobody, size_of

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody, the victim root")

NOBODY = pwd.getpwnam("nobody")



def users_log_dir(sandbox) -> Path:
    """A log directory the service user owns (like /var/log/jupyterhub owned by the hub's user)."""
    directory = sandbox.log / "svc"
    directory.mkdir(mode=0o755)
    os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    return directory


def root_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def supervisor_alive(sandbox, pid: int) -> bool:
    return alive(pid) and open(f"/proc/{pid}/comm").read().strip() == "demo"


def no_traceback(result: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in result.stdout + result.stderr


# ---- item 4: files the service user controls --------------------------------------------------


def test_events_file_symlink_planted_by_the_service_user_is_not_followed(sandbox):
    userdir = users_log_dir(sandbox)
    victim = root_file(sandbox.base / "victim.conf", "original\n")
    as_nobody(os.symlink, str(victim), str(userdir / "demo.json"))
    sandbox.service("demo", events_file=str(userdir / "demo.json"), log_file=str(userdir / "demo.log"))
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0 and no_traceback(result), result.stderr
    assert victim.read_text() == "original\n", "root appended events to the file the symlink names"
    assert any("demo.json" in p for p in sandbox.state()["problems"]), sandbox.state()["problems"]
    assert sandbox.cli("stop", "demo").returncode == 0
    assert victim.read_text() == "original\n"


def test_events_file_is_created_0600(sandbox):
    sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0
    assert stat.S_IMODE(os.stat(sandbox.log / "demo.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sandbox.log / "demo.log").st_mode) == 0o640


def test_log_file_under_a_symlinked_parent_directory_is_not_created_where_it_points(sandbox):
    userdir = users_log_dir(sandbox)
    elsewhere = sandbox.base / "cron.d"  # stands for any root directory: /etc/cron.d, /etc/sudoers.d
    elsewhere.mkdir(mode=0o755)
    as_nobody(os.symlink, str(elsewhere), str(userdir / "sub"))
    sandbox.service("demo", log_file=str(userdir / "sub" / "demo.log"))
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0 and no_traceback(result), result.stderr
    assert os.listdir(elsewhere) == [], "root created the log in the directory the attacker chose"
    assert any("demo.log" in p for p in sandbox.state()["problems"]), sandbox.state()["problems"]
    assert sandbox.cli("stop", "demo").returncode == 0
    assert os.listdir(elsewhere) == []


def test_status_does_not_print_a_file_the_log_symlink_names(sandbox):
    userdir = users_log_dir(sandbox)
    secret = root_file(sandbox.base / "shadow", "root:TOPSECRET-HASH:19000::::::\n", 0o600)
    log = userdir / "demo.log"
    sandbox.service("demo", log_file=str(log))
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: (size_of(log) or 0) > 0, what="the service's first line")

    def plant():
        os.unlink(log)
        os.symlink(secret, log)

    as_nobody(plant)
    for status in (sandbox.cli("status", "demo", "--lines", "10"), sandbox.cli("status", "demo", "--json")):
        assert status.returncode == 0, status.stdout + status.stderr
        assert "TOPSECRET" not in status.stdout + status.stderr
    from supervisor.unix.logcapture import tail

    assert tail(str(log)) == []
    assert sandbox.cli("stop", "demo").returncode == 0


def test_log_tail_reads_the_end_of_a_big_log(sandbox):
    from supervisor.unix.logcapture import tail

    log = sandbox.log / "big.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(100_000)))
    assert tail(str(log), 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail(str(sandbox.log / "absent.log")) == []


# ---- item 5: reopen and rotation can't kill the supervisor ------------------------------------


def test_reopen_through_a_planted_symlink_keeps_the_old_log_and_the_supervisor(sandbox):
    userdir = users_log_dir(sandbox)
    target = root_file(sandbox.base / "root-only.log", "", 0o600)
    log = userdir / "demo.log"
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], log_file=str(log))
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor = sandbox.supervisor_pid()
    poll_until(lambda: (size_of(log) or 0) > 0, what="output")
    kept = os.open(log, os.O_RDONLY)  # the file the supervisor writes to, after it is unlinked

    def plant():
        os.unlink(log)
        os.symlink(target, log)

    try:
        as_nobody(plant)
        result = sandbox.cli("reopen-logs", "demo")
        assert supervisor_alive(sandbox, supervisor), "reopen-logs killed the supervisor"
        assert result.returncode == 1 and "demo.log" in result.stderr and no_traceback(result), result.stderr
        os.kill(supervisor, signal.SIGUSR1)  # logrotate's way
        poll_until(lambda: sum(e["event"] == "reopen_failed" for e in sandbox.events()) >= 2,
                   what="two failed reopens logged")
        assert supervisor_alive(sandbox, supervisor)
        size = os.fstat(kept).st_size
        poll_until(lambda: os.fstat(kept).st_size > size, what="output still captured in the old file")
        assert target.read_text() == ""
        poll_until(lambda: any("demo.log" in p for p in sandbox.state()["problems"]), what="the problem shown")
        assert sandbox.cli("status", "demo").returncode == 0
    finally:
        os.close(kept)
    assert sandbox.cli("stop", "demo").returncode == 0


def test_rotation_skips_a_directory_planted_at_a_backup_name(sandbox):
    userdir = users_log_dir(sandbox)
    log = userdir / "demo.log"

    def plant():
        (userdir / "demo.log.1").write_text("old\n")
        (userdir / "demo.log.2").mkdir()
        (userdir / "demo.log.2" / "keep").write_text("x")

    as_nobody(plant)
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], log_file=str(log), log_max_bytes=1500,
                    log_backups=2)
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor = sandbox.supervisor_pid()
    poll_until(lambda: "tick" in (userdir / "demo.log.1").read_text(), timeout=10, what="a rotation")
    poll_until(lambda: any("demo.log.1" in p for p in sandbox.state().get("problems", [])), what="the problem shown")
    time.sleep(0.3)  # more rotations
    assert supervisor_alive(sandbox, supervisor), "rotation killed the supervisor"
    assert (userdir / "demo.log.2" / "keep").read_text() == "x"
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0


# ---- item 8: full disks and the fd limit --------------------------------------------------------


class PrivateMounts:
    """A mount namespace of our own, held by a sleeping process, with the CLI run inside it.

    Every supervisor the CLI starts there lives in that namespace, so a tmpfs mounted over the
    sandbox's log or run directory is what it sees, while the rest of the system sees nothing.
    """

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])
        mine = os.readlink("/proc/self/ns/mnt")
        poll_until(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != mine, what="the namespace")

    def inside(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *command],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def mount_tmpfs(self, directory: Path, size: str) -> None:
        result = self.inside("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory))
        assert result.returncode == 0, result.stderr

    def path(self, path: Path) -> Path:
        """PATH as the namespace sees it."""
        return Path(f"/proc/{self.holder.pid}/root{path}")

    def fill(self, directory: Path) -> None:
        with open(self.path(directory / "filler"), "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        with open(self.path(directory / "filler"), "ab", buffering=0) as handle:  # the last bytes too
            try:
                while True:
                    handle.write(b"\0")
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        box = self.sandbox
        return self.inside(PYTHON, "-m", "supervisor", "--config-dir", str(box.etc), "--run-dir",
                           str(box.run / "svctl"), *args)

    def state(self) -> dict:
        try:
            return json.loads(self.path(self.sandbox.run / "svctl" / "demo" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def service_pid(self) -> int | None:
        return (self.state().get("service") or {}).get("pid")

    def close(self) -> None:
        """Kill what lives in the namespace (only what we started there can), then the holder."""
        namespace = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.holder.pid:
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                        os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def mounts(sandbox):
    namespace = PrivateMounts(sandbox)
    yield namespace
    namespace.close()


def restarted_after_a_crash(sandbox, mounts) -> int:
    old = mounts.service_pid()
    assert alive(old)
    os.kill(old, signal.SIGKILL)
    new = poll_until(lambda: (pid := mounts.service_pid()) not in (None, old) and alive(pid) and pid, timeout=10,
                     what="the service restarted")
    poll_until(lambda: mounts.state()["machine"]["state"] == "running", what="it running again")
    assert alive(new)
    return new


def test_a_full_log_directory_neither_fails_the_start_nor_kills_the_supervisor(sandbox, mounts):
    mounts.mount_tmpfs(sandbox.log, "64k")
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], restart="always", min_uptime=0)
    mounts.fill(sandbox.log)
    result = mounts.cli("start", "demo")
    assert result.returncode == 0 and no_traceback(result), result.stdout + result.stderr
    poll_until(lambda: any("No space left on device" in p for p in mounts.state().get("problems", [])),
               what="the full disk shown as a problem")
    restarted_after_a_crash(sandbox, mounts)
    poll_until(lambda: any("bytes of output dropped" in p for p in mounts.state().get("problems", [])),
               what="dropped output counted")
    status = mounts.cli("status", "demo")
    assert status.returncode == 0 and "is running" in status.stdout and no_traceback(status), status.stderr
    stop = mounts.cli("stop", "demo")
    assert stop.returncode == 0 and no_traceback(stop), stop.stdout + stop.stderr
    assert mounts.state()["machine"]["state"] == "stopped"


def test_a_full_run_directory_does_not_lose_the_service(sandbox, mounts):
    mounts.mount_tmpfs(sandbox.run, "512k")  # the PID file and the run directory
    sandbox.service("demo", restart="always", min_uptime=0)
    result = mounts.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    mounts.fill(sandbox.run)
    restarted_after_a_crash(sandbox, mounts)
    status = mounts.cli("status", "demo")
    assert status.returncode == 0 and "is running" in status.stdout and no_traceback(status), status.stderr
    poll_until(lambda: any("No space left on device" in p for p in mounts.state().get("problems", [])),
               what="the full run directory shown as a problem")
    restarted_after_a_crash(sandbox, mounts)  # and again
    stop = mounts.cli("stop", "demo")
    assert stop.returncode == 0 and no_traceback(stop), stop.stdout + stop.stderr
    assert not mounts.path(sandbox.run / "demo.pid").exists()


def test_a_lost_run_directory_is_made_again(sandbox):
    sandbox.service("demo", restart="always", min_uptime=0)
    assert sandbox.cli("start", "demo").returncode == 0
    service = sandbox.service_pid()
    shutil.rmtree(sandbox.run / "svctl" / "demo")
    os.kill(service, signal.SIGKILL)  # the next state.json write finds the directory gone
    poll_until(lambda: (pid := sandbox.service_pid()) not in (None, service) and alive(pid), timeout=10,
               what="the restarted service in a new state.json")
    poll_until(lambda: sandbox.state()["machine"]["state"] == "running", what="it running")
    assert sandbox.cli("status", "demo").returncode == 0
    new = sandbox.service_pid()
    stop = sandbox.cli("stop", "demo")
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
    assert not alive(new) and not (sandbox.run / "demo.pid").exists()


def test_a_lost_log_directory_is_made_again_at_reopen(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"])
    assert sandbox.cli("start", "demo").returncode == 0
    shutil.rmtree(sandbox.log)
    result = sandbox.cli("reopen-logs", "demo")
    assert result.returncode == 0, result.stderr
    log = sandbox.log / "demo.log"
    poll_until(lambda: (size_of(log) or 0) > 0, what="output in the new log file")
    assert [e["event"] for e in sandbox.events()] == ["logs_reopened"]
    assert sandbox.cli("stop", "demo").returncode == 0


def test_events_that_cannot_be_written_go_to_stderr_and_syslog_rate_limited(capsys):
    from supervisor.faults import FALLBACK_BURST, Faults

    class Syslog:  # records instead of filling the host's log
        LOG_ERR = 3
        lines: list = []

        def syslog(self, _priority, text):
            self.lines.append(text)

    faults = Faults("demo")
    faults._syslog = Syslog()
    for number in range(50):
        faults.fallback(f"line {number}")
    stderr = capsys.readouterr().err.splitlines()
    assert stderr == [f"svctl demo: line {n}" for n in range(FALLBACK_BURST)]
    assert Syslog.lines == [f"line {n}" for n in range(FALLBACK_BURST)]


def test_the_fd_limit_does_not_kill_the_supervisor(sandbox):
    sandbox.service("demo", restart="always", min_uptime=0, backoff_initial=0.1, backoff_max=0.2,
                    give_up_after=0)
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor, service = sandbox.supervisor_pid(), sandbox.service_pid()
    # no new descriptor at all: the limit is the lowest free descriptor number (the kernel hands out
    # the lowest free one, and a closed launcher pipe may have left a hole below the highest)
    used = {int(fd) for fd in os.listdir(f"/proc/{supervisor}/fd")}
    limit = min(set(range(len(used) + 1)) - used)  # the soft limit only: a hard one needs CAP_SYS_RESOURCE
    subprocess.run(["prlimit", f"--pid={supervisor}", f"--nofile={limit}:"], check=True)
    os.kill(service, signal.SIGKILL)
    poll_until(lambda: any(e["event"] == "exited" and e.get("pid") == service for e in sandbox.events()),
               what="the crash seen")
    time.sleep(0.5)  # restart attempts under the limit
    assert supervisor_alive(sandbox, supervisor), "the fd limit killed the supervisor"
    # the events file was open before the limit: it says why (state.json may not be writable now:
    # a new state needs a descriptor, and its reserve is spent on the first failed write)
    failures = [e for e in sandbox.events() if e["event"] == "start_failed"]
    assert failures and all("Too many open files" in e["reason"] for e in failures), failures
    attempts = len(failures)
    assert attempts < 20, f"{attempts} spawn attempts in half a second: a tight loop, not a backoff"
    subprocess.run(["prlimit", f"--pid={supervisor}", "--nofile=1024:"], check=True)
    poll_until(lambda: (pid := sandbox.service_pid()) not in (None, service) and alive(pid), timeout=10,
               what="the service restarted once fds are available")
    stop = sandbox.cli("stop", "demo")
    assert stop.returncode == 0 and no_traceback(stop), stop.stderr


# ---- item 3 (part): no environment values in events or state.json -------------------------------


def test_environment_values_stay_out_of_events_and_state(sandbox):
    secret = "tok-3f9a7c1d-very-secret"
    sandbox.service("demo", environment={"API_TOKEN": secret, "SHORT": "abc"},
                    check=["/bin/sh", "-c", "echo API_TOKEN=$API_TOKEN; env; exit 1"])
    assert sandbox.cli("start", "demo").returncode == 0
    assert sandbox.cli("reload", "demo").returncode == 6  # the check fails: rejected
    poll_until(lambda: any(e["event"] == "check_finished" for e in sandbox.events()), what="the check event")
    events = (sandbox.log / "demo.json").read_text()
    assert secret not in events and "API_TOKEN=***" in events
    state_text = (sandbox.run / "svctl" / "demo" / "state.json").read_text()
    assert secret not in state_text
    record = json.loads(state_text)["config"]
    assert record["redacted"] is True and "environment" not in record["data"]
    assert sandbox.cli("stop", "demo").returncode == 0
    assert secret not in (sandbox.log / "demo.json").read_text()


# ---- item 10 (part): concurrent stops, and the launcher's descriptor ---------------------------------


def test_twenty_concurrent_stops_all_succeed(sandbox):
    """The service dies at once on TERM: most requests arrive while the supervisor is exiting."""
    sandbox.service("demo")
    for _round in range(5):
        assert sandbox.cli("start", "demo").returncode == 0
        service = sandbox.service_pid()
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: sandbox.cli("stop", "demo"), range(20)))
        failures = [r.stdout + r.stderr for r in results if r.returncode != 0 or not no_traceback(r)]
        assert not failures, failures
        assert not alive(service) and not (sandbox.run / "demo.pid").exists()


def test_a_failure_after_the_launcher_answered_writes_nowhere_else(sandbox, monkeypatch):
    """The launcher's pipe is closed once answered; its number is reused (here by a file, in the
    daemon by a control connection): the failure report must not go there."""
    from supervisor import launch
    from supervisor.unix import rundir
    from supervisor.unix.pidfile import SupervisorLock

    witness = sandbox.base / "reused-descriptor"

    def daemon_that_fails_after_answering(config, run_dir, lock, launcher, adopt):
        if isinstance(launcher, int):  # the old interface handed out the bare descriptor
            number, launcher = launcher, launch.Launcher(launcher)
        else:
            number = launcher.fd
        launcher.answer(0, "started")
        while (fd := os.open(witness, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)) != number:
            assert fd < number, "the closed descriptor was not reused"
        raise RuntimeError("the loop failed later")

    monkeypatch.setattr(launch, "become_daemon", daemon_that_fails_after_answering)
    sandbox.service("demo")
    from supervisor import config as configuration

    config = configuration.load("demo", str(sandbox.etc))
    run_dir = str(sandbox.run / "svctl")
    lock = SupervisorLock.acquire(rundir.ensure(run_dir, "demo"), config.pidfile)
    try:
        assert launch.launch(config, run_dir, lock, None) == (0, "started")
    finally:
        lock.remove()
    assert witness.read_bytes() == b"", "the failure report went into a descriptor reused by someone else"
