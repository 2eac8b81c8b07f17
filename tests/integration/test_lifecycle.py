"""Starting, stopping and reading status of real supervisors (issue: the foundation)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, free_port, poll_until, processes_with

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")



def test_twenty_parallel_starts_give_one_supervisor_and_one_service(sandbox):
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag])
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: sandbox.cli("start", "demo"), range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert len(processes_with(tag)) == 1
    # this sandbox's supervisors only: other tests (and other people) on the machine run "demo"s too
    supervisors = [pid for pid in processes_with(str(sandbox.etc)) if open(f"/proc/{pid}/comm").read().strip() == "demo"]
    assert supervisors == [sandbox.supervisor_pid()]
    assert sandbox.cli("stop", "demo").returncode == 0
    assert processes_with(tag) == []


def test_the_pid_file_is_the_supervisors_own_and_looks_like_a_daemons(sandbox):
    """start-stop-daemon, status_of_proc and logrotate read it: one PID, newline, root 0644."""
    sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    pidfile = sandbox.run / "demo.pid"
    info = os.stat(pidfile)
    pid = int(pidfile.read_text())
    assert pidfile.read_text() == f"{pid}\n" and oct(info.st_mode & 0o777) == "0o644" and info.st_uid == 0
    assert open(f"/proc/{pid}/comm").read().strip() == "demo"
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    assert int(stat[3]) != os.getsid(0) and int(stat[3]) != pid  # detached: own session, not its leader
    ssd = subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pidfile), "--name", "demo"])
    assert ssd.returncode == 0
    service = sandbox.service_pid()
    service_stat = open(f"/proc/{service}/stat").read().rsplit(")", 1)[1].split()
    assert int(service_stat[3]) == service, "the service leads its own session"
    assert sandbox.cli("stop", "demo").returncode == 0
    assert not pidfile.exists()
    ssd = subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pidfile), "--name", "demo"])
    assert ssd.returncode == 3


def test_stop_escalates_to_kill_after_the_term_timeout(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--ignore-term"], stop="TERM/1/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    started = time.monotonic()
    assert sandbox.cli("stop", "demo").returncode == 0
    assert 1.0 <= time.monotonic() - started < 2.5
    exits = [e for e in sandbox.events() if e["event"] == "exited"]
    assert exits[-1]["status"] == "killed by SIGKILL"


def test_a_process_that_outlives_the_schedule_fails_the_stop_and_keeps_the_pid_file(sandbox):
    """A schedule that ends without the process gone: stop exits 1, the supervisor stays in charge.
    (A process that truly survives SIGKILL needs an uninterruptible sleep; a schedule of ignored signals
    exercises the same path.)"""
    sandbox.service("demo", command=[PYTHON, SERVICE, "--ignore-term", "--ignore-usr1"], stop="TERM/0.3/USR1/0.3")
    assert sandbox.cli("start", "demo").returncode == 0
    service = sandbox.service_pid()
    result = sandbox.cli("stop", "demo")
    assert result.returncode == 1 and "still running after the stop schedule" in result.stderr
    assert (sandbox.run / "demo.pid").exists() and alive(service)
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "stop failed" in status.stdout
    sandbox.service("demo", command=[PYTHON, SERVICE, "--ignore-term", "--ignore-usr1"], stop="TERM/0.3/KILL/1")
    os.kill(service, signal.SIGKILL)  # it finally goes: the pending stop completes
    poll_until(lambda: not (sandbox.run / "demo.pid").exists(), what="supervisor to finish the stop")


def test_a_service_that_dies_during_start_fails_start_with_its_output(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--exit", "3"])
    result = sandbox.cli("start", "demo")
    assert result.returncode == 1
    assert "failed to start: exit status 3" in result.stderr and "exiting on purpose" in result.stderr
    assert not (sandbox.run / "demo.pid").exists()
    assert sandbox.cli("status", "demo").returncode == 3


def test_a_missing_program_is_exit_5_and_nothing_is_forked(sandbox):
    sandbox.service("demo", command=["/nonexistent/daemon"])
    result = sandbox.cli("start", "demo")
    assert result.returncode == 5 and "not installed" in result.stderr
    assert not (sandbox.run / "demo.pid").exists()


def test_start_waits_for_a_tcp_probe_on_an_ipv6_literal(sandbox):
    port = free_port()
    sandbox.service("demo", command=[PYTHON, SERVICE, "--delay", "0.5", "--listen", str(port)],
                    ready=f"tcp://[::1]:{port}", ready_timeout=10)
    started = time.monotonic()
    assert sandbox.cli("start", "demo").returncode == 0
    assert time.monotonic() - started >= 0.5
    with socket.create_connection(("::1", port), timeout=1):
        pass  # start returned only once the service was really accepting connections
    report = json.loads(sandbox.cli("status", "demo", "--json").stdout)
    assert report["machine"]["ready_at"] is not None
    assert sandbox.cli("stop", "demo").returncode == 0


def test_not_ready_in_time_fails_start_and_leaves_nothing(sandbox):
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag], ready=f"tcp://[::1]:{free_port()}", ready_timeout=0.5)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 1 and "not ready within 0.5s" in result.stderr
    assert processes_with(tag) == [] and not (sandbox.run / "demo.pid").exists()


def test_status_json_and_text(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"])
    assert sandbox.cli("start", "demo").returncode == 0
    text = sandbox.cli("status", "demo")
    assert text.returncode == 0 and text.stdout.startswith(f"demo is running (pid {sandbox.service_pid()}, up ")
    assert "tick" not in text.stdout  # no terminal: the status lines only (scripts grep them)
    tail = sandbox.cli("status", "demo", "--lines", "3")
    assert tail.stdout.count("tick") == 3  # the last lines of output, when asked for
    report = json.loads(sandbox.cli("status", "demo", "--json").stdout)
    assert report["code"] == 0 and report["machine"]["state"] == "running"
    assert report["supervisor_pid"] == sandbox.supervisor_pid() and report["service_pid"] == sandbox.service_pid()
    assert sandbox.cli("stop", "demo").returncode == 0


def test_invalid_service_file_is_one_line_and_exit_6(sandbox):
    (sandbox.etc / "demo.toml").write_text('command = ["/bin/true"]\nstop = "TERM/soon"\n')
    for verb in ("start", "status", "stop"):
        result = sandbox.cli(verb, "demo")
        assert result.returncode == 6
        assert result.stderr.count("\n") == 1 and "demo.toml: stop:" in result.stderr


def test_unknown_verb_prints_usage_exit_3(sandbox):
    result = sandbox.cli("frobnicate", "demo")
    assert result.returncode == 3 and "Usage:" in result.stderr


def test_run_supervises_in_the_foreground_and_stops_on_sigint(sandbox):
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag])
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    runner = subprocess.Popen([sys.executable, "-m", "supervisor", *prefix, "run", "demo"], cwd=sandbox.base)
    try:
        poll_until(lambda: (sandbox.state().get("machine") or {}).get("state") == "running", what="running")
        assert sandbox.supervisor_pid() == runner.pid and len(processes_with(tag)) == 1
        runner.send_signal(signal.SIGINT)
        assert runner.wait(10) == 0
        assert processes_with(tag) == [] and not (sandbox.run / "demo.pid").exists()
    finally:
        runner.kill()
        runner.wait()


def test_sighup_to_the_supervisor_reloads_like_the_cli(sandbox):
    hup_log = sandbox.base / "hups"
    sandbox.service("demo", command=[PYTHON, SERVICE, "--hup-log", str(hup_log)], reload="HUP")
    assert sandbox.cli("start", "demo").returncode == 0
    os.kill(sandbox.supervisor_pid(), signal.SIGHUP)
    poll_until(lambda: hup_log.exists() and len(hup_log.read_text().splitlines()) == 1, what="one HUP")
    assert sandbox.cli("reload", "demo").returncode == 0
    poll_until(lambda: len(hup_log.read_text().splitlines()) == 2, what="second HUP")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_running_service_whose_file_was_broken_is_still_reported_running(sandbox):
    """Monitoring polls status: a typo in the service file must not make a running hub look down."""
    path = sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    try:
        path.write_text(path.read_text() + "this is = not toml [\n")
        result = sandbox.cli("status", "demo")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "is running" in result.stdout and "service file is invalid" in result.stdout
        assert sandbox.cli("check", "demo").returncode == 6  # the file itself is still refused
    finally:
        path.write_text(path.read_text().replace("this is = not toml [\n", ""))
        assert sandbox.cli("stop", "demo").returncode == 0
    assert sandbox.cli("status", "demo").returncode == 3
