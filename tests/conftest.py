"""Shared fixtures: a private service sandbox per test, real CLI runs, and a leak check.

The pytest process makes itself a child subreaper, so every daemon a test starts (svctl detaches
its supervisors) is re-parented to it when orphaned; after each test, any process still descended
from pytest is killed by PID and the test fails. Nothing a test starts can outlive the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHILDREN = REPO / "tests" / "children"
SERVICE = str(CHILDREN / "service.py")
PYTHON = sys.executable
IS_ROOT = os.geteuid() == 0


def _become_subreaper() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


_become_subreaper()


def descendants() -> list[int]:
    """Our direct children right now (orphans of our daemons are re-parented to us)."""
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            found += [int(pid) for pid in Path(f"/proc/self/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return found


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture(autouse=True)
def no_leaked_processes():
    before = set(descendants())
    yield
    leaked = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        reap_zombies()
        leaked = [pid for pid in descendants() if pid not in before and not is_zombie(pid)]
        if not leaked:
            break
        time.sleep(0.05)
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    reap_zombies()
    assert not leaked, f"processes left behind by the test (killed now): {leaked}"


def poll_until(predicate, timeout: float = 5.0, what: str = "condition"):
    """Wait for predicate() to be truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def svctl_command() -> Path:
    """The svctl console script of the running venv (boot files call it by its absolute path)."""
    program = Path(sys.executable).parent / "svctl"
    if not program.exists():
        pytest.skip(f"no svctl console script next to {sys.executable} (pip install -e . first)")
    return program


def skip_without_boot_tools(tools: tuple[str, ...]) -> None:
    """Scenarios under unshare that drive the real update-rc.d/service need root and the tools."""
    if os.geteuid() != 0:
        pytest.skip("needs root for mount/PID namespaces")
    missing = [tool for tool in tools if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (Debian: init-system-helpers, util-linux)")


def free_port() -> int:
    """A TCP port free on [::1] right now (the kernel's pick)."""
    import socket

    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


def size_of(path):
    """The size of PATH, or None while it does not exist (a log between rotation's rename and reopen)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


_READABLE_CODE: list[str] = []


def readable_code() -> str:
    """A copy of the package that any user can read: the checkout may sit in a 0700 directory."""
    if not _READABLE_CODE:
        base = tempfile.mkdtemp(prefix="svctl-test-code-", dir="/var/tmp")
        os.chmod(base, 0o755)
        shutil.copytree(REPO / "supervisor", Path(base) / "supervisor",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(base):
            for entry in dirs:
                os.chmod(os.path.join(root, entry), 0o755)
            for entry in files:
                os.chmod(os.path.join(root, entry), 0o644)
        _READABLE_CODE.append(base)
    return _READABLE_CODE[0]


@pytest.fixture(scope="session", autouse=True)
def remove_readable_code():
    yield
    for base in _READABLE_CODE:
        shutil.rmtree(base, ignore_errors=True)


class Sandbox:
    """A config dir, run dir and log dir of one's own, readable by unprivileged users (S7 tests)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="svctl-test-", dir="/var/tmp"))
        os.chmod(self.base, 0o755)
        self.etc, self.run, self.log = self.base / "etc", self.base / "run", self.base / "log"
        for directory in (self.etc, self.run, self.log):
            directory.mkdir(mode=0o755)
        self.names: list[str] = []

    def service(self, name: str = "demo", **keys) -> Path:
        keys.setdefault("command", [PYTHON, SERVICE])
        keys.setdefault("pidfile", str(self.run / f"{name}.pid"))
        keys.setdefault("log_file", str(self.log / f"{name}.log"))
        keys.setdefault("events_file", str(self.log / f"{name}.json"))
        keys.setdefault("stop", "TERM/1/KILL/1")
        keys.setdefault("start_seconds", 0.2)
        lines = [f"{key} = {json.dumps(value)}" for key, value in keys.items() if not isinstance(value, dict)]
        lines += [f"{key} = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in value.items())} }}"
                  for key, value in keys.items() if isinstance(value, dict)]
        path = self.etc / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        if name not in self.names:
            self.names.append(name)
        return path

    def cli(self, *args: str, user: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["--config-dir", str(self.etc), "--run-dir", str(self.run / "svctl")]
        if user is None:
            command = [PYTHON, "-m", "supervisor", *prefix, *args]
            env = dict(os.environ)
        else:  # unprivileged: Debian's python (pyenv's lives under /root), a readable copy of our code
            command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
                       "/usr/bin/python3", "-m", "supervisor", *prefix, *args]
            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": readable_code()}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)

    def state(self, name: str = "demo") -> dict:
        try:
            return json.loads((self.run / "svctl" / name / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def service_pid(self, name: str = "demo") -> int | None:
        service = self.state(name).get("service")
        return service["pid"] if service else None

    def supervisor_pid(self, name: str = "demo") -> int | None:
        try:
            return int((self.run / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def events(self, name: str = "demo") -> list[dict]:
        try:
            return [json.loads(line) for line in (self.log / f"{name}.json").read_text().splitlines()]
        except OSError:
            return []

    def kill_all(self) -> None:
        for name in self.names:
            state = self.state(name)
            pids = [(state.get("supervisor") or {}).get("pid"), (state.get("service") or {}).get("pid")]
            for pid in pids:
                if pid and pid > 1:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


@pytest.fixture
def sandbox():
    box = Sandbox()
    yield box
    box.kill_all()
    shutil.rmtree(box.base, ignore_errors=True)


def needs_root():
    return pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")


def processes_with(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains TEXT."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and not is_zombie(int(entry)):
                found.append(int(entry))
    return found


def alive(pid: int | None) -> bool:
    return bool(pid) and os.path.exists(f"/proc/{pid}") and not is_zombie(pid)


def as_nobody(action, *args) -> None:
    """Run ACTION(*args) in a forked child with nobody's uid and gid (the attacker, or the service
    user); assert that it succeeded."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            action(*args)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"nobody's {getattr(action, '__name__', 'step')} failed"


def check_to_the_end(reloader):
    """Run a ConfigReloader's check synchronously (as the supervisor's loop would) to its verdict."""
    verdict = reloader.begin_check()
    if verdict is None:
        _, status = os.waitpid(reloader.check_pid, 0)
        verdict = reloader.finish_check(status)
    return verdict
