"""Crash supervision with real processes: restarts, backoff, give-up, re-adoption, orphans, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, alive, poll_until, processes_with, size_of

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fifty_sigkills_fifty_restarts(sandbox):
    marker = sandbox.base / "starts"
    sandbox.service("demo", command=[PYTHON, SERVICE, "--marker", str(marker)], restart="always",
                    min_uptime=0, give_up_after=0)
    assert sandbox.cli("start", "demo").returncode == 0
    for round_ in range(50):
        # kill each incarnation once it is really up (has written its marker)
        lines = poll_until(lambda n=round_ + 1: marker.exists() and len(marker.read_text().splitlines()) == n
                           and marker.read_text().splitlines(), what=f"start #{round_ + 1}")
        os.kill(int(lines[-1].split()[1]), signal.SIGKILL)
    poll_until(lambda: len(marker.read_text().splitlines()) == 51, what="51 starts")
    exits = [e for e in sandbox.events() if e["event"] == "exited"]
    assert len(exits) == 50 and all(e["status"] == "killed by SIGKILL" for e in exits)
    assert sandbox.state()["machine"]["restarts"] == 50
    assert sandbox.cli("stop", "demo").returncode == 0


def test_quick_failures_back_off_give_up_and_retry_after_the_cooldown(sandbox):
    flag = sandbox.base / "broken"
    flag.write_text("1")
    # exits 1 while the flag file exists (a "disk not mounted"), runs once it is gone
    script = f"import os, sys, time\nif os.path.exists({str(flag)!r}): sys.exit(1)\ntime.sleep(1000)\n"
    sandbox.service("demo", command=[PYTHON, "-c", script], restart="on-failure", start_seconds=0.3,
                    min_uptime=5, backoff_initial=0.05, backoff_max=0.2, give_up_after=4, give_up_window=30,
                    give_up_cooldown=1.5)
    flag.unlink()
    assert sandbox.cli("start", "demo").returncode == 0
    flag.write_text("1")
    os.kill(sandbox.service_pid(), signal.SIGKILL)
    poll_until(lambda: sandbox.state()["machine"]["state"] == "gave-up", timeout=10, what="gave-up")
    supervisor = sandbox.supervisor_pid()
    status = sandbox.cli("status", "demo")
    assert status.returncode == 1 and "gave up:" in status.stdout and "next retry" in status.stdout
    backoffs = [e["delay"] for e in sandbox.events() if e["event"] == "backoff"]
    assert backoffs == [0.05, 0.1, 0.2]
    assert [e for e in sandbox.events() if e["event"] == "gave_up"]
    cpu_before = cpu_seconds(supervisor)
    time.sleep(0.5)
    assert cpu_seconds(supervisor) - cpu_before <= 0.02, "a supervisor that gave up must be idle"
    flag.unlink()  # the host recovers: the retry after the cool-down brings the service back
    poll_until(lambda: sandbox.state()["machine"]["state"] == "running", timeout=10, what="running again")
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0


def test_kill_9_of_the_supervisor_leaves_the_service_and_start_readopts_it(sandbox):
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag, "--chatty"], restart="always")
    assert sandbox.cli("start", "demo").returncode == 0
    service, supervisor = sandbox.service_pid(), sandbox.supervisor_pid()
    os.kill(supervisor, signal.SIGKILL)
    poll_until(lambda: not alive(supervisor), what="supervisor dead")
    time.sleep(0.3)
    assert alive(service), "the service must survive its supervisor (no SIGPIPE, own session)"
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "unsupervised" in status.stdout
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0 and "adopted" in result.stdout
    assert sandbox.service_pid() == service and processes_with(tag) == [service]
    log = sandbox.log / "demo.log"
    size = log.stat().st_size
    poll_until(lambda: log.stat().st_size > size + 100, what="output captured again after adoption")
    os.kill(service, signal.SIGKILL)  # the adopted service dies: restarted per policy
    poll_until(lambda: sandbox.service_pid() not in (None, service), what="restart of the adopted service")
    assert len(processes_with(tag)) == 1
    assert sandbox.cli("stop", "demo").returncode == 0
    assert processes_with(tag) == []


def test_kill_9_of_the_supervisor_during_stop_and_the_waiting_stop_completes_it(sandbox):
    """The stop in flight sees its connection break, waits for the dead supervisor to be gone,
    then adopts the orphaned service and runs the schedule itself: `stop` means stopped."""
    tag = f"--tag={sandbox.base.name}"
    sandbox.service("demo", command=[PYTHON, SERVICE, tag, "--ignore-term"], stop="TERM/3/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor = sandbox.supervisor_pid()
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    stopper = subprocess.Popen([PYTHON, "-m", "supervisor", *prefix, "stop", "demo"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    poll_until(lambda: sandbox.state()["machine"]["state"] == "stopping", what="stopping")
    os.kill(supervisor, signal.SIGKILL)
    stdout, stderr = stopper.communicate(timeout=15)
    assert stopper.returncode == 0, stderr
    assert "stopped" in stdout
    assert processes_with(tag) == [] and not (sandbox.run / "demo.pid").exists()
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_service_that_forks_a_grandchild_and_exits_leaves_no_zombie_and_no_orphan(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--fork-grandchild"], restart="never", start_seconds=0.5)
    result = sandbox.cli("start", "demo")  # it exits 0 within start_seconds: that is a failed start
    assert result.returncode == 1
    # the grandchild (same process group) was stopped with the schedule, and nothing is a zombie
    assert processes_with(SERVICE + " --fork-grandchild") == []


def test_grandchild_of_a_running_service_is_stopped_with_its_group(sandbox):
    tag = f"--tag={sandbox.base.name}"
    script = f"import os, time\nif os.fork() == 0:\n    time.sleep(1000)\ntime.sleep(1000)  # {tag}"
    sandbox.service("demo", command=[PYTHON, "-c", script])
    assert sandbox.cli("start", "demo").returncode == 0
    assert len(processes_with(tag)) == 2
    assert sandbox.cli("stop", "demo").returncode == 0
    assert processes_with(tag) == []


def test_output_rotates_by_size_and_reopens_on_request(sandbox):
    sandbox.service("demo", command=[PYTHON, SERVICE, "--chatty"], log_max_bytes=2000, log_backups=2)
    assert sandbox.cli("start", "demo").returncode == 0
    log = sandbox.log / "demo.log"
    poll_until(lambda: (sandbox.log / "demo.log.2").exists(), timeout=10, what="two rotations")
    # the service keeps writing, so PATH may be between its rename to PATH.1 and its new open
    sizes = poll_until(lambda: [n for n in [size_of(log)] if n is not None], what="the new log file")
    assert not (sandbox.log / "demo.log.3").exists() and sizes[0] <= 2000
    os.rename(log, sandbox.log / "moved.log")  # logrotate without copytruncate
    assert sandbox.cli("reopen-logs", "demo").returncode == 0
    poll_until(lambda: (size_of(log) or 0) > 0, what="a fresh log file")
    os.kill(sandbox.supervisor_pid(), signal.SIGUSR1)
    poll_until(lambda: any(e["event"] == "logs_reopened" for e in sandbox.events()[-5:]), what="SIGUSR1 reopen")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_lifecycle_events_are_json_lines_with_decoded_statuses(sandbox):
    sandbox.service("demo", restart="always", min_uptime=0)
    assert sandbox.cli("start", "demo").returncode == 0
    os.kill(sandbox.service_pid(), signal.SIGSEGV)
    poll_until(lambda: any(e["event"] == "exited" for e in sandbox.events()), what="exit event")
    exited = [e for e in sandbox.events() if e["event"] == "exited"][0]
    assert exited["status"].startswith("killed by SIGSEGV") and exited["service"] == "demo"
    assert {"timestamp", "level"} <= exited.keys()
    assert sandbox.cli("stop", "demo").returncode == 0
    for line in (sandbox.log / "demo.json").read_text().splitlines():
        json.loads(line)
