"""on_failure hooks (issue 13 item 6) with real processes: run on give-up with the SVCTL_*
variables as the service's user; a hanging hook is killed at its timeout, a failing one is
logged; none of it touches supervision. The runner's queue is checked on its own, with a real
selector and real hook processes."""

from __future__ import annotations

import json
import os
import pwd
import selectors
import signal
import time

import pytest

from conftest import IS_ROOT, alive, poll_until
from supervisor.config import from_mapping
from supervisor.log import EventLog
from supervisor.unix import hooks as hook_module
from supervisor.unix.hooks import FailureHooks

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

# runs long enough for `svctl start` to see it up (start_seconds 0.2), then fails: two quick
# failures (min_uptime 5) give up
FAILING = ["/bin/sh", "-c", "sleep 0.4; exit 1"]
GIVES_UP = {"restart": "on-failure", "min_uptime": 5, "backoff_initial": 0.05, "backoff_max": 0.1,
            "give_up_after": 2, "give_up_window": 30, "give_up_cooldown": 600}


def script(sandbox, name: str, body: str):
    """A hook script anyone can read and run (the hook runs as the service's user: nobody)."""
    path = sandbox.base / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def outbox(sandbox):
    """A directory the hook, as nobody, can write into."""
    path = sandbox.base / "out"
    path.mkdir(exist_ok=True)
    path.chmod(0o777)
    return path


def events_named(sandbox, name: str) -> list[dict]:
    return [e for e in sandbox.events() if e["event"] == name]


@pytest.fixture
def pids():
    found: list[int] = []
    yield found
    for pid in found:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_give_up_runs_the_hook_as_the_service_user_with_its_variables(sandbox):
    out = outbox(sandbox)
    hook = script(sandbox, "notify", f"env > {out}/env\nid -u > {out}/uid\necho notified \"$SVCTL_EVENT\"\n")
    sandbox.service("demo", command=FAILING, user="nobody", on_failure=[str(hook)], **GIVES_UP)
    assert sandbox.cli("start", "demo").returncode == 0
    finished = poll_until(lambda: events_named(sandbox, "hook_finished"), timeout=15, what="hook_finished")
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert env["SVCTL_SERVICE"] == "demo" and env["SVCTL_EVENT"] == "gave_up"
    gave_up = events_named(sandbox, "gave_up")[0]
    assert env["SVCTL_REASON"] == gave_up["reason"] and "quick failures" in env["SVCTL_REASON"]
    assert set(env) <= {"PATH", "LANG", "SVCTL_SERVICE", "SVCTL_EVENT", "SVCTL_REASON", "PWD", "SHLVL", "_"}
    assert int((out / "uid").read_text()) == pwd.getpwnam("nobody").pw_uid
    assert finished[0]["status"] == "exit status 0" and finished[0]["output"] == "notified gave_up\n"
    assert finished[0]["hook_event"] == "gave_up"
    assert sandbox.state()["machine"]["state"] == "gave-up"
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_hanging_hook_is_killed_at_its_timeout_while_status_answers(sandbox, pids):
    out = outbox(sandbox)
    # the hook and a child of it in its group: both must die at the timeout
    hook = script(sandbox, "hang", f"sleep 300 &\necho $$ $! > {out}/pids\necho hanging\nwait\n")
    sandbox.service("demo", command=FAILING, on_failure=[str(hook)], on_failure_timeout=2, **GIVES_UP)
    assert sandbox.cli("start", "demo").returncode == 0
    pids += poll_until(lambda: (out / "pids").exists() and [int(p) for p in (out / "pids").read_text().split()],
                       timeout=15, what="the hook's PIDs")
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    for _ in range(3):  # the loop is not held up by the hook
        began = time.monotonic()
        status = sandbox.cli("status", "demo")
        assert status.returncode == 1 and "gave up" in status.stdout and time.monotonic() - began < 5
    timeout = poll_until(lambda: events_named(sandbox, "hook_timeout"), timeout=10, what="hook_timeout")[0]
    assert timeout["status"] == "killed by SIGKILL" and timeout["output"] == "hanging\n"
    assert timeout["timeout"] == 2 and 1.5 < timeout["seconds"] < 5
    poll_until(lambda: not any(alive(pid) for pid in pids), what="the hook's processes gone")
    assert not events_named(sandbox, "hook_finished")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_stop_kills_a_hook_still_running(sandbox, pids):
    out = outbox(sandbox)
    hook = script(sandbox, "hang", f"sleep 300 &\necho $$ $! > {out}/pids\nwait\n")
    sandbox.service("demo", command=FAILING, on_failure=[str(hook)], **GIVES_UP)
    assert sandbox.cli("start", "demo").returncode == 0
    pids += poll_until(lambda: (out / "pids").exists() and [int(p) for p in (out / "pids").read_text().split()],
                       timeout=15, what="the hook's PIDs")
    began = time.monotonic()
    assert sandbox.cli("stop", "demo").returncode == 0
    assert time.monotonic() - began < 10  # not the hook's 30 s timeout
    assert not any(alive(pid) for pid in pids)
    assert events_named(sandbox, "hook_killed")[0]["reason"] == "the supervisor is exiting"


def test_a_hook_that_fails_or_cannot_run_is_logged_and_supervision_goes_on(sandbox):
    unrunnable = sandbox.base / "private-hook"  # nobody may not run it: exec fails
    unrunnable.write_text("#!/bin/sh\nexit 0\n")
    unrunnable.chmod(0o700)
    sandbox.service("demo", command=FAILING, user="nobody", on_failure=[str(unrunnable)], **GIVES_UP)
    assert sandbox.cli("start", "demo").returncode == 0
    failed = poll_until(lambda: events_named(sandbox, "hook_failed"), timeout=15, what="hook_failed")[0]
    assert failed["hook_event"] == "gave_up" and "ermission" in failed["error"]
    # supervision is untouched: a start works (and gives up again), the supervisor answers
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: len(events_named(sandbox, "hook_failed")) == 2, timeout=15, what="a second give-up")
    sandbox.service("demo", command=FAILING, user="nobody", **GIVES_UP,
                    on_failure=["/bin/sh", "-c", "echo oops >&2; exit 3"])
    assert sandbox.cli("stop", "demo").returncode == 0
    assert sandbox.cli("start", "demo").returncode == 0
    finished = poll_until(lambda: events_named(sandbox, "hook_finished"), timeout=15, what="hook_finished")[0]
    assert finished["status"] == "exit status 3" and finished["output"] == "oops\n"
    assert finished["level"] == "warning"
    assert sandbox.cli("stop", "demo").returncode == 0


class FakeLog:
    """Collects events like EventLog.event (the real one needs a file; its redaction is its own)."""
    secrets = ("s3cret",)

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def event(self, name: str, level: str = "info", **fields) -> None:
        self.lines.append((name, fields))


def run_loop(runner: FailureHooks, selector, timers: dict, until, seconds: float = 10.0) -> None:
    """What Runtime's loop does for the runner: the selector, the "hook" timer, the reaping."""
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        for key, _ in selector.select(0.05):
            key.data(key.fileobj)
        if timers.get(hook_module.TIMER, float("inf")) <= time.monotonic():
            del timers[hook_module.TIMER]
            runner.deadline()
        while runner.pid is not None:
            found = os.waitid(os.P_PID, runner.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if found is None:
                break
            runner.before_reap(found.si_pid)
            pid, status = os.waitpid(found.si_pid, 0)
            runner.exited(pid, status)


def test_one_hook_at_a_time_a_bounded_queue_flood_clipped_and_secrets_redacted(tmp_path):
    config = from_mapping("demo", str(tmp_path / "demo.toml"), {
        "command": ["/bin/true"], "on_failure_timeout": 5,
        "on_failure": ["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; echo \" $SVCTL_REASON\""]})
    selector, timers, log = selectors.DefaultSelector(), {}, FakeLog()
    runner = FailureHooks(config, log, selector, timers)
    names = ["gave_up", "rolled_back", "health_restart"]
    for number in range(hook_module.QUEUE_LIMIT + 3):
        runner.fire_for(names[number % 3], {"reason": f"try {number} s3cret"})
    runner.fire_for("exited", {"reason": "not a failure event"})
    assert runner.pid is not None and len(runner.queue) == hook_module.QUEUE_LIMIT
    assert [name for name, _ in log.lines].count("hook_dropped") == 2
    run_loop(runner, selector, timers, lambda: runner.pid is None and not runner.queue)
    finished = [fields for name, fields in log.lines if name == "hook_finished"]
    assert len(finished) == hook_module.QUEUE_LIMIT + 1
    for number, fields in enumerate(finished):
        assert fields["hook_event"] == names[number % 3]
        assert fields["status"] == "exit status 0" and fields["output_bytes"] == 200000 + len(f" try {number} ***\n")
        assert len(fields["output"]) == hook_module.OUTPUT_KEPT
        assert fields["output"].endswith(f"xx try {number} ***\n")  # the reason, redacted
    assert not timers and runner.pipe is None
    selector.close()


def test_the_events_file_records_a_finished_hook_redacted(tmp_path):
    events = tmp_path / "events.json"
    log = EventLog(str(events), "demo", False, ("hunter2",), None)
    config = from_mapping("demo", str(tmp_path / "demo.toml"), {
        "command": ["/bin/true"], "on_failure": ["/bin/sh", "-c", "echo password hunter2; exit 1"]})
    selector, timers = selectors.DefaultSelector(), {}
    runner = FailureHooks(config, log, selector, timers)
    runner.fire_for("rolled_back", {"pid": 12, "reason": "exit status 2"})
    run_loop(runner, selector, timers, lambda: runner.pid is None)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    finished = next(line for line in lines if line["event"] == "hook_finished")
    assert finished["hook_event"] == "rolled_back" and finished["status"] == "exit status 1"
    assert "hunter2" not in events.read_text() and finished["output"].startswith("password ")
    log.close()
    selector.close()
