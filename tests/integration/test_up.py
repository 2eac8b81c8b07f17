"""`svctl up [NAME...]` (issue 14): every service of the config dir in one foreground process, run
here as PID 1 of `unshare --pid --fork --mount-proc` (a container's init). Services start in
dependency order, readiness-gated; orphans re-parented to PID 1 are reaped; a crashed service is
respawned; the CLI verbs work from "outside the loop" (nsenter into the namespaces, as `docker exec`
does); SIGTERM stops everything in reverse order and exits 0; bad input is exit 6, nothing started.

Every process of a test lives in the namespace: the teardown kills its PID 1 (by host PID), and the
kernel kills the rest with it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import IS_ROOT, PYTHON, REPO, SERVICE, free_port, poll_until

MISSING = [tool for tool in ("unshare", "nsenter") if not shutil.which(tool)]
pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="needs root: PID and mount namespaces (unshare), nsenter"),
    pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} (Debian: util-linux)"),
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# z: double-forks a child that exits at once, so its own child (which outlives it by 20 ms) is an
# orphan re-parented to the reaper (PID 1 = svctl up); each orphan records the parent it got.
ZOMBIE_MAKER = """\
import os, sys, time
count, parents = sys.argv[1], sys.argv[2]
made = 0
while True:
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            time.sleep(0.02)
            with open(parents, "a") as handle:
                handle.write(f"{os.getppid()}\\n")
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    made += 1
    with open(count, "w") as handle:
        handle.write(str(made))
    time.sleep(0.05)
"""


def stamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def first(events: list[dict], name: str) -> dict:
    found = [event for event in events if event["event"] == name]
    assert found, f"no {name!r} event in {[event['event'] for event in events]}"
    return found[0]


def last(events: list[dict], name: str) -> dict:
    found = [event for event in events if event["event"] == name]
    assert found, f"no {name!r} event in {[event['event'] for event in events]}"
    return found[-1]


def stat_fields(proc: str, pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command (fields[0] is the state, [1] the ppid)."""
    try:
        return Path(f"{proc}/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def kill_pids(pids) -> None:
    """SIGKILL each live PID (host PIDs, of processes a test started)."""
    for pid in pids:
        if pid and host_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def host_alive(pid: int) -> bool:
    fields = stat_fields("/proc", pid)
    return fields is not None and fields[0] != "Z"


class Up:
    """One `svctl up`, as PID 1 of a PID+mount namespace (AS_INIT, a container's init) or as a plain
    child of ours, and the verbs an operator runs into it."""

    def __init__(self, sandbox, as_init: bool = True) -> None:
        self.sandbox, self.as_init = sandbox, as_init
        self.process: subprocess.Popen | None = None
        self.init: int | None = None  # svctl up by its host PID (the namespace's PID 1 when AS_INIT)
        self.stderr_path = sandbox.base / "up.stderr"
        self.stdout_path = sandbox.base / "up.stdout"

    @property
    def own_pid(self) -> int:
        """svctl up's PID as it sees itself (and as state.json and the services see it)."""
        return 1 if self.as_init else self.init

    def prefix(self) -> list[str]:
        return ["--config-dir", str(self.sandbox.etc), "--run-dir", str(self.sandbox.run / "svctl")]

    def start(self, *names: str) -> Up:
        command = [PYTHON, "-m", "supervisor", *self.prefix(), "up", *names]
        if self.as_init:
            command = ["unshare", "--pid", "--fork", "--mount-proc", "--", *command]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            cwd=REPO, start_new_session=True)
        if self.as_init:
            self.init = poll_until(self.find_init, timeout=5, what="the namespace's PID 1")
        else:
            self.init = self.process.pid
        return self

    def find_init(self) -> int | None:
        if self.process is None:
            return None
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            if children:
                return int(children[0])
        return None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"svctl up still running after {timeout}s; its stderr:\n{self.stderr()}") from None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A verb run the way `docker exec` would: in the namespace's PID and mount namespaces."""
        if not self.as_init:
            return self.sandbox.cli(*args, timeout=timeout)
        assert self.init is not None
        command = ["nsenter", "-t", str(self.init), "-p", "-m", f"--wd={REPO}", "--",
                   PYTHON, "-m", "supervisor", *self.prefix(), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)

    # --- the namespace's processes, seen from the host ---

    def proc(self) -> str:
        """The namespace's /proc (its own PIDs), through PID 1's root."""
        return f"/proc/{self.init}/root/proc" if self.as_init else "/proc"

    def ns_processes(self) -> dict[int, list[str]]:
        found = {}
        try:
            entries = os.listdir(self.proc())
        except OSError:
            return found
        for entry in entries:
            if entry.isdigit():
                fields = stat_fields(self.proc(), entry)
                if fields is not None:
                    found[int(entry)] = fields
        return found

    def host_pid(self, ns_pid: int) -> int | None:
        """The host PID of the namespace's NS_PID (NSpid: host ... innermost)."""
        if not self.as_init:
            return ns_pid
        namespace = os.readlink(f"/proc/{self.init}/ns/pid")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                    continue
                for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                        return int(entry)
            except (OSError, ValueError):
                continue
        return None

    def service_host_pid(self, name: str) -> int:
        ns_pid = self.sandbox.service_pid(name)
        assert ns_pid, f"{name} has no service PID in state.json: {self.sandbox.state(name)}"
        host = self.host_pid(ns_pid)
        assert host, f"{name}'s service (pid {ns_pid} in the namespace) not found from the host"
        return host

    def kill(self) -> None:
        """Teardown: SIGKILL the namespace's PID 1 (the kernel kills the rest) and unshare, by PID;
        not as init: up and the services its state files name (host PIDs, start time checked)."""
        victims = [self.init, self.process.pid if self.process else None]
        if not self.as_init and self.init and host_alive(self.init):
            victims += [service for name in self.sandbox.names
                        if (service := recorded_service(self.sandbox.state(name)))]
        kill_pids(victims)
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.init:
            poll_until(lambda: not host_alive(self.init), timeout=5, what="svctl up gone")


def recorded_service(state: dict) -> int | None:
    """The host PID of STATE's service if a live process has the recorded start time."""
    service = state.get("service") or {}
    pid, ticks = service.get("pid"), service.get("start_ticks")
    fields = stat_fields("/proc", pid) if pid and pid > 1 else None
    return pid if fields is not None and str(ticks) == fields[19] else None


@pytest.fixture
def up(sandbox):
    """Starts `svctl up` runs (up.start(*names)); all of them are killed at teardown."""
    runs: list[Up] = []

    class Starter:
        def start(self, *names: str, as_init: bool = True) -> Up:
            run = Up(sandbox, as_init)
            runs.append(run)
            return run.start(*names)

    yield Starter()
    for run in runs:
        run.kill()
    # The sandbox's teardown kills the PIDs in each state.json; under up those are the namespace's
    # PIDs, which on the host name other processes: keep only states of real host supervisors.
    sandbox.names[:] = [name for name in sandbox.names if host_supervisor(sandbox.state(name))]


def host_supervisor(state: dict) -> bool:
    """STATE's supervisor is a live host process with the recorded start time (not an up's)."""
    supervisor = state.get("supervisor") or {}
    pid, ticks = supervisor.get("pid"), supervisor.get("start_ticks")
    if not pid or pid == 1 or state.get("mode") == "up":
        return False
    fields = stat_fields("/proc", pid)
    return fields is not None and str(ticks) == fields[19]


def running(sandbox, name: str) -> bool:
    return sandbox.state(name).get("machine", {}).get("state") == "running"


def three_services(sandbox, *, a_keys: dict | None = None) -> dict:
    """a: plain; b: requires a, ready when its port answers; z: makes orphans all the time."""
    port = free_port()
    files = {"port": port, "count": sandbox.base / "z-count", "parents": sandbox.base / "z-parents",
             "hups": sandbox.base / "a-hups"}
    script = sandbox.base / "zombies.py"
    script.write_text(ZOMBIE_MAKER)
    sandbox.service("a", command=[PYTHON, SERVICE, "--hup-log", str(files["hups"])], reload="HUP",
                    backoff_initial=0.05, backoff_max=0.1, **(a_keys or {}))
    sandbox.service("b", command=[PYTHON, SERVICE, "--delay", "0.3", "--listen", str(port)], requires=["a"],
                    ready=f"tcp://[::1]:{port}", ready_timeout=10, backoff_initial=0.05, backoff_max=0.1)
    sandbox.service("z", command=[PYTHON, str(script), str(files["count"]), str(files["parents"])],
                    backoff_initial=0.05, backoff_max=0.1)
    return files


def states(sandbox, names) -> dict:
    return {name: sandbox.state(name).get("machine", {}).get("state") for name in names}


def started_up(sandbox, up, *names: str, services="abz", timeout: float = 15, as_init: bool = True) -> Up:
    """`svctl up NAMES`, once every one of SERVICES is running (fails at once if up exits)."""
    run = up.start(*names, as_init=as_init)
    deadline = time.monotonic() + timeout
    while not all(running(sandbox, name) for name in services):
        if not run.running() or time.monotonic() > deadline:
            raise AssertionError(f"not all of {services} running under up: {states(sandbox, services)}; "
                                 f"up running: {run.running()} (exit {run.process.poll()}); "
                                 f"up's stderr:\n{run.stderr()}")
        time.sleep(0.01)
    return run


# --- case 1: everything up, in order ---------------------------------------------------------


@pytest.mark.parametrize("as_init", [True, False], ids=["pid1", "child"])
def test_up_starts_every_service_in_dependency_order(sandbox, up, as_init):
    three_services(sandbox)
    run = started_up(sandbox, up, as_init=as_init)
    a_events, b_events = sandbox.events("a"), sandbox.events("b")
    # b is spawned only once a is running (a has no `ready`: its start_seconds passed)
    assert stamp(first(b_events, "spawned")) >= stamp(first(a_events, "running")), (a_events, b_events)
    assert first(b_events, "ready")  # b became running through its readiness probe
    # z, independent, did not wait for a
    assert stamp(first(sandbox.events("z"), "spawned")) < stamp(first(b_events, "spawned"))
    for name in "abz":
        state = sandbox.state(name)
        assert state.get("mode") == "up", state
        assert (state.get("supervisor") or {}).get("pid") == run.own_pid, \
            f"{name}: state.json's supervisor is {state.get('supervisor')}, not up (PID {run.own_pid})"
        service_dir = sandbox.run / "svctl" / name
        assert (service_dir / "supervisor.id").exists()
        sock = service_dir / "control.sock"
        assert sock.is_symlink(), f"{sock} is not a symlink"
        target = Path(os.path.realpath(sock))
        # NAMESPACE-PID.sock: PID 1 of one container is not PID 1 of another sharing the run dir
        assert target.parent == sandbox.run / "svctl" / ".up" and target.name.endswith(f"-{run.own_pid}.sock"), target
        assert target.stat().st_mode & 0o777 == 0o600
        assert not (sandbox.run / f"{name}.pid").exists(), "no PID files in up mode"
        # the service is up's child
        ns_pid = sandbox.service_pid(name)
        assert run.ns_processes()[ns_pid][1] == str(run.own_pid), f"{name}'s parent is not up"
    status = run.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    for name in "abz":
        assert [line for line in lines if line.split()[:2] == [name, "running"]], status.stdout
    assert "PID file" not in status.stdout + status.stderr
    assert "unsupervised" not in status.stdout, status.stdout
    assert run.running()
    assert len([line for line in run.stderr().splitlines() if "spawned" in line]) >= 3, run.stderr()


# --- case 2: orphans are reaped ---------------------------------------------------------------


def orphans_made(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):  # not yet written, or caught between truncate and write
        return 0


def test_orphans_reparented_to_pid_1_are_reaped(sandbox, up):
    files = three_services(sandbox)
    run = started_up(sandbox, up)
    made_before = orphans_made(files["count"])
    old_zombies: dict[int, float] = {}
    deadline = time.monotonic() + 3
    scans = 0
    while time.monotonic() < deadline:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        for pid, fields in run.ns_processes().items():
            if fields[0] == "Z":
                age = uptime - int(fields[19]) / CLOCK_TICKS
                if age > 1:
                    old_zombies[pid] = age
        scans += 1
        time.sleep(0.05)
    made = poll_until(lambda: orphans_made(files["count"]), what="z's count")
    parents = [int(line) for line in files["parents"].read_text().split()]
    assert made - made_before >= 20, f"z made only {made - made_before} orphans in 3 s"
    assert parents and set(parents) == {1}, f"orphans were re-parented to {set(parents)}, not PID 1"
    assert not old_zombies, f"zombies older than 1 s in the namespace (pid: age): {old_zombies}"
    assert scans > 20
    assert running(sandbox, "z") and run.running()


# --- case 3: crash restart --------------------------------------------------------------------


def test_a_killed_service_is_respawned_within_two_seconds(sandbox, up):
    three_services(sandbox)
    run = started_up(sandbox, up)
    time.sleep(1.1)  # past min_uptime: a healthy run, the crash restarts at once
    old = sandbox.service_pid("a")
    host = run.service_host_pid("a")
    killed_at = time.monotonic()
    os.kill(host, signal.SIGKILL)
    poll_until(lambda: sandbox.service_pid("a") not in (None, old) and running(sandbox, "a"),
               timeout=5, what="a respawned with a new PID")
    took = time.monotonic() - killed_at
    assert took < 2, f"respawn took {took:.2f}s"
    print(f"respawned in {took * 1000:.0f} ms")
    new = sandbox.service_pid("a")
    assert new != old and run.ns_processes()[new][0] != "Z"
    exits = [e for e in sandbox.events("a") if e["event"] == "exited"]
    assert exits and exits[-1]["status"] == "killed by SIGKILL", exits
    assert run.running()


# --- case 4: the verbs from outside the loop ----------------------------------------------------


@pytest.mark.parametrize("as_init", [True, False], ids=["pid1", "child"])
def test_verbs_from_outside_reach_the_services_under_up(sandbox, up, as_init):
    """pid1: up is a container's init, the verbs run through nsenter (docker exec); child: up is a
    plain process (no namespace), the verbs run beside it."""
    files = three_services(sandbox)
    run = started_up(sandbox, up, as_init=as_init)
    for name in "abz":
        status = run.cli("status", name)
        assert status.returncode == 0, (name, status.stdout, status.stderr)
        assert status.stdout.startswith(f"{name} is running"), status.stdout
        assert "unsupervised" not in status.stdout and "warning" not in status.stdout, status.stdout
        assert "PID file" not in status.stdout + status.stderr
    a_host, b_host = run.service_host_pid("a"), run.service_host_pid("b")

    stop = run.cli("stop", "a")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.splitlines() == ["a: stopping b first (requires a)", "b: stopped", "a: stopped"], stop.stdout
    assert not host_alive(a_host) and not host_alive(b_host)
    for name in "ab":
        status = run.cli("status", name)
        assert status.returncode == 3, (name, status.stdout, status.stderr)
        assert f"{name} is not running (stopped)" in status.stdout, status.stdout
    assert run.running() and running(sandbox, "z")
    overall = run.cli("status")
    assert overall.returncode == 1, overall.stdout + overall.stderr  # some running, some not

    start = run.cli("start", "a")
    assert start.returncode == 0, start.stdout + start.stderr
    assert running(sandbox, "a")
    state = sandbox.state("a")
    assert (state.get("supervisor") or {}).get("pid") == run.own_pid and state.get("mode") == "up", state
    assert run.ns_processes()[state["service"]["pid"]][1] == str(run.own_pid)  # up's child again, no new daemon
    assert not running(sandbox, "b")  # start a does not start its dependents
    start_b = run.cli("start", "b")
    assert start_b.returncode == 0, start_b.stdout + start_b.stderr
    assert running(sandbox, "b")

    reload = run.cli("reload", "a")
    assert reload.returncode == 0, reload.stdout + reload.stderr
    a_pid = sandbox.service_pid("a")
    poll_until(lambda: files["hups"].exists() and f"hup {a_pid}" in files["hups"].read_text(),
               what="a's SIGHUP (reload = HUP)")
    assert sandbox.service_pid("a") == a_pid  # reloaded in place

    old_z = sandbox.service_pid("z")
    restart = run.cli("restart", "z")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert running(sandbox, "z") and sandbox.service_pid("z") != old_z
    assert run.cli("status").returncode == 0
    assert run.running()


# --- case 5: SIGTERM to PID 1 -------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigterm_to_pid_1_stops_everything_in_reverse_order_and_exits_0(sandbox, up, signum):
    three_services(sandbox)
    run = started_up(sandbox, up)
    hosts = {name: run.service_host_pid(name) for name in "abz"}
    sent = time.time()
    os.kill(run.init, signum)
    code = run.wait(15)
    took = time.time() - sent
    assert code == 0, f"exit {code}; stderr:\n{run.stderr()}"
    assert took < 6, f"took {took:.1f}s"  # b (≤2 s) then a (≤2 s); z in parallel
    events = {name: sandbox.events(name) for name in "abz"}
    for name in "abz":
        stopping, stopped = last(events[name], "stopping"), last(events[name], "stopped")
        assert stamp(stopping) >= sent - 0.1
        assert stamp(stopped) - stamp(stopping) <= 2.5, f"{name} took longer than its TERM/1/KILL/1"
    # b requires a: a is asked to stop only once b has stopped
    assert stamp(last(events["b"], "stopped")) <= stamp(last(events["a"], "stopping")), (events["a"], events["b"])
    # z is independent: it did not wait for a
    assert stamp(last(events["z"], "stopping")) < stamp(last(events["a"], "stopping"))
    alive = [f"{name} ({pid})" for name, pid in hosts.items() if host_alive(pid)]
    assert not alive, f"still alive after up exited: {alive}"
    assert not host_alive(run.init)


# --- case 6: errors -----------------------------------------------------------------------------


def test_an_invalid_service_file_is_exit_6_naming_it_and_nothing_starts(sandbox, up):
    three_services(sandbox)
    bad = sandbox.service("bad")
    with open(bad, "a") as handle:
        handle.write('ready_timeout = "ten"\n')
    run = up.start()
    assert run.wait(15) == 6, run.stderr()
    lines = run.stderr().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], lines
    assert not any(sandbox.state(name) for name in ("a", "b", "z", "bad"))
    assert not any(sandbox.events(name) for name in ("a", "b", "z", "bad"))


def test_an_unknown_name_is_exit_6_and_nothing_starts(sandbox, up):
    three_services(sandbox)
    run = up.start("a", "nosuch")
    assert run.wait(15) == 6, run.stderr()
    assert "nosuch" in run.stderr(), run.stderr()
    assert not any(sandbox.state(name) for name in "abz")


def test_a_dependency_cycle_is_exit_6_and_nothing_starts(sandbox, up):
    sandbox.service("a", requires=["b"])
    sandbox.service("b", requires=["a"])
    sandbox.service("c")
    run = up.start()
    assert run.wait(15) == 6, run.stderr()
    assert "a dependency cycle" in run.stderr(), run.stderr()
    assert not any(sandbox.state(name) for name in "abc")


def test_a_service_already_supervised_by_start_is_exit_1_and_untouched(sandbox, up):
    sandbox.service("a")
    started = sandbox.cli("start", "a")
    assert started.returncode == 0, started.stderr
    service, supervisor = sandbox.service_pid("a"), sandbox.state("a")["supervisor"]["pid"]
    try:
        run = up.start("a")
        assert run.wait(15) == 1, run.stderr()
        assert "a" in run.stderr()
        state = sandbox.state("a")
        assert state["supervisor"]["pid"] == supervisor and state.get("mode") != "up", state
        assert sandbox.service_pid("a") == service and host_alive(service) and running(sandbox, "a")
    finally:
        assert sandbox.cli("stop", "a").returncode == 0


# --- case 7: named services ---------------------------------------------------------------------


def test_up_with_names_starts_only_those_and_their_requirements(sandbox, up):
    three_services(sandbox)
    only_a = started_up(sandbox, up, "a", services="a")
    time.sleep(0.5)  # b would have been spawned by now
    assert sandbox.state("b") == {} and sandbox.state("z") == {}
    assert not sandbox.events("b") and not sandbox.events("z")
    os.kill(only_a.init, signal.SIGTERM)
    assert only_a.wait(15) == 0, only_a.stderr()

    with_b = started_up(sandbox, up, "b", services="ab")
    a_events = sandbox.events("a")
    assert stamp(last(sandbox.events("b"), "spawned")) >= stamp(last(a_events, "running"))
    assert sandbox.state("z") == {}
    os.kill(with_b.init, signal.SIGTERM)
    assert with_b.wait(15) == 0, with_b.stderr()


# --- beyond the brief's cases: the other signals, SVCTL_SERVICE, escapees and the final sweep --


def test_sighup_reloads_what_reloads_and_sigusr1_reopens_the_logs(sandbox, up):
    """SIGHUP reloads a service with a reload signal (or `watch`/`check`), and leaves alone one
    whose reload would be a plain restart (a JupyterHub proxy's restart drops every route)."""
    files = three_services(sandbox)
    run = started_up(sandbox, up)
    a_pid, b_pid, z_pid = (sandbox.service_pid(name) for name in "abz")
    os.kill(run.init, signal.SIGHUP)
    poll_until(lambda: files["hups"].exists() and f"hup {a_pid}" in files["hups"].read_text(),
               what="a's SIGHUP (reload = HUP)")
    poll_until(lambda: all(any(e["event"] == "reload_skipped" for e in sandbox.events(name)) for name in "bz"),
               timeout=10,
               what="b and z: reload skipped")
    assert [sandbox.service_pid(name) for name in "abz"] == [a_pid, b_pid, z_pid]
    os.kill(run.init, signal.SIGUSR1)
    poll_until(lambda: all(any(e["event"] == "logs_reopened" for e in sandbox.events(name)) for name in "abz"),
               what="logs_reopened for every service")
    assert run.running()
    os.kill(run.init, signal.SIGTERM)
    assert run.wait(15) == 0, run.stderr()


def recorded(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


@pytest.mark.parametrize("as_init", [True, False], ids=["pid1", "child"])
def test_escapees_go_with_their_service_and_the_unclaimed_are_swept_at_exit(sandbox, up, as_init):
    """e daemonizes two helpers into their own sessions: one keeps SVCTL_SERVICE (claimed by e:
    stopped with it), one drops it (nobody's: only reaped, then TERM'd by the sweep at exit)."""
    claimed, unclaimed = sandbox.base / "claimed", sandbox.base / "unclaimed"
    script = (f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> {claimed}; "
              f"env -u SVCTL_SERVICE setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $! >> {unclaimed}; "
              "exec sleep 1000")
    sandbox.service("e", command=["/bin/sh", "-c", script])
    run = started_up(sandbox, up, services="e", as_init=as_init)
    environ = Path(f"/proc/{run.service_host_pid('e')}/environ").read_bytes().split(b"\0")
    assert b"SVCTL_SERVICE=e" in environ
    ns_claimed = poll_until(lambda: recorded(claimed), what="the claimed helper")[0]
    ns_unclaimed = poll_until(lambda: recorded(unclaimed), what="the unclaimed helper")[0]
    claimed_host, unclaimed_host = run.host_pid(ns_claimed), run.host_pid(ns_unclaimed)
    assert claimed_host and unclaimed_host
    stop = run.cli("stop", "e")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not host_alive(claimed_host), "e's helper (SVCTL_SERVICE=e) outlived the stop of e"
    assert host_alive(unclaimed_host)  # nobody's: kept until the sweep
    sent = time.monotonic()
    os.kill(run.init, signal.SIGTERM)
    assert run.wait(15) == 0, run.stderr()
    assert time.monotonic() - sent < 4  # the sleep dies of the sweep's TERM, no 5 s wait for KILL
    assert not host_alive(unclaimed_host)


def test_a_service_that_fails_to_start_keeps_its_dependents_down_and_up_exits_1(sandbox, up):
    sandbox.service("good")
    sandbox.service("broken", command=[PYTHON, SERVICE, "--exit", "3"], restart="never")
    sandbox.service("dep", requires=["broken"])
    run = started_up(sandbox, up, services=["good"])
    poll_until(lambda: any(e["event"] in ("start_failed", "exited") for e in sandbox.events("broken")),
               what="broken's failed start")
    time.sleep(0.5)
    assert run.running(), run.stderr()  # the others stay supervised
    assert not any(e["event"] == "spawned" for e in sandbox.events("dep")), sandbox.events("dep")
    assert not running(sandbox, "dep") and not running(sandbox, "broken")
    assert run.cli("status", "good").returncode == 0
    os.kill(run.init, signal.SIGTERM)
    assert run.wait(15) == 1, run.stderr()


def test_verbs_from_another_pid_namespace_refuse_instead_of_guessing(sandbox, up):
    """The host sees the container's run directory, whose PIDs are the container's: no verdict
    from them (a "not running" would be false) and no stop acting on them: exit 4, one line."""
    three_services(sandbox)
    run = started_up(sandbox, up)
    a_host = run.service_host_pid("a")
    for verb in ("status", "stop", "reload", "start"):
        result = sandbox.cli(verb, "a")  # in the host's PID namespace
        assert result.returncode == 4, (verb, result.stdout, result.stderr)
        assert "another PID namespace" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert host_alive(a_host) and run.running()
    listed = sandbox.cli("status")
    assert "another PID namespace" in listed.stdout + listed.stderr


CONFSERVER = str(REPO / "tests" / "children" / "confserver.py")


def test_watch_validation_rollback_liveness_and_hooks_work_per_service_under_up(sandbox, up):
    """What each service has under `svctl start` it has under up: a watched config is validated
    (a broken edit rejected, the service untouched) and applied; a service that stops answering
    its health probe is restarted, and its on_failure hook runs, with its own name."""
    conf, port, hook_out = sandbox.base / "app.json", free_port(), sandbox.base / "hook.out"
    conf.write_text(json.dumps({"message": "one"}))
    sandbox.service("app", command=[PYTHON, CONFSERVER, str(port), str(conf)], watch=[str(conf)],
                    check=[PYTHON, CONFSERVER, "--check", str(conf)], check_timeout=10,
                    ready=f"http://[::1]:{port}/", ready_timeout=10)
    web_port = free_port()
    web = sandbox.base / "web.json"
    web.write_text(json.dumps({"message": "web"}))
    hook = sandbox.base / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$SVCTL_SERVICE $SVCTL_EVENT" >> {hook_out}\n')
    hook.chmod(0o755)
    sandbox.service("web", command=[PYTHON, CONFSERVER, str(web_port), str(web)],
                    ready=f"http://[::1]:{web_port}/", ready_timeout=10, health=f"http://[::1]:{web_port}/",
                    health_interval=0.3, health_failures=2, health_timeout=0.3, restart="always",
                    min_uptime=0.2, on_failure=[str(hook)])
    run = started_up(sandbox, up, services=("app", "web"))

    app_pid = sandbox.service_pid("app")
    conf.write_text('{"message": ')  # broken: rejected, the service keeps running on "one"
    poll_until(lambda: (sandbox.state("app").get("machine") or {}).get("rejected"), timeout=10,
               what="the broken edit rejected")
    assert sandbox.service_pid("app") == app_pid
    conf.write_text(json.dumps({"message": "two"}))
    poll_until(lambda: any(e["event"] == "reload_applied" for e in sandbox.events("app")), timeout=15,
               what="the good edit applied")
    assert sandbox.service_pid("app") != app_pid

    web_pid = sandbox.service_pid("web")
    victim = run.service_host_pid("web")
    os.kill(victim, signal.SIGSTOP)  # alive, but answers nothing: only liveness can tell
    poll_until(lambda: any(e["event"] == "health_restart" for e in sandbox.events("web")), timeout=15,
               what="the liveness restart")
    poll_until(lambda: hook_out.exists() and "web health_restart" in hook_out.read_text(), timeout=10,
               what="the on_failure hook, with the service's name")
    poll_until(lambda: running(sandbox, "web") and sandbox.service_pid("web") != web_pid, timeout=15,
               what="web running again")
    assert not host_alive(victim)


def test_stopping_and_starting_a_member_again_leaks_no_descriptors(sandbox, up):
    """Each `svctl start` of a stopped member makes a new driver: the old one's files (events
    file, output pipe, state directory) must be closed, or a long-lived up runs out of fds."""
    sandbox.service("a", command=[PYTHON, SERVICE], start_seconds=0.1)
    run = started_up(sandbox, up, services="a", as_init=False)

    def descriptors() -> int:
        return len(os.listdir(f"/proc/{run.own_pid}/fd"))

    assert run.cli("stop", "a").returncode == 0 and run.cli("start", "a").returncode == 0
    before = descriptors()
    for _ in range(5):
        assert run.cli("stop", "a").returncode == 0
        assert run.cli("start", "a").returncode == 0
    assert running(sandbox, "a")
    assert descriptors() <= before + 1, (before, descriptors(), sorted(os.listdir(f"/proc/{run.own_pid}/fd")))
