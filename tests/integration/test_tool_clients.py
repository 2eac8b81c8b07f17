"""svctl driven by the tools that already drive init.d services (issue 12): start-stop-daemon with
the seed's own stop schedule, logrotate with Debian's usual stanza, and status pollers that must
never see a lie while a service restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, poll_until, processes_with, size_of

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")
CLIENT_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def needs(tool: str) -> None:
    if shutil.which(tool, path=CLIENT_PATH["PATH"]) is None:
        pytest.fail(f"{tool} is not installed (.ci/run installs it)")


def test_start_stop_daemon_with_the_same_schedule_never_orphans_a_term_ignoring_service(sandbox):
    """s-s-d runs TERM/3/KILL/5 against the supervisor while the supervisor runs it against the
    service: the service must be KILLed before s-s-d gives up on the supervisor and KILLs it."""
    needs("start-stop-daemon")
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag, "--ignore-term"], stop="TERM/3/KILL/5")
    for _ in range(2):
        assert sandbox.cli("start", "demo").returncode == 0
        service, supervisor = sandbox.service_pid(), sandbox.supervisor_pid()
        reaper = Reaper(supervisor)  # pytest is a subreaper: play init, or s-s-d waits on a zombie
        try:
            result = subprocess.run(["start-stop-daemon", "--stop", "--retry=TERM/3/KILL/5", "--pidfile",
                                     str(sandbox.run / "demo.pid")], capture_output=True, text=True,
                                    env=CLIENT_PATH, timeout=20)
        finally:
            reaper.stop()
        assert result.returncode == 0, result.stdout + result.stderr
        poll_until(lambda service=service: not alive(service), timeout=2, what="the service gone with its supervisor")
        assert processes_with(tag) == []
        kills = [e for e in sandbox.events() if e["event"] == "stopped"]
        assert kills, "the supervisor finished its own stop (it was not KILLed by s-s-d first)"


class Reaper(threading.Thread):
    """Reap one PID as soon as it exits, as init would for a daemon (by PID: never anyone else)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.002)

    def stop(self) -> None:
        self.done.set()
        self.join()


LOGROTATE_STANZA = """{log} {{
    daily
    rotate 4
    compress
    delaycompress
    missingok
    notifempty
    postrotate
        {svctl} reload demo > /dev/null
    endscript
}}
"""


def test_logrotates_debian_stanza_keeps_every_line_and_restarts_nothing(sandbox):
    """compress + delaycompress + postrotate reload: after the second rotation the supervisor must
    be writing to the new file (not the deleted .1), and identical watched bytes restart nothing."""
    needs("logrotate")
    conf = sandbox.base / "app.conf"
    conf.write_text("a = 1\n")
    log = sandbox.log / "demo.log"
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], watch=[str(conf)])
    assert sandbox.cli("start", "demo").returncode == 0
    service = sandbox.service_pid()
    svctl = " ".join([PYTHON, "-m", "supervisor", "--config-dir", str(sandbox.etc), "--run-dir",
                      str(sandbox.run / "svctl")])
    stanza = sandbox.base / "logrotate.conf"
    stanza.write_text(LOGROTATE_STANZA.format(log=log, svctl=svctl))
    state = sandbox.base / "logrotate.state"
    for _ in range(2):
        poll_until(lambda: (size_of(log) or 0) > 0, what="output in the live log")
        rotated = subprocess.run(["logrotate", "--force", "--state", str(state), str(stanza)],
                                 capture_output=True, text=True, env=CLIENT_PATH, timeout=30, cwd=os.getcwd())
        assert rotated.returncode == 0, rotated.stderr
    assert (sandbox.log / "demo.log.2.gz").exists() and (sandbox.log / "demo.log.1").exists()
    size = log.stat().st_size if log.exists() else 0
    poll_until(lambda: (size_of(log) or 0) > size, what="new output in the live log")
    assert sandbox.service_pid() == service, "a postrotate reload of identical config restarted the service"
    assert sandbox.cli("stop", "demo").returncode == 0


def test_copytruncate_resets_the_rotation_size(sandbox):
    """After logrotate's copytruncate the file is empty again: svctl must not rotate it at once."""
    log = sandbox.log / "demo.log"
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], log_max_bytes=1500, log_backups=2)
    assert sandbox.cli("start", "demo").returncode == 0  # ~25 bytes every 50 ms
    poll_until(lambda: (size_of(log) or 0) > 1000, what="the log nearly full")
    shutil.copy(log, sandbox.log / "copied")
    os.truncate(log, 0)  # what copytruncate does
    time.sleep(0.5)  # ten ticks: ~250 bytes, which only the old size would push over 1500
    assert not (sandbox.log / "demo.log.1").exists(), "rotated although the file was emptied"
    assert 0 < log.stat().st_size < 1500
    assert sandbox.cli("stop", "demo").returncode == 0


def test_status_never_lies_while_the_service_restarts(sandbox):
    """A poller every few ms across 20 restarts: 0 or 3 (the moment between stop and start), never
    4 ("unknown") and never 1 for a live supervisor that is only starting."""
    sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            result = sandbox.cli("status", "demo")
            seen.append((result.returncode, result.stdout.splitlines()[0] if result.stdout else result.stderr))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(20):
            assert sandbox.cli("restart", "demo").returncode == 0
    finally:
        stop.set()
        poller.join()
    assert sandbox.cli("stop", "demo").returncode == 0
    lies = [entry for entry in seen if entry[0] in (1, 4) or "stale" in entry[1]]
    assert len(seen) > 20 and lies == [], lies[:5]


def test_service_status_all_shows_a_running_service_whose_log_says_usage(sandbox, tmp_path):
    """`service --status-all` greps the init script's status output: a log tail saying "usage"
    made a running service `[ ? ]`. The shim and a non-tty status print the one LSB line."""
    needs("service")
    sandbox.service("demo", command=["/bin/sh", "-c", "echo 'usage: demo [options]'; exec sleep 1000"])
    assert sandbox.cli("start", "demo").returncode == 0
    initd = tmp_path / "init.d"
    initd.mkdir()
    svctl = os.path.join(os.path.dirname(PYTHON), "svctl")  # the shim calls svctl by absolute path
    install = subprocess.run([svctl, "--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl"),
                              "install", "demo", "--no-systemd", "--print"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    shim_text = install.stdout.split("<==\n", 1)[1]
    (initd / "demo").write_text(shim_text)
    (initd / "demo").chmod(0o755)
    # the real `service --status-all`, with this directory as /etc/init.d (a private mount namespace)
    listing = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              f"mount --bind {initd} /etc/init.d && service --status-all"],
                             capture_output=True, text=True, env=CLIENT_PATH, timeout=60)
    assert sandbox.cli("stop", "demo").returncode == 0
    assert "[ + ]  demo" in listing.stdout, listing.stdout + listing.stderr


def test_reopen_logs_on_a_stopped_service_is_success(sandbox):
    """logrotate's postrotate runs whether or not the service is up; without `|| true` too."""
    sandbox.service("demo")
    result = sandbox.cli("reopen-logs", "demo")
    assert result.returncode == 0 and "not running" in result.stdout, result.stderr


def test_start_stop_daemon_remove_pidfile_then_start_gives_no_second_instance(sandbox):
    """`start-stop-daemon --stop --remove-pidfile` without --retry: TERM to the supervisor and the
    PID file gone at once, while the supervisor is still stopping its service. A start right after
    must not add a second supervisor next to the one still on its way out."""
    needs("start-stop-daemon")
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag, "--ignore-term"], stop="TERM/1/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor = sandbox.supervisor_pid()
    reaper = Reaper(supervisor)
    try:
        stopped = subprocess.run(["start-stop-daemon", "--stop", "--remove-pidfile", "--pidfile",
                                  str(sandbox.run / "demo.pid")], capture_output=True, text=True, env=CLIENT_PATH,
                                 timeout=20)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not (sandbox.run / "demo.pid").exists()
        started = sandbox.cli("start", "demo")  # refused while stopping, or started after: never both
        assert len(processes_with(tag)) <= 1
        poll_until(lambda: not alive(supervisor), timeout=5, what="the first supervisor gone")
    finally:
        reaper.stop()
    if started.returncode != 0:
        assert "stopping" in started.stderr, started.stderr
        assert sandbox.cli("start", "demo").returncode == 0
    assert len(processes_with(tag)) == 1
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0
    assert processes_with(tag) == []


def test_a_stop_during_a_start_stops_it_and_a_start_during_a_stop_starts_after_it(sandbox):
    """Overlapping verbs: stop must not answer "not running" to a start under way; start must not
    fail with "is stopping" but wait for the stop and then start."""
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag, "--ignore-term"], stop="TERM/0.5/KILL/1",
                    start_seconds=0.5)
    prefix = [PYTHON, "-m", "supervisor", "--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    starting = subprocess.Popen([*prefix, "start", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.1)
    stop = sandbox.cli("stop", "demo")
    starting.communicate(timeout=30)
    assert stop.returncode == 0, stop.stderr
    poll_until(lambda: processes_with(tag) == [], timeout=5, what="the started service stopped by the stop")
    assert sandbox.cli("status", "demo").returncode == 3

    assert sandbox.cli("start", "demo").returncode == 0
    stopping = subprocess.Popen([*prefix, "stop", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)  # inside the 0.5 s TERM wait
    start = sandbox.cli("start", "demo")
    stopping.communicate(timeout=30)
    assert start.returncode == 0, start.stderr
    assert sandbox.cli("status", "demo").returncode == 0 and len(processes_with(tag)) == 1
    assert sandbox.cli("stop", "demo").returncode == 0


def test_start_stop_daemon_same_schedule_stops_what_lingers_in_the_group(sandbox):
    """The main process dies at TERM but its TERM-ignoring children stay: the group gets the rest of
    the same schedule, so s-s-d's KILL of the supervisor comes too late to orphan them."""
    needs("start-stop-daemon")
    tag = f"--tag={sandbox.base.name}"
    script = ("import os, signal, sys, time\n"
              "for _ in range(2):\n"
              "    if os.fork() == 0:\n"
              "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "        time.sleep(1000)\n"
              f"time.sleep(1000)  # {tag}\n")
    sandbox.service("demo", command=[PYTHON, "-c", script], stop="TERM/2/KILL/2")
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: len(processes_with(tag)) == 3, what="the service and its two children")
    reaper = Reaper(sandbox.supervisor_pid())
    try:
        result = subprocess.run(["start-stop-daemon", "--stop", "--retry=TERM/2/KILL/2", "--pidfile",
                                 str(sandbox.run / "demo.pid")], capture_output=True, text=True, env=CLIENT_PATH,
                                timeout=20)
    finally:
        reaper.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    poll_until(lambda: processes_with(tag) == [], timeout=2, what="nothing of the group left")
    assert sandbox.cli("status", "demo").returncode == 3
