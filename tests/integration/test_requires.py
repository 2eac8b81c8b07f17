"""`requires = [...]`: start brings requirements up first (each ready before the next), stop takes
dependents down first, restart restarts running dependents after, run waits for requirements;
unknown names and cycles are exit 6. Real supervisors and services, short stop schedules."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PYTHON, SERVICE, alive, free_port, needs_root, poll_until

pytestmark = needs_root()

# B's command: exit 1 at once unless A's port answers (so B "started" proves A was ready first),
# else record when it started and stay up.
CHECKER = """\
import socket, sys, time
port, marker = int(sys.argv[1]), sys.argv[2]
try:
    socket.create_connection(("::1", port), timeout=1).close()
except OSError:
    print("requirement not listening", flush=True)
    sys.exit(1)
with open(marker, "a") as handle:
    handle.write(f"{time.time()}\\n")
while True:
    time.sleep(1)
"""


def setup_pair(sandbox, delay: float = 0.6, **b_keys):
    """A: listens on a port only after DELAY (ready = tcp://); B requires A and checks A's port."""
    port = free_port()
    checker = sandbox.base / "checker.py"
    checker.write_text(CHECKER)
    marker = sandbox.base / "b-started"
    sandbox.service("a", command=[PYTHON, SERVICE, "--delay", str(delay), "--listen", str(port)],
                    ready=f"tcp://[::1]:{port}", ready_timeout=10)
    sandbox.service("b", command=[PYTHON, str(checker), str(port), str(marker)], requires=["a"],
                    restart="never", **b_keys)
    return port, marker


def running(sandbox, name):
    return alive(sandbox.service_pid(name)) and sandbox.state(name).get("machine", {}).get("state") == "running"


def test_start_brings_up_the_requirement_first_and_waits_until_it_is_ready(sandbox):
    port, marker = setup_pair(sandbox)
    before = time.time()
    result = sandbox.cli("start", "b")
    assert result.returncode == 0, result.stderr
    assert "b: starting a first (required)" in result.stdout
    assert running(sandbox, "a") and running(sandbox, "b")
    started = float(marker.read_text().split()[0])
    assert started - before >= 0.6  # B ran only once A listened (after its delay)
    # a second start: A already runs, nothing is said about it
    again = sandbox.cli("start", "b")
    assert again.returncode == 0 and "first" not in again.stdout
    assert sandbox.cli("stop", "a").returncode == 0


def test_stop_of_a_requirement_stops_its_dependents_first(sandbox):
    setup_pair(sandbox, delay=0.1)
    assert sandbox.cli("start", "b").returncode == 0
    a_pid, b_pid = sandbox.service_pid("a"), sandbox.service_pid("b")
    result = sandbox.cli("stop", "a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "a: stopping b first (requires a)"
    assert lines.index("b: stopped") < lines.index("a: stopped")
    assert not alive(a_pid) and not alive(b_pid)


def test_stop_user_servers_reaches_the_dependents_too(sandbox):
    """--stop-user-servers sends stop-all (to the dependents as well); any supervisor stops."""
    setup_pair(sandbox, delay=0.1)
    assert sandbox.cli("start", "b").returncode == 0
    fast = sandbox.cli("stop", "b", "--stop-user-servers")  # nobody requires b: the fast path
    assert fast.returncode == 0 and fast.stdout == "b: stopped\n", fast.stdout + fast.stderr
    assert sandbox.cli("start", "b").returncode == 0
    result = sandbox.cli("stop", "a", "--stop-user-servers")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["a: stopping b first (requires a)", "b: stopped", "a: stopped"]
    assert not running(sandbox, "a") and not running(sandbox, "b")


def test_stop_of_a_dependent_leaves_its_requirement_running(sandbox):
    setup_pair(sandbox, delay=0.1)
    assert sandbox.cli("start", "b").returncode == 0
    result = sandbox.cli("stop", "b")
    assert result.returncode == 0 and "first" not in result.stdout
    assert running(sandbox, "a") and not running(sandbox, "b")
    assert sandbox.cli("stop", "a").returncode == 0


def test_restart_of_a_requirement_restarts_the_running_dependent_after_it(sandbox):
    port, marker = setup_pair(sandbox, delay=0.3)
    assert sandbox.cli("start", "b").returncode == 0
    a_pid, b_pid = sandbox.service_pid("a"), sandbox.service_pid("b")
    result = sandbox.cli("restart", "a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "a: stopping b first (requires a)"
    assert lines[-1] == "b: started" and "a: starting b again (requires a)" in lines
    assert not alive(a_pid) and not alive(b_pid)
    assert running(sandbox, "a") and running(sandbox, "b")
    assert len(marker.read_text().split()) == 2  # B's checker passed again: A was ready first
    assert sandbox.cli("stop", "a").returncode == 0


def test_try_restart_of_a_stopped_requirement_does_nothing(sandbox):
    setup_pair(sandbox, delay=0.1)
    result = sandbox.cli("try-restart", "a")
    assert result.returncode == 0 and "nothing to restart" in result.stdout
    assert not running(sandbox, "b")


def test_force_reload_of_a_stopped_dependent_starts_its_requirement(sandbox):
    setup_pair(sandbox, delay=0.1)
    result = sandbox.cli("force-reload", "b")
    assert result.returncode == 0, result.stderr
    assert "b: starting a first (required)" in result.stdout
    assert running(sandbox, "a") and running(sandbox, "b")
    assert sandbox.cli("stop", "a").returncode == 0


def test_a_requirement_that_fails_to_start_keeps_the_dependent_down(sandbox):
    setup_pair(sandbox)
    sandbox.service("a", command=[PYTHON, SERVICE, "--exit", "3"], restart="never")
    result = sandbox.cli("start", "b")
    assert result.returncode == 1
    assert "b: not started: its requirement a failed to start (exit 1)" in result.stderr
    assert not (sandbox.base / "b-started").exists()
    assert not running(sandbox, "b")
    assert sandbox.state("b") == {}  # B's supervisor never ran


def test_a_cycle_is_refused_naming_it(sandbox):
    sandbox.service("a", requires=["c"])
    sandbox.service("b", requires=["a"])
    sandbox.service("c", requires=["b"])
    result = sandbox.cli("start", "b")
    assert result.returncode == 6
    assert "a dependency cycle: a -> c -> b -> a" in result.stderr
    assert str(sandbox.etc / "a.toml") in result.stderr
    assert not any(sandbox.state(name) for name in "abc")


def test_an_unknown_requirement_is_refused(sandbox):
    sandbox.service("b", requires=["nosuch"])
    result = sandbox.cli("start", "b")
    assert result.returncode == 6
    assert f"{sandbox.etc / 'b.toml'}: requires: unknown service 'nosuch'" in result.stderr
    assert sandbox.state("b") == {}


def test_requirements_are_transitive_in_order(sandbox):
    marker = sandbox.base / "order"
    for name, requires in (("c", []), ("b", ["c"]), ("a", ["b"])):
        sandbox.service(name, command=[PYTHON, SERVICE, "--marker", str(marker) + name], requires=requires)
    result = sandbox.cli("start", "a")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:4] == ["a: starting c first (required)", "c: started",
                                              "a: starting b first (required)", "b: started"]
    stop = sandbox.cli("stop", "c")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.splitlines()[0] == "c: stopping a first (requires b)"
    assert stop.stdout.splitlines()[2] == "c: stopping b first (requires c)"
    assert not any(running(sandbox, name) for name in "abc")


def test_run_waits_for_nothing_it_cannot_get(sandbox):
    """`svctl run` starts no requirement: one nobody is starting is exit 1 at once, naming it."""
    setup_pair(sandbox, delay=0.1)
    began = time.monotonic()
    result = sandbox.cli("run", "b")
    assert result.returncode == 1
    assert "b: not started: it requires a, which is not running" in result.stderr
    assert time.monotonic() - began < 5
    assert sandbox.state("b") == {}


def test_run_waits_for_a_requirement_that_is_starting(sandbox):
    import subprocess

    setup_pair(sandbox, delay=1.5)
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    starter = subprocess.Popen([PYTHON, "-m", "supervisor", *prefix, "start", "a"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runner = None
    try:
        poll_until(lambda: sandbox.state("a").get("supervisor"), what="a's supervisor")
        runner = subprocess.Popen([PYTHON, "-m", "supervisor", *prefix, "run", "b"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        poll_until(lambda: running(sandbox, "b"), timeout=15, what="b running under run")
        assert running(sandbox, "a")
        assert starter.wait(10) == 0
        runner.terminate()
        out, err = runner.communicate(timeout=10)
        assert "b: waiting for a (required) to be started" in out, (out, err)
    finally:
        for process in (starter, runner):
            if process and process.poll() is None:
                process.kill()
                process.wait()
        sandbox.cli("stop", "a")


# ---- operator review / red team of issue 13 (items 1-9 of the follow-up) ----------------------


def chain(sandbox, names=("a", "b", "c")):
    """B requires A, C requires B; all three started (by `start c`)."""
    first, *rest = names
    sandbox.service(first)
    for needed, name in zip(names, rest, strict=False):
        sandbox.service(name, requires=[needed])
    result = sandbox.cli("start", names[-1])
    assert result.returncode == 0, result.stderr
    return {name: sandbox.service_pid(name) for name in names}


def test_restart_checks_the_graph_before_stopping_anything_cycle(sandbox):
    """Item 1: a cycle made after the start (a now requires c) is exit 6 with nothing stopped."""
    pids = chain(sandbox)
    sandbox.service("a", requires=["c"])
    for verb in ("restart", "try-restart"):
        result = sandbox.cli(verb, "a")
        assert result.returncode == 6, result.stdout + result.stderr
        assert "a dependency cycle: a -> c -> b -> a" in result.stderr
        assert "stopping" not in result.stdout
        assert all(alive(pid) for pid in pids.values()) and all(running(sandbox, name) for name in "abc")
    assert sandbox.cli("stop", "a").returncode == 0  # (a stop still works: item 4)


def test_restart_checks_the_graph_before_stopping_anything_missing_requirement(sandbox):
    """Item 1: a requirement's file removed: restart of its dependent is exit 6, nothing stopped."""
    pids = chain(sandbox)
    (sandbox.etc / "a.toml").unlink()
    result = sandbox.cli("restart", "b")
    assert result.returncode == 6 and "unknown service 'a'" in result.stderr, result.stderr
    assert all(alive(pid) for pid in pids.values())
    # a running dependent's own requirement missing is refused too (it would be started again)
    sandbox.service("a")
    sandbox.service("x", requires=["b"])
    sandbox.service("c", requires=["b", "nosuch"])
    result = sandbox.cli("restart", "b")
    assert result.returncode == 6 and "unknown service 'nosuch'" in result.stderr, result.stderr
    assert all(alive(pid) for pid in pids.values())
    for name in "cba":
        assert sandbox.cli("stop", name).returncode == 0


@pytest.mark.parametrize("breakage", ["invalid", "removed"])
def test_a_required_service_with_a_broken_file_still_stops(sandbox, breakage):
    """Item 2: db's file broken or gone: `stop db` stops web (which requires it), then db."""
    sandbox.service("db")
    sandbox.service("web", requires=["db"])
    assert sandbox.cli("start", "web").returncode == 0
    db_pid, web_pid = sandbox.service_pid("db"), sandbox.service_pid("web")
    if breakage == "invalid":
        with open(sandbox.etc / "db.toml", "a") as handle:
            handle.write('ready_timeout = "ten"\n')
    else:
        (sandbox.etc / "db.toml").unlink()
    result = sandbox.cli("stop", "db")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["db: stopping web first (requires db)", "web: stopped", "db: stopped"]
    assert "stopping it with the definition it runs with" in result.stderr
    assert not alive(db_pid) and not alive(web_pid)
    again = sandbox.cli("stop", "db")  # nothing runs on a record any more: the file's error, as before
    assert again.returncode == 6, again.stdout + again.stderr


def test_a_cycle_through_the_stopped_service_is_a_warning_and_the_stop_goes_ahead(sandbox):
    """Item 4: a -> b -> c -> a (made after the start): `stop c` warns naming the cycle, stops a and b
    first, then c; `start` refuses it."""
    pids = chain(sandbox, ("c", "a", "b"))  # a requires c, b requires a
    sandbox.service("c", requires=["b"])
    result = sandbox.cli("stop", "c")
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "a dependency cycle: a -> c -> b -> a" in result.stderr
    assert result.stdout.splitlines() == ["c: stopping b first (requires a)", "b: stopped",
                                          "c: stopping a first (requires c)", "a: stopped", "c: stopped"]
    assert not any(alive(pid) for pid in pids.values())
    start = sandbox.cli("start", "c")
    assert start.returncode == 6 and "a dependency cycle" in start.stderr
    assert not any(running(sandbox, name) for name in "abc")


def test_a_symlinked_dependent_file_is_followed(sandbox):
    """Item 5: etc/b.toml -> ../real/b.toml (trusted): `stop a` stops b first."""
    real = sandbox.base / "real"
    real.mkdir(mode=0o755)
    sandbox.service("a")
    sandbox.service("b", requires=["a"]).rename(real / "b.toml")
    (sandbox.etc / "b.toml").symlink_to("../real/b.toml")
    assert sandbox.cli("start", "b").returncode == 0
    b_pid = sandbox.service_pid("b")
    result = sandbox.cli("stop", "a")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "a: stopping b first (requires a)"
    assert not alive(b_pid)


def test_a_supervisor_reply_with_terminal_escapes_is_printed_one_line_escaped(sandbox):
    """Item 9: a check's output (service-user controlled) in the reload reply: no raw escapes."""
    flag = sandbox.base / "bad"
    check = (f"import os, sys\nif os.path.exists({str(flag)!r}):\n"
             "    sys.exit('evil \\x1b]0;pwned\\x07 \\x1b[2J\\nsecond line')\n")
    sandbox.service("demo", check=[PYTHON, "-c", check], check_timeout=10)
    assert sandbox.cli("start", "demo").returncode == 0
    flag.write_text("1")
    result = sandbox.cli("reload", "demo")
    assert result.returncode != 0
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr, repr(result.stderr)
    assert "evil" in result.stderr and len(result.stderr.strip().splitlines()) == 1, repr(result.stderr)
    assert sandbox.cli("stop", "demo").returncode == 0


# ---- red team of the review fixes (F2, F7, F8c) ---------------------------------------------------


def base_and_app(sandbox):
    """app requires base; both started (by `start app`)."""
    sandbox.service("base")
    sandbox.service("app", requires=["base"])
    assert sandbox.cli("start", "app").returncode == 0
    return sandbox.service_pid("base"), sandbox.service_pid("app")


def test_a_running_dependent_with_a_broken_file_is_stopped_first(sandbox):
    """F2: app.toml broken after the start: `stop base` stops app (its recorded definition) first."""
    base_pid, app_pid = base_and_app(sandbox)
    with open(sandbox.etc / "app.toml", "a") as handle:
        handle.write("garbage = [\n")
    result = sandbox.cli("stop", "base")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["base: stopping app first (requires base)", "app: stopped", "base: stopped"]
    assert "app: using the definition it runs with" in result.stderr, result.stderr
    assert not alive(app_pid) and not alive(base_pid)


def test_restart_refuses_when_a_running_dependent_could_not_be_started_again(sandbox):
    """F2: app runs, its file is now broken: `restart base` would stop app with its recorded
    definition and could not start it again (nothing starts from a record), so it refuses with
    exit 6 before anything stops; `stop base` still stops both (a stop is always possible)."""
    base_pid, app_pid = base_and_app(sandbox)
    good = (sandbox.etc / "app.toml").read_text()
    with open(sandbox.etc / "app.toml", "a") as handle:
        handle.write("garbage = [\n")
    result = sandbox.cli("restart", "base")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "base: not restarted, nothing stopped: app requires it and could not be started again" in result.stderr
    assert "stopping" not in result.stdout and alive(app_pid) and alive(base_pid)
    (sandbox.etc / "app.toml").write_text(good)
    restarted = sandbox.cli("restart", "base")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert not alive(app_pid) and not alive(base_pid) and running(sandbox, "app") and running(sandbox, "base")
    assert sandbox.cli("stop", "base").returncode == 0


def test_restart_refuses_a_running_dependent_with_neither_file_nor_record(sandbox):
    """F2: app runs but its file is broken and its state.json has no definition: exit 6 before
    anything stops (a stop goes ahead with a warning)."""
    import json

    base_pid, app_pid = base_and_app(sandbox)
    with open(sandbox.etc / "app.toml", "a") as handle:
        handle.write("garbage = [\n")
    state_file = sandbox.run / "svctl" / "app" / "state.json"
    state = json.loads(state_file.read_text())
    state.pop("config")
    state_file.write_text(json.dumps(state))
    result = sandbox.cli("restart", "base")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "cannot tell whether app, which is running, requires it" in result.stderr, result.stderr
    assert "stopping" not in result.stdout and alive(base_pid) and alive(app_pid)
    # clean up: app from its record is not possible; stop base (warns about app), kill app by PID
    stop = sandbox.cli("stop", "base")
    assert stop.returncode == 0 and "cannot tell whether app requires base" in stop.stderr
    import os
    import signal

    os.kill(sandbox.supervisor_pid("app"), signal.SIGTERM)
    poll_until(lambda: not alive(app_pid), timeout=10)


@pytest.mark.parametrize("spelling", ['"requ\\u0069res" = ["base"]', 'requires = ["\\u0062ase"]'])
def test_an_escape_spelled_requirement_is_a_dependent(sandbox, spelling):
    """F7: the key or the name spelled with TOML escapes: `stop base` still stops app first."""
    sandbox.service("base")
    sandbox.service("app")
    with open(sandbox.etc / "app.toml", "a") as handle:
        handle.write(spelling + "\n")
    assert sandbox.cli("start", "app").returncode == 0
    app_pid = sandbox.service_pid("app")
    assert running(sandbox, "base")
    result = sandbox.cli("stop", "base")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "base: stopping app first (requires base)"
    assert not alive(app_pid)


def test_stop_by_a_caller_who_may_not_is_refused_before_any_warning(sandbox):
    """F8c: base's file broken, `stop base` as nobody: exit 4, and no "stopping it with" warning."""
    sandbox.service("base")
    assert sandbox.cli("start", "base").returncode == 0
    try:
        with open(sandbox.etc / "base.toml", "a") as handle:
            handle.write("garbage = [\n")
        result = sandbox.cli("stop", "base", user="nobody")
        assert result.returncode == 4, result.stdout + result.stderr
        assert "stopping it with the definition" not in result.stderr, result.stderr
        assert "must be run as root" in result.stderr
    finally:
        assert sandbox.cli("stop", "base").returncode == 0
