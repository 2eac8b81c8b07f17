"""Bad input to the command line or in a service file is one line and an exit code, never a traceback.

Issue 10 item 9: every number in a service file is finite and bounded (nan, inf and a stop timeout
of 99999999999 s were accepted, and crashed the supervisor later), every string NUL-free, `user`
must exist. Item 10 (misc): unknown options were silently ignored (`svctl start demo --bogus`);
`logs -n abc`, `logs -f` without a log, `status | head -1` and a wrong-shaped state.json printed
tracebacks; a relative --run-dir named another directory once the supervisor had daemonized.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import IS_ROOT, PYTHON, REPO, SERVICE, alive, needs_root, poll_until
from supervisor.cli import VERBS
from supervisor.core.schedule import MAX_SECONDS

# ---- service file values: exit 6 naming the key --------------------------------------------


@pytest.mark.parametrize("line, key", [
    ("start_seconds = nan", "start_seconds"),
    ("start_seconds = inf", "start_seconds"),
    ("ready_timeout = nan", "ready_timeout"),
    ("give_up_cooldown = 31536000", "give_up_cooldown"),  # a year: more than the event loop can wait
    ("backoff_max = 1e400", "backoff_max"),
    ("check_timeout = 100000000000000000000000000000000000000000", "check_timeout"),
    ('stop = "TERM/99999999999"', "stop"),
    ("stop = 99999999999", "stop"),
    ("log_max_bytes = 1125899906842624", "log_max_bytes"),  # 2**50
    ("log_backups = 1000000", "log_backups"),
    ("give_up_after = 10000001", "give_up_after"),
    ('user = "no-such-user-svctl"', "user"),
    ('description = "' + "x" * 5000 + '"', "description"),
    ('working_directory = "/srv/a\\u0000b"', "working_directory"),
    ('environment = { A = "x\\u0000y" }', "environment"),
    ('environment = { "A\\u0000B" = "x" }', "environment"),
    ('check = ["/bin/true", "a\\u0000b"]', "check"),
    ('user = "ro\\u0000ot"', "user"),
])
def test_out_of_bounds_values_are_refused_at_load(sandbox, line, key):
    path = sandbox.service("demo")
    kept = [kept for kept in path.read_text().splitlines() if not kept.startswith(f"{key} =")]
    path.write_text("\n".join([*kept, line]) + "\n")  # raw TOML: json.dumps has no nan or inf
    for verb in ("check", "start"):
        result = sandbox.cli(verb, "demo")
        assert result.returncode == 6, (verb, result.returncode, result.stderr)
        message = result.stderr.strip()
        assert "\n" not in message and "Traceback" not in message
        assert f"{path}: {key}:" in message, message
    assert not (sandbox.run / "demo.pid").exists()


def test_a_nul_in_the_command_is_refused(sandbox):
    path = sandbox.service("demo", command=[PYTHON, SERVICE + "\0--exit"])
    result = sandbox.cli("start", "demo")
    assert result.returncode == 6 and f"{path}: command:" in result.stderr and "NUL" in result.stderr


@needs_root()
def test_the_longest_accepted_timeout_does_not_crash_the_supervisor(sandbox):
    """24 days is what epoll can wait in one call: a backoff that long is a long wait, not a crash.

    A control for the bound (it passed before too); a year, refused above, raised OverflowError in
    the supervisor's select()."""
    sandbox.service("demo", command=["/bin/sh", "-c", "sleep 0.4; exit 1"], restart="always",
                    min_uptime=MAX_SECONDS, backoff_initial=MAX_SECONDS, backoff_max=MAX_SECONDS,
                    give_up_cooldown=MAX_SECONDS)
    assert sandbox.cli("start", "demo").returncode == 0
    supervisor = sandbox.supervisor_pid()
    try:
        poll_until(lambda: sandbox.state().get("machine", {}).get("state") == "backoff", what="backoff")
        time.sleep(0.2)
        assert alive(supervisor), "the supervisor died waiting 24 days"
        assert sandbox.cli("status", "demo").returncode == 1
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


# ---- options: unknown is exit 2, --help is exit 0, for every verb -----------------------------


def verb_args(verb: str) -> list[str]:
    return [verb, "jupyterhub" if verb == "init" else "demo"]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_rejects_an_unknown_option_with_its_usage(sandbox, verb):
    sandbox.service("demo")
    result = sandbox.cli(*verb_args(verb), "--bogus")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "unknown option '--bogus'" in result.stderr
    assert f"Usage: svctl [--config-dir DIR] [--run-dir DIR] {verb} " in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(sandbox, verb):
    for args in ([verb, "--help"], [*verb_args(verb), "-h"]):
        result = sandbox.cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith(f"Usage: svctl [--config-dir DIR] [--run-dir DIR] {verb} ")
        assert result.stderr == ""


@needs_root()
def test_a_stop_with_an_unknown_option_stops_nothing(sandbox):
    """stop's fast path used to act on the NAME and ignore the rest."""
    sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    try:
        service = sandbox.service_pid()
        assert sandbox.cli("stop", "demo", "--bogus").returncode == 2
        assert sandbox.cli("stop", "demo", "extra").returncode == 2
        assert alive(service) and sandbox.cli("status", "demo").returncode == 0
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


@pytest.mark.parametrize("args, code, words", [
    (["logs", "demo", "-n", "abc"], 2, "-n needs a whole number"),
    (["logs", "demo", "-n"], 2, "-n needs a value"),
    (["logs", "demo", "-n", "-3"], 2, "-n needs a whole number"),
    (["logs", "demo", "-f"], 1, "no output captured yet"),
    (["logs", "demo"], 1, "no output captured yet"),
    (["status", "--lines", "3"], 2, "--lines shows one service"),
    (["status", "demo", "other"], 2, "unexpected argument 'other'"),
    (["status", "demo", "--json=yes"], 2, "--json takes no value"),
    (["init", "jupyterhub", "--port", "http"], 2, "--port needs a whole number"),
    (["init", "jupyterhub", "--auth", "ldap"], 2, "--auth must be pam or dummy"),
])
def test_bad_arguments_are_one_line_without_traceback(sandbox, args, code, words):
    sandbox.service("demo")
    result = sandbox.cli(*args, timeout=10)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert words in result.stderr.splitlines()[0] and "Traceback" not in result.stderr


def test_logs_prints_the_last_lines(sandbox):
    sandbox.service("demo")
    (sandbox.log / "demo.log").write_text("".join(f"line {i}\n" for i in range(100)))
    result = sandbox.cli("logs", "demo", "-n3")
    assert result.returncode == 0 and result.stdout == "line 97\nline 98\nline 99\n"
    assert sandbox.cli("logs", "demo", "-n", "0").stdout == ""


# ---- a closed stdout: quiet, like coreutils -------------------------------------------------


def run_into_closed_pipe(sandbox, *args: str) -> subprocess.CompletedProcess:
    """ARGS with stdout a pipe nobody reads any more: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([PYTHON, "-m", "supervisor", "--config-dir", str(sandbox.etc),
                               "--run-dir", str(sandbox.run / "svctl"), *args],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30, cwd=REPO,
                              check=False)
    finally:
        os.close(write_end)


def test_status_into_a_closed_pipe_exits_quietly_with_its_code(sandbox):
    sandbox.service("demo")
    result = run_into_closed_pipe(sandbox, "status", "demo")
    assert result.returncode == 3 and result.stderr == ""


def test_logs_into_a_closed_pipe_exits_quietly(sandbox):
    sandbox.service("demo")
    (sandbox.log / "demo.log").write_text("".join(f"{'x' * 200}\n" for _ in range(5000)))
    result = run_into_closed_pipe(sandbox, "logs", "demo", "-n", "5000")
    assert result.returncode == 141 and result.stderr == ""


# ---- a wrong-shaped state.json ----------------------------------------------------------------


@pytest.fixture
def write_state(sandbox):
    """Write a state.json as a supervisor would (root's, 0644); removed before the sandbox's own
    teardown, which reads the PIDs in it."""
    path = sandbox.run / "svctl" / "demo" / "state.json"

    def write(state: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state))

    yield write
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("state", [
    {"machine": [1, 2]},
    {"machine": "running"},
    {"supervisor": {"pid": float("inf"), "start_ticks": 1, "exe": "", "boot_id": ""}},
    {"service": {"pid": float("-inf"), "start_ticks": 1, "exe": "", "boot_id": ""}},
    {"config": 5},
    {"machine": {"state": ["backoff"], "next_retry_at": "soon", "rejected": [1], "last_exit": "x",
                 "last_exit_at": "y", "degraded_at": 1e300, "restarts": {"a": 1}}},
    {"machine": {"state": "backoff", "next_retry_at": float("nan"), "rejected": ["bad", float("inf")],
                 "degraded_at": -5}},
])
def test_a_wrong_shaped_state_file_never_crashes_status(sandbox, write_state, state):
    sandbox.service("demo")
    write_state(state)
    for args in (["status", "demo"], ["status", "demo", "--json"]):
        result = sandbox.cli(*args)
        assert result.returncode in (1, 3, 4), (result.returncode, result.stdout, result.stderr)
        assert result.stderr == "" and "Traceback" not in result.stdout


def test_a_cached_definition_of_the_wrong_shape_is_not_used(sandbox, write_state):
    """The signature matches (the cache would be used) but its data is not a table."""
    from supervisor.config import signature

    path = sandbox.service("demo")
    write_state({"config": {"path": str(path), "signature": signature(str(path)), "data": "x"}})
    result = sandbox.cli("status", "demo")
    assert result.returncode == 3 and result.stderr == ""


@needs_root()
def test_garbage_times_of_a_live_service_are_left_out(sandbox, write_state):
    """details() did arithmetic on whatever state.json said: "started_at": "x" was a TypeError."""
    from supervisor.unix.identity import identify

    sandbox.service("demo")
    sleeper = subprocess.Popen(["/bin/sleep", "30"])
    try:
        me = identify(sleeper.pid)
        write_state({"service": me.to_dict(), "machine": {"state": "running", "started_at": "x",
                                                                   "last_exit": "killed", "last_exit_at": []}})
        result = sandbox.cli("status", "demo")
        assert result.returncode == 0 and "running (unsupervised)" in result.stdout, result.stdout + result.stderr
        assert f"pid {sleeper.pid})" in result.stdout and result.stderr == ""
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- relative directories ---------------------------------------------------------------------


@needs_root()
def test_relative_directories_mean_the_callers_working_directory(sandbox):
    """The supervisor daemonizes into /: a relative --run-dir resolved there named another place."""
    sandbox.service("demo")

    def svctl(*args, cwd, env=None):
        return subprocess.run([PYTHON, "-m", "supervisor", *args], capture_output=True, text=True,
                              timeout=60, cwd=cwd, env=env, check=False)

    started = svctl("--config-dir", "etc", "--run-dir", "run/svctl", "start", "demo", cwd=sandbox.base)
    try:
        assert started.returncode == 0, started.stderr
        assert (sandbox.run / "svctl" / "demo" / "state.json").exists()
        assert sandbox.state()["config"]["path"] == str(sandbox.etc / "demo.toml")
        assert sandbox.cli("status", "demo").returncode == 0  # absolute paths, from elsewhere
        env = dict(os.environ, SVCTL_CONFIG_DIR="etc", SVCTL_RUN_DIR="run/svctl")
        assert svctl("status", "demo", cwd=sandbox.base, env=env).returncode == 0
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


def test_non_root_callers_get_exit_4_and_the_reason_from_logs_and_init(sandbox):
    """Before: `logs` as nobody printed nothing and exited 0; `init` printed a raw errno and exited 1."""
    if not IS_ROOT:
        pytest.skip("needs root to switch to nobody")
    log = sandbox.log / "demo.log"
    log.write_text("root only\n")
    log.chmod(0o600)
    sandbox.service("demo", log_file=str(log))
    logs = sandbox.cli("logs", "demo", user="nobody")
    assert logs.returncode == 4 and "run it as root" in logs.stderr, logs.stderr
    init = sandbox.cli("init", "jupyterhub", "--prefix", str(sandbox.base / "root-owned"), "--ip", "::1",
                       user="nobody")
    assert init.returncode == 4 and "root" in init.stderr and "Traceback" not in init.stderr, init.stderr
