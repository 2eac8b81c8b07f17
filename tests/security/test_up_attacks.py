"""Red-team tests for `svctl up` (issue 14): a non-root service (`user = "nobody"`) and a careless
operator against the one process that supervises many services.

A test that shows a bug asserts the safe behaviour (it fails until the bug is fixed); the others
are regression tests for attacks that are already defended. Real processes; `svctl up` runs as a
plain child of ours or as PID 1 of `unshare --pid --fork --mount-proc`, with the helpers of
tests/integration/test_up.py (loaded by path: that directory is no package)."""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, PYTHON, SERVICE, poll_until

_spec = importlib.util.spec_from_file_location(
    "up_helpers_for_attacks", Path(__file__).resolve().parent.parent / "integration" / "test_up.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
up = helpers.up  # the fixture: every `svctl up` started is killed at teardown
host_alive, running, started_up = helpers.host_alive, helpers.running, helpers.started_up
kill_pids = helpers.kill_pids

pytestmark = list(helpers.pytestmark) + [pytest.mark.skipif(not IS_ROOT, reason="needs root")]
NOBODY = pwd.getpwnam("nobody")
GIVES_UP = {"command": ["/bin/sh", "-c", "sleep 0.4; exit 1"], "restart": "on-failure", "min_uptime": 5,
            "backoff_initial": 0.05, "backoff_max": 0.1, "give_up_after": 2, "give_up_window": 30,
            "give_up_cooldown": 600}
ATTACKER_PYTHON = "/usr/bin/python3"  # readable by nobody (the test's interpreter may live under /root)


def nobodys_dir(sandbox, name: str) -> Path:
    """A directory the attacker (nobody) controls: its service's working dir, where it leaves notes."""
    path = sandbox.base / name
    path.mkdir(mode=0o755)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


def pids_in(path: Path) -> list[int]:
    try:
        return [int(word) for word in path.read_text().split()]
    except (OSError, ValueError):
        return []


# An escapee that ignores TERM, writes its PID and each TERM it gets. It leaves the service's
# session (setsid), and its parent exits, so it is re-parented to `up` (child subreaper).
STUBBORN = """\
import os, signal, sys, time
notes = sys.argv[1]
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
def noted(*_):
    with open(notes + ".terms", "a") as handle:
        handle.write("term\\n")
signal.signal(signal.SIGTERM, noted)
with open(notes + ".pid", "a") as handle:
    handle.write(f"{os.getpid()}\\n")
time.sleep(300)
"""


# --- attack 1: an escapee that claims another service (SVCTL_SERVICE is the process's own word) ----


def test_a_nobody_escapee_claiming_a_root_service_is_not_signalled_by_its_stop(sandbox, up):
    """The attacker (service `evil`, user nobody) leaves an escapee whose environment says
    SVCTL_SERVICE=victim, a root service. `svctl stop victim` must not treat it as victim's: root
    would signal a process victim never started, and the attacker (by ignoring TERM, or by making
    such escapees all the time) decides how long victim's stop and every respawn of victim take,
    and whether victim's stop "fails" (up's exit code 1). in_service believes the variable without
    the uid rule when the claimed service is root's (Leftovers: uid None = every escapee)."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "stubborn.py"
    script.write_text(STUBBORN)
    notes = notes_dir / "spoof"
    sandbox.service("victim")  # root: no user
    sandbox.service("evil", user="nobody", working_directory=str(notes_dir),
                    command=["/bin/sh", "-c", f"SVCTL_SERVICE=victim {ATTACKER_PYTHON} {script} {notes}; exec sleep 1000"])
    run = started_up(sandbox, up, services=["victim", "evil"], as_init=False)
    escapee = poll_until(lambda: pids_in(Path(f"{notes}.pid")), what="the spoofing escapee")[0]
    try:
        assert os.stat(f"/proc/{escapee}").st_uid == NOBODY.pw_uid
        assert helpers.stat_fields("/proc", escapee)[1] == str(run.init)  # up's child: an escapee
        started = time.monotonic()
        stop = sandbox.cli("stop", "victim")
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not Path(f"{notes}.terms").exists(), "root sent TERM to nobody's escapee on victim's stop"
        assert host_alive(escapee), "root killed nobody's escapee on victim's stop"
        assert took < 1.0, f"victim's stop waited {took:.1f}s for the attacker's escapee"
    finally:
        kill_pids([escapee])
        os.kill(run.init, signal.SIGTERM)
        run.wait(15)


SPOOFER = """\
import os, signal, sys, time
notes = sys.argv[1]
while True:
    if os.fork() == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(notes, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        time.sleep(300)
        os._exit(0)
    os.wait()
    time.sleep(0.1)
"""


def test_spoofing_escapees_cannot_delay_a_root_services_stop_or_respawn(sandbox, up):
    """The same spoof, made all the time (a new TERM-ignoring escapee claiming victim every 0.1 s):
    every stop of victim, and every respawn of victim after a crash, first runs victim's schedule
    on the attacker's processes: the attacker holds victim down for its whole TERM timeout (1 s
    here; 30 s with the default schedule) at each crash."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "spoofer.py"
    script.write_text(SPOOFER)
    notes = notes_dir / "spoofed"
    sandbox.service("victim", backoff_initial=0.05, backoff_max=0.1)
    sandbox.service("evil", user="nobody", working_directory=str(notes_dir),
                    command=["/bin/sh", "-c", f"SVCTL_SERVICE=victim exec {ATTACKER_PYTHON} {script} {notes}"])
    run = started_up(sandbox, up, services=["victim", "evil"], as_init=False)
    try:
        poll_until(lambda: len(pids_in(notes)) >= 3, what="spoofed escapees")
        old = sandbox.service_pid("victim")
        os.kill(old, signal.SIGKILL)  # a crash: the respawn must not wait on the attacker
        crashed = time.monotonic()
        poll_until(lambda: running(sandbox, "victim") and sandbox.service_pid("victim") != old, timeout=10,
                   what="victim respawned")
        respawn = time.monotonic() - crashed
        started = time.monotonic()
        stop = sandbox.cli("stop", "victim")
        took = time.monotonic() - started
        assert (stop.returncode, respawn < 1.0, took < 1.0) == (0, True, True), (
            f"stop: {stop.returncode} {stop.stdout}{stop.stderr}; respawn took {respawn:.1f}s, stop {took:.1f}s")
    finally:
        os.kill(run.init, signal.SIGTERM)
        run.wait(20)
        kill_pids(pids_in(notes))


def test_an_escapee_claiming_a_service_of_another_user_is_left_alone(sandbox, up):
    """Regression: the same spoof against a service that runs as another user (daemon) is
    defeated by the uid rule: nobody's process is not daemon's escapee."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "stubborn.py"
    script.write_text(STUBBORN)
    notes = notes_dir / "spoof"
    sandbox.service("victim", user="daemon", command=[ATTACKER_PYTHON, "-c", "import time; time.sleep(1000)"])
    sandbox.service("evil", user="nobody", working_directory=str(notes_dir),
                    command=["/bin/sh", "-c", f"SVCTL_SERVICE=victim {ATTACKER_PYTHON} {script} {notes}; exec sleep 1000"])
    run = started_up(sandbox, up, services=["victim", "evil"], as_init=False)
    escapee = poll_until(lambda: pids_in(Path(f"{notes}.pid")), what="the spoofing escapee")[0]
    try:
        stop = sandbox.cli("stop", "victim")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert host_alive(escapee) and not Path(f"{notes}.terms").exists()
    finally:
        kill_pids([escapee])
        os.kill(run.init, signal.SIGTERM)
        run.wait(15)


# --- attack 2: two containers (each `up` is PID 1) sharing one run directory ------------------------


def test_two_containers_sharing_a_run_dir_keep_their_own_control_sockets(sandbox, up):
    """Two `svctl up` as PID 1 of their own PID namespace (two containers), disjoint services, one
    run directory (a shared volume): both name their socket RUN_DIR/.up/1.sock, and the second's
    control.listen unlinks the first's and binds its own. `docker exec first svctl stop a` then
    reaches the other container's up (refused by the peer-PID check: that PID is 0 in the first's
    namespace) and the first container's services can no longer be controlled at all."""
    sandbox.service("a")
    sandbox.service("b")
    first = started_up(sandbox, up, "a", services="a")
    second = started_up(sandbox, up, "b", services="b")
    stop = first.cli("stop", "a")
    assert stop.returncode == 0, f"svctl stop a inside the first container: {stop.stdout}{stop.stderr}"
    assert not running(sandbox, "a")
    for run in (first, second):
        os.kill(run.init, signal.SIGTERM)
        run.wait(15)


# --- attack 3: stale state from a dead `up` ------------------------------------------------------


def test_up_killed_then_up_again_adopts_the_running_services_once(sandbox, up):
    """kill -9 of up (a plain child): its services keep running; a new `svctl up` adopts them
    (same PIDs, no second copy); after that one is killed too, `svctl start a` adopts a."""
    sandbox.service("a")
    sandbox.service("b", requires=["a"])
    first = started_up(sandbox, up, services="ab", as_init=False)
    pids = {name: sandbox.service_pid(name) for name in "ab"}
    os.kill(first.init, signal.SIGKILL)
    first.process.wait(10)
    try:
        assert all(host_alive(pid) for pid in pids.values())
        second = started_up(sandbox, up, services="ab", as_init=False)
        time.sleep(0.5)
        assert {name: sandbox.service_pid(name) for name in "ab"} == pids, (sandbox.events("a")[-5:], second.stderr())
        assert all(host_alive(pid) for pid in pids.values())
        os.kill(second.init, signal.SIGKILL)
        second.process.wait(10)
        start = sandbox.cli("start", "a")
        assert start.returncode == 0, start.stdout + start.stderr
        assert sandbox.service_pid("a") == pids["a"], "svctl start a spawned a second copy instead of adopting"
        assert sandbox.state("a").get("mode") != "up"
        stop = sandbox.cli("stop", "a")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not host_alive(pids["a"])
    finally:
        kill_pids(list(pids.values()))


def test_stop_after_up_was_killed_really_stops_or_says_so(sandbox, up):
    """After kill -9 of up, `svctl stop a` must not exit 0 while a still runs."""
    sandbox.service("a")
    run = started_up(sandbox, up, services="a", as_init=False)
    pid = sandbox.service_pid("a")
    os.kill(run.init, signal.SIGKILL)
    run.process.wait(10)
    try:
        stop = sandbox.cli("stop", "a")
        if stop.returncode == 0:
            poll_until(lambda: not host_alive(pid), timeout=3, what="a gone after a stop that said 0")
        status = sandbox.cli("status", "a")
        assert (status.returncode == 0) == host_alive(pid), (status.returncode, status.stdout, status.stderr)
    finally:
        kill_pids([pid])


# --- attack 4: two `up`s and `up` vs `start` on the same service --------------------------------------


def test_a_second_up_with_overlapping_names_is_refused_and_changes_nothing(sandbox, up):
    """Regression: the run-directory locks refuse the second `up` before it touches anything."""
    sandbox.service("a")
    sandbox.service("b")
    first = started_up(sandbox, up, "a", "b", services="ab", as_init=False)
    pids = {name: sandbox.service_pid(name) for name in "ab"}
    second = up.start("b", as_init=False)
    assert second.wait(15) == 1, second.stderr()
    assert {name: sandbox.service_pid(name) for name in "ab"} == pids
    assert all(sandbox.state(name)["supervisor"]["pid"] == first.init for name in "ab")
    assert (sandbox.run / "svctl" / "b" / "control.sock").exists()  # still reaches the first up
    assert sandbox.cli("status", "b").returncode == 0
    os.kill(first.init, signal.SIGTERM)
    assert first.wait(15) == 0, first.stderr()


def test_up_racing_start_for_one_service_gives_one_supervisor_and_one_copy(sandbox, up):
    """Regression: `svctl up a` and `svctl start a` at once: one of them gets the lock."""
    marker = str(sandbox.base / "race-marker")  # in a's command line: only this test's copies count
    sandbox.service("a", command=[PYTHON, SERVICE, "--hup-log", marker])
    results = {}
    run = up.start("a", as_init=False)
    thread = threading.Thread(target=lambda: results.setdefault("start", sandbox.cli("start", "a")))
    thread.start()
    thread.join(30)
    time.sleep(1.0)
    try:
        copies = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                  if host_alive(pid) and marker.encode() in _cmdline(pid)]
        assert len(copies) == 1, f"{len(copies)} copies of a: {copies}; start: {results['start']}"
    finally:
        if run.running():
            os.kill(run.init, signal.SIGTERM)
            run.wait(15)
        if results.get("start") is not None and results["start"].returncode == 0:
            sandbox.cli("stop", "a")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- attack 5: one service's misbehaviour must not take down or hang up --------------------------------


def test_a_flooding_service_does_not_starve_the_others(sandbox, up):
    """Regression: a nobody service writing its output as fast as it can (log rotated at 1 MiB):
    another service's stop and start are answered in time."""
    sandbox.service("flood", command=[ATTACKER_PYTHON, "-c",
                                      "import os\nwhile True: os.write(1, b'x' * 65536)"], user="nobody",
                    log_max_bytes=1 << 20)
    sandbox.service("quiet")
    run = started_up(sandbox, up, services=["flood", "quiet"], as_init=False)
    try:
        started = time.monotonic()
        stop = sandbox.cli("stop", "quiet", timeout=20)
        assert stop.returncode == 0 and time.monotonic() - started < 5, stop.stdout + stop.stderr
        assert sandbox.cli("start", "quiet", timeout=20).returncode == 0
    finally:
        os.kill(run.init, signal.SIGTERM)
        run.wait(20)


def test_up_exits_after_schedules_and_sweep_against_term_ignorers_and_self_stoppers(sandbox, up):
    """Regression: a service that ignores TERM, one that SIGSTOPs itself, and an unclaimed escapee
    that ignores TERM: up still exits (schedules, then the sweep's TERM/5 s/KILL) and the escapee
    is gone."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "stubborn.py"
    script.write_text(STUBBORN)
    sandbox.service("deaf", user="nobody", command=[ATTACKER_PYTHON, "-c",
                    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(1000)"])
    sandbox.service("frozen", user="nobody", command=["/bin/sh", "-c", "kill -STOP $$; exec sleep 1000"])
    sandbox.service("leaver", user="nobody", working_directory=str(notes_dir),
                    command=["/bin/sh", "-c", f"env -u SVCTL_SERVICE {ATTACKER_PYTHON} {script} {notes_dir}/n; "
                                              "exec sleep 1000"])
    run = up.start(as_init=False)
    escapee = poll_until(lambda: pids_in(notes_dir / "n.pid"), timeout=10, what="leaver's escapee")[0]
    time.sleep(0.5)
    try:
        sent = time.monotonic()
        os.kill(run.init, signal.SIGTERM)
        run.wait(15)
        assert time.monotonic() - sent < 10
        assert not host_alive(escapee)
    finally:
        kill_pids([escapee])


def test_a_hook_that_hangs_does_not_keep_up_from_exiting(sandbox, up):
    """crashy gives up; its on_failure hook ignores TERM and would run 300 s (its timeout is 60),
    and leaves a TERM-ignoring helper in a session of its own: up's stop kills the hook at once and
    the helper with the sweep's KILL, and exits."""
    sandbox.service("crashy", **GIVES_UP, on_failure_timeout=60,
                    on_failure=["/bin/sh", "-c", "trap '' TERM; setsid sleep 300 & sleep 300"])
    sandbox.service("fine")
    run = up.start(as_init=False)
    poll_until(lambda: any(e["event"] == "hook_started" for e in sandbox.events("crashy")), timeout=10,
               what="crashy's hook")
    sent = time.monotonic()
    os.kill(run.init, signal.SIGTERM)
    run.wait(15)
    assert time.monotonic() - sent < 10


def test_up_exits_1_when_a_service_gave_up_before_the_stop(sandbox, up):
    """The contract: exit 1 when a service failed to start, "gave up" included. A service that is
    in gave_up (waiting for its cooldown) when SIGTERM comes is stopped like a running one, and
    retire() counts no failure for what up stopped itself: up exits 0 and the operator's
    `svctl up; echo $?` (or a container's exit status) says all was well."""
    sandbox.service("crashy", **GIVES_UP)
    sandbox.service("fine")
    run = up.start(as_init=False)
    poll_until(lambda: any(e["event"] == "gave_up" for e in sandbox.events("crashy")), timeout=10,
               what="crashy gave up")
    os.kill(run.init, signal.SIGTERM)
    assert run.wait(15) == 1, run.stderr()


def cpu_seconds(pid: int) -> float:
    fields = helpers.stat_fields("/proc", pid)
    return (int(fields[11]) + int(fields[12])) / helpers.CLOCK_TICKS


def test_a_service_that_closes_its_output_does_not_make_up_spin(sandbox, up):
    """The service (and all it runs) closes stdout and stderr: the output pipe's EOF must not
    leave up's loop spinning on a readable descriptor."""
    sandbox.service("mute", user="nobody", command=["/bin/sh", "-c", "exec >&- 2>&-; exec sleep 1000"])
    run = started_up(sandbox, up, services=["mute"], as_init=False)
    time.sleep(1.0)
    before = cpu_seconds(run.init)
    time.sleep(2.0)
    used = cpu_seconds(run.init) - before
    try:
        assert used < 0.2, f"up used {used:.2f} s of CPU in 2 s with an idle, silent service"
    finally:
        os.kill(run.init, signal.SIGTERM)
        run.wait(15)


ORPHAN_FLOOD = """import os
while True:
    try:
        if os.fork() == 0:
            os.fork()
            os._exit(0)
        os.wait()
    except OSError:
        pass
"""


def test_an_orphan_flood_does_not_hang_up_for_the_other_services(sandbox, up):
    """A nobody service makes orphans (double forks) as fast as it can, in two processes: up reaps
    them all, and still answers a verb for another service in time."""
    sandbox.service("storm", user="nobody", command=["/bin/sh", "-c",
                    f"{ATTACKER_PYTHON} -c '{ORPHAN_FLOOD}' & exec {ATTACKER_PYTHON} -c '{ORPHAN_FLOOD}'"])
    sandbox.service("quiet")
    run = started_up(sandbox, up, services=["storm", "quiet"], as_init=False)
    try:
        time.sleep(1.0)
        started = time.monotonic()
        stop = sandbox.cli("stop", "quiet", timeout=30)
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert took < 5, f"svctl stop quiet took {took:.1f} s during the storm"
        stop = sandbox.cli("stop", "storm", timeout=30)
        assert stop.returncode == 0, stop.stdout + stop.stderr
    finally:
        os.kill(run.init, signal.SIGTERM)
        run.wait(20)


def test_many_services_under_a_low_hard_fd_limit_are_refused_or_all_supervised(sandbox, up):
    """A careless operator runs up with a hard RLIMIT_NOFILE too low for its services (256 here,
    for 40 services; enough_descriptors can't raise the soft limit past it): up must either refuse
    at once (one line, before starting anything) or supervise every one of them. Now it starts
    about 29, logs "Too many open files" for the others (not_started), keeps running half a
    system, and only its exit code (1, at the end) says so."""
    names = [f"s{index:02d}" for index in range(40)]
    for name in names:
        sandbox.service(name, command=["/bin/sleep", "1000"])
    command = ["prlimit", "--nofile=256:256", "--", PYTHON, "-m", "supervisor",
               "--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl"), "up"]
    err = sandbox.base / "fd.stderr"
    with open(err, "wb") as handle:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=handle,
                                   cwd=helpers.REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            if all(running(sandbox, name) for name in names):
                break
            time.sleep(0.1)
        if process.poll() is not None:
            assert process.returncode != 0
            assert not any(sandbox.events(name) for name in names), "refused after starting some"
        else:
            states = {name: sandbox.state(name).get("machine", {}).get("state") for name in names}
            assert all(state == "running" for state in states.values()), (
                {name: state for name, state in states.items() if state != "running"}, err.read_text()[-3000:])
            stop = sandbox.cli("stop", names[-1])
            assert stop.returncode == 0, stop.stdout + stop.stderr
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        kill_pids([pid for name in names if (pid := helpers.recorded_service(sandbox.state(name)))])


HELPER_FREEZER = """\
import os, sys, threading, time
up, me, count = os.getppid(), os.getpid(), sys.argv[1]
def nobodys_child_of_up(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            if int(handle.read().rsplit(")", 1)[1].split()[1]) != up:
                return False
        with open(f"/proc/{pid}/status") as handle:  # (non-dumpable: /proc/PID is root's; status is readable)
            return any(line.startswith("Uid:") and line.split()[1] == str(os.getuid()) for line in handle)
    except (OSError, ValueError, IndexError):
        return False
def freeze():
    while True:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me and nobodys_child_of_up(int(entry)):
                try:
                    os.kill(int(entry), 19)  # SIGSTOP: up's as-user helper, now running as us
                    with open(count, "a") as handle:
                        handle.write(f"{entry}\\n")
                except OSError:
                    pass
threading.Thread(target=freeze, daemon=True).start()
line = b"x" * 4095 + b"\\n"
while True:
    os.write(1, line * 4)
    time.sleep(0.002)
"""


def test_a_service_cannot_freeze_up_by_stopping_its_as_user_log_helper(sandbox, up):
    """The attacker's log file is in its own directory, so up rotates it through asuser.run: a
    forked helper that becomes nobody, and that up waits for, synchronously, in its one loop, for
    up to 5 s. The attacker (nobody too) SIGSTOPs that helper as soon as it appears; by writing
    fast it makes a rotation, and so a 5 s freeze of every service's supervision, every 5 s
    (RETRY_SECONDS). `svctl stop quiet` then waits for the freeze."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "freezer.py"
    script.write_text(HELPER_FREEZER)
    count = notes_dir / "frozen"
    sandbox.service("evil", user="nobody", working_directory=str(notes_dir), log_file=str(notes_dir / "evil.log"),
                    log_max_bytes=65536, log_backups=1000,
                    command=[ATTACKER_PYTHON, str(script), str(count)])
    sandbox.service("quiet")
    run = up.start(as_init=False)
    pids = []
    try:
        try:  # quiet's start_seconds is 0.2: running within a second unless up's loop is frozen
            poll_until(lambda: running(sandbox, "quiet"), timeout=10, what="quiet running")
        except AssertionError:
            raise AssertionError(f"quiet not running after 10 s (frozen helpers: "
                                 f"{len(pids_in(count))}); up's stderr:\n{run.stderr()}") from None
        pids = [sandbox.service_pid(name) for name in ("evil", "quiet")]
        try:
            poll_until(lambda: count.exists(), timeout=15, what="a frozen helper")
        except AssertionError:
            return  # the attacker never caught a helper: nothing frozen (the defended outcome)
        started = time.monotonic()
        stop = sandbox.cli("stop", "quiet", timeout=30)
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert took < 2.0, f"svctl stop quiet took {took:.1f} s: up's loop was frozen by nobody's SIGSTOP"
    finally:
        pids += [sandbox.service_pid(name) for name in ("evil", "quiet")]
        os.kill(run.init, signal.SIGKILL)  # (a SIGTERM waits for the freezes too)
        run.wait(10)
        kill_pids(pids + pids_in(count))


def test_a_dead_containers_state_does_not_block_or_confuse_the_next_one(sandbox, up):
    """Regression: kill -9 of a container's init (the kernel kills its services) leaves a run dir
    whose state.json names the dead namespace's PIDs and a control.sock link to .up/1.sock. The
    next container's `svctl up` starts the services anew, and the verbs inside it work."""
    sandbox.service("a")
    dead = started_up(sandbox, up, services="a")
    os.kill(dead.init, signal.SIGKILL)
    dead.process.wait(10)
    old_namespace = sandbox.state("a").get("pid_namespace")
    again = up.start()
    poll_until(lambda: sandbox.state("a").get("pid_namespace") != old_namespace and running(sandbox, "a"),
               timeout=10, what="a running under the new container's up")
    status = again.cli("status", "a")
    assert status.returncode == 0, status.stdout + status.stderr
    stop = again.cli("stop", "a")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    status = again.cli("status", "a")
    assert status.returncode == 3, status.stdout + status.stderr  # a member stopped by `svctl stop`
    os.kill(again.init, signal.SIGTERM)
    assert again.wait(15) == 0, again.stderr()


HEAVY_ESCAPEES = """\\
import os, signal, sys, time
notes = sys.argv[1]
if "PAD0" not in os.environ:  # the attacker's own exec: 15 strings of 120 kB (each must be < 128 KiB)
    padded = {**os.environ, **{f"PAD{index}": "x" * 120_000 for index in range(15)}}
    os.execve(sys.executable, [sys.executable, *sys.argv], padded)
if not os.path.exists(notes) and os.fork() == 0:  # (once) the middle one exits: its children are orphans, re-parented to up
    for _ in range(300):
        if os.fork() == 0:
            os.setsid()
            with open(notes, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
            signal.pause()
            os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.3)
sys.exit(1)  # a crash: each one makes up look for this service's escapees among all its children
"""


def test_escapees_with_huge_environments_do_not_freeze_up(sandbox, up):
    """A nobody service leaves 300 unclaimed escapees (own sessions, no SVCTL_SERVICE) exec'd with a
    1.9 MB environment (shared, copy-on-write: cheap for the attacker), then crash-loops. Every
    look for a service's escapees under up reads /proc/PID/environ of each of up's children not in
    that service's sessions, 2 MiB each (in_service): 600 MB per look, in up's one loop."""
    notes_dir = nobodys_dir(sandbox, "evil-wd")
    script = notes_dir / "heavy.py"
    script.write_text(HEAVY_ESCAPEES)
    notes = notes_dir / "heavy"
    sandbox.service("evil", user="nobody", working_directory=str(notes_dir), restart="always",
                    backoff_initial=0.05, backoff_max=0.1, give_up_after=0,
                    command=["/usr/bin/env", "-u", "SVCTL_SERVICE", ATTACKER_PYTHON, str(script), str(notes)])
    sandbox.service("quiet")
    run = up.start(as_init=False)
    try:
        poll_until(lambda: running(sandbox, "quiet") or not run.running(), timeout=10, what="quiet running")
        assert running(sandbox, "quiet"), run.stderr()
        poll_until(lambda: len(pids_in(notes)) >= 300, timeout=20, what="300 heavy escapees")
        worst = 0.0
        for _ in range(3):
            started = time.monotonic()
            stop = sandbox.cli("stop", "quiet", timeout=60)
            worst = max(worst, time.monotonic() - started)
            assert stop.returncode == 0, stop.stdout + stop.stderr
            assert sandbox.cli("start", "quiet", timeout=60).returncode == 0
        assert worst < 2.0, f"svctl stop quiet took {worst:.1f} s behind the attacker's environment reads"
    finally:
        kill_pids([run.init])
        run.wait(10)
        kill_pids(pids_in(notes) + [sandbox.service_pid(name) for name in ("evil", "quiet")])


# --- round 2 -------------------------------------------------------------------------------------

PIPE_FILLER = "import fcntl, os; fcntl.fcntl(1, 1031, 1 << 20); b = bytes(1 << 16)\nwhile True: os.write(1, b)"


def test_an_unclaimed_escapee_writing_on_does_not_hang_up_when_its_service_stops(sandbox, up):
    """Round 2, fix (3), regression: LogCapture.close (driver.shutdown, when a stopped member
    retires) still drains without bound. Two escapees nobody claims (own session, empty
    environment) hold the output pipe, enlarge it to 1 MiB and write as fast as they can, so that
    the drain might never see it empty: `svctl stop flood` must still answer, and up go on. (In
    practice the reader wins: the drain ends, the pipe is closed, the writers die of EPIPE.)"""
    writer = sandbox.base / "writer.pid"
    sandbox.service("flood", log_max_bytes=1 << 20, log_backups=1, command=[
        "/bin/sh", "-c", "for i in 1 2; do setsid env -i " + ATTACKER_PYTHON + " -c " + repr(PIPE_FILLER)
        + " & echo $! >> " + str(writer) + "; done; exec sleep 300"])
    sandbox.service("quiet")
    run = started_up(sandbox, up, services=["flood", "quiet"], as_init=False)
    pids = []
    try:
        poll_until(lambda: pids_in(writer), timeout=5, what="the writer's pid")
        pids = pids_in(writer) + [sandbox.service_pid(name) for name in ("flood", "quiet")]
        try:
            stop = sandbox.cli("stop", "flood", timeout=8)
            assert stop.returncode == 0, stop.stdout + stop.stderr
        except subprocess.TimeoutExpired:
            raise AssertionError("svctl stop flood got no answer in 8 s: up is stuck draining a pipe "
                                 "an unclaimed escapee keeps full") from None
        started = time.monotonic()
        status = sandbox.cli("status", "quiet", timeout=8)
        assert status.returncode == 0 and time.monotonic() - started < 3, status.stdout + status.stderr
    finally:
        kill_pids(pids)
        os.kill(run.init, signal.SIGKILL)
        run.wait(10)


def _helper_notes_pid_and_waits(notes: str) -> tuple[None, bytes]:
    """An as-user operation that stands for a slow one (a big rotation, a slow disk)."""
    with open(notes, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(1.5)
    return None, b""


def test_the_service_user_cannot_signal_trace_or_deprioritize_the_as_user_helper(sandbox):
    """Round 2, fix (2), regression: the as-user helper runs with real and saved uid root and
    effective uid the user. kill() needs the caller's uid to match the target's real or saved
    uid; ptrace and /proc/PID/environ need all three (and it is non-dumpable). setpriority(),
    sched_setscheduler() and sched_setaffinity() compare the caller's effective uid with the
    target's (real or) effective one on some kernels: a SCHED_IDLE, nice 19 helper pinned to a
    flooded CPU would starve like a SIGSTOPped one, and up's loop wait for it (asuser.TIMEOUT)."""
    from supervisor.unix import asuser

    notes = nobodys_dir(sandbox, "helper-notes") / "pid"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "answer", asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, _helper_notes_pid_and_waits, str(notes))))
    thread.start()
    try:
        poll_until(lambda: pids_in(notes), timeout=5, what="the helper's pid")
        helper = pids_in(notes)[0]
        read_end, write_end = os.pipe()
        attacker = os.fork()
        if attacker == 0:  # nobody, as the service would be
            try:
                os.close(read_end)
                os.setgroups([])
                os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
                os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
                done = []
                for name, attempt in (
                        ("kill", lambda: os.kill(helper, signal.SIGSTOP)),
                        ("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, helper, 19)),
                        ("sched_setscheduler", lambda: os.sched_setscheduler(helper, os.SCHED_IDLE,
                                                                             os.sched_param(0))),
                        ("sched_setaffinity", lambda: os.sched_setaffinity(helper, {0})),
                        ("read environ", lambda: Path(f"/proc/{helper}/environ").read_bytes())):
                    try:
                        attempt()
                        done.append(name)
                    except OSError:
                        pass
                os.write(write_end, " ".join(done).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(attacker, 0)
        with os.fdopen(read_end, "rb") as handle:
            done = handle.read().decode().split()
    finally:
        thread.join(10)
    assert "answer" in result
    assert not done, f"nobody could still {', '.join(done)} up's as-user helper (pid {helper})"


def test_status_never_says_not_running_for_a_service_up_already_spawned(sandbox, up):
    """Round 2, fix (6): up now spawns every service that requires nothing before it writes any
    state.json, identity file or socket link (hold_publish). Meanwhile the service runs, and
    `svctl status` (which, unlike start and stop, never looks at the held lock) reads no state,
    or the last run's: "is not running", exit 3, for a running service. A monitor's
    `status || start` then starts it: start waits for the lock's holder, so no second copy (the
    test checks that too). Observed in-process (a CLI's start-up is longer than most of the
    window), with 40 other services making the window ~0.3 s."""
    from supervisor import config as configuration
    from supervisor.commands.status import decide
    from supervisor.observe import observe

    marker = sandbox.base / "a0.pid"
    sandbox.service("a0", command=["/bin/sh", "-c", f"echo $$ > {marker}; exec sleep 301"])
    for index in range(40):
        sandbox.service(f"b{index:02}", command=["/bin/sleep", "300"])
    config = configuration.load("a0", str(sandbox.etc))
    run_dir = str(sandbox.run / "svctl")
    run = up.start(as_init=False)
    seen = []
    try:
        poll_until(lambda: pids_in(marker), timeout=10, what="a0 spawned")
        service = pids_in(marker)[0]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not running(sandbox, "a0"):
            code, headline, _ = decide(observe(config, run_dir))
            if host_alive(service):
                seen.append((code, headline))
        start = sandbox.cli("start", "a0", timeout=20)
        assert start.returncode == 0, start.stdout + start.stderr
        copies = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                  if _cmdline(pid) == b"sleep\x00301\x00"]
        assert copies == [service], f"a0's copies: {copies}"
        wrong = [answer for answer in seen if answer[0] == 3]
        assert not wrong, (f"svctl status said {wrong[0][1]!r} (exit 3) {len(wrong)} times while a0 "
                           f"(pid {service}) ran under up")
    finally:
        os.kill(run.init, signal.SIGTERM)
        run.wait(30)


ESCAPING_SERVICE = """\
import os, subprocess, sys
helper = subprocess.Popen(["setsid", "sleep", "302"])  # its own session, the service's environment
with open(sys.argv[1], "w") as handle:
    handle.write(str(helper.pid))
os.execvp("sleep", ["sleep", "300"])
"""


@pytest.mark.parametrize("size", [0, 40_000], ids=["small-env", "40k-env"])
def test_an_escapee_of_a_service_with_a_large_environment_is_still_stopped_with_it(sandbox, up, size):
    """Round 2, fix (1): the SVCTL_SERVICE claim is read from the first 32 KiB of the escapee's
    environment only (CLAIM_LIMIT), but spawn.user_environment puts SVCTL_SERVICE last, after
    the environment file's and the `environment` table's variables (config accepts 4096 strings
    of 128 KiB). A service whose environment is over 32 KiB (a certificate, a JSON config) loses
    its claim on every `setsid` helper: `svctl stop` leaves them running, and each respawn adds
    one (only up's final sweep takes them)."""
    notes = sandbox.base / "helper.pid"
    keys = {"environment": {"BIG": "x" * size}} if size else {}
    sandbox.service("big", command=[PYTHON, "-c", ESCAPING_SERVICE, str(notes)], **keys)
    run = started_up(sandbox, up, services=["big"], as_init=False)
    helper = []
    try:
        poll_until(lambda: pids_in(notes), timeout=5, what="the helper's pid")
        helper = pids_in(notes)
        stop = sandbox.cli("stop", "big", timeout=20)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        try:
            poll_until(lambda: not host_alive(helper[0]), timeout=3, what="the helper gone")
        except AssertionError:
            raise AssertionError(f"svctl stop big left its escapee {helper[0]} running: its SVCTL_SERVICE "
                                 "lies beyond the first 32 KiB of its environment") from None
    finally:
        kill_pids(helper)
        os.kill(run.init, signal.SIGTERM)
        run.wait(20)


def test_the_as_user_helper_creates_files_as_the_user_and_refuses_roots(sandbox):
    """Round 2, fix (2), regression: with real uid root and effective uid the user, what the helper
    creates (a log, its missing directory, a replaced file) is the user's, not root's, and a
    root-owned file or a hard link the user made to one is refused (the check is on the
    effective uid, not getuid())."""
    from supervisor.unix import asuser

    home = nobodys_dir(sandbox, "helper-home")
    fd, _ = asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, asuser.op_open_append, str(home / "new" / "x.log"), 0o640, True)
    os.close(fd)
    asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, asuser.op_write, str(home / "replaced"), b"data", 0o644)
    for path in (home / "new", home / "new" / "x.log", home / "replaced"):
        assert path.stat().st_uid == NOBODY.pw_uid, f"{path} belongs to uid {path.stat().st_uid}"
    roots = sandbox.base / "roots-file"
    roots.write_text("secret")
    roots.chmod(0o666)
    os.link(roots, home / "link")  # (as root here; protected_hardlinks would stop nobody making it)
    with pytest.raises(asuser.AsUserError):
        asuser.run(NOBODY.pw_uid, NOBODY.pw_gid, asuser.op_open_append, str(home / "link"), 0o640, False)
    assert roots.read_text() == "secret"
