"""Containers for the real-boot harness: systemd-nspawn runs, each in a cgroup of its own.

The host's PID 1 is not systemd, so nspawn runs with --register=no --keep-unit and makes its
"supervisor" and "payload" cgroups inside whatever cgroup it was started in; run from the root
cgroup, that is the host's root, and two runs would share them. Every nspawn here is therefore
moved (before exec) into a fresh cgroup named svctl-realboot.HARNESS_PID.LABEL, which is removed
afterwards. What is left in it after nspawn exits was started by this harness: it is killed by
PID. Nothing is ever signalled by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_ENV = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
CGROUP_PREFIX = "svctl-realboot."
# Debian 12 and 13 boot with the unified hierarchy; so do the containers, whatever the host has.
NSPAWN_ENV = {**CLEAN_ENV, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}


class HarnessError(Exception):
    """A step could not be carried out (as opposed to a check that failed)."""


@dataclass
class Result:
    code: int | None  # None: killed after the timeout
    out: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.out.rstrip().splitlines()[-lines:])


def run(argv: list[str], timeout: float = 600, env: dict | None = None, preexec=None) -> Result:
    """argv in a session of its own, stdout+stderr together; on timeout its process group is
    killed (by its PID, which is the group's ID)."""
    start = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env or CLEAN_ENV, start_new_session=True,
                               preexec_fn=preexec)
    try:
        out, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        out, _ = process.communicate()
        code = None
        out += f"\n[realboot: killed after {timeout:.0f} s]"
    return Result(code, out.decode(errors="replace"), time.monotonic() - start)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- cgroups -------------------------------------------------------------------------------------

def _own_cgroup_dirs() -> list[Path]:
    """Our cgroup's directory in the name=systemd v1 hierarchy and in the v2 one, where mounted."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, options = right.split(" ")[:3]
        mountpoint = left.split(" ")[4]
        if fstype == "cgroup2":
            mounts.setdefault("", mountpoint)
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts.setdefault("name=systemd", mountpoint)
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if controllers in mounts:
            dirs.append(Path(mounts[controllers] + path.rstrip("/")))
    return dirs


class Cgroup:
    """A fresh cgroup (in each hierarchy nspawn looks at) for one nspawn run."""

    def __init__(self, label: str):
        self.dirs = [base / f"{CGROUP_PREFIX}{os.getpid()}.{label}" for base in _own_cgroup_dirs()]
        for directory in self.dirs:
            directory.mkdir()

    def enter(self) -> None:
        """preexec_fn: the child moves itself in before it execs nspawn."""
        for directory in self.dirs:
            with open(directory / "cgroup.procs", "w") as procs:
                procs.write("0")

    def pids(self) -> set[int]:
        found = set()
        for directory in self.dirs:
            for procs in directory.rglob("cgroup.procs"):
                try:
                    found.update(int(pid) for pid in procs.read_text().split())
                except OSError:
                    pass
        return found

    def remove(self) -> list[str]:
        """Kill what is left (our container's processes, by PID), then rmdir bottom-up."""
        problems = []
        left = self.pids()
        if left:
            problems.append(f"processes left in the container's cgroup, killed: {sorted(left)}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for directory in self.dirs:
            while directory.exists():
                try:
                    _rmdir_tree(directory)
                except OSError as exc:
                    if time.monotonic() > deadline:
                        problems.append(f"cannot remove cgroup {directory}: {exc.strerror}")
                        break
                    time.sleep(0.1)
        return problems


def _rmdir_tree(directory: Path) -> None:
    """A cgroup's directories, deepest first (their control files go with them)."""
    for path, _dirs, _files in os.walk(directory, topdown=False):
        os.rmdir(path)


def remove_stale_cgroups() -> list[str]:
    """Cgroups of an earlier harness run that was killed: removed if empty, reported if not."""
    problems = []
    for base in _own_cgroup_dirs():
        for directory in base.glob(f"{CGROUP_PREFIX}*"):
            owner = directory.name[len(CGROUP_PREFIX):].split(".")[0]
            if owner.isdigit() and Path(f"/proc/{owner}").exists():
                continue  # another harness run is alive: its cgroups are its own business
            try:
                _rmdir_tree(directory)
            except OSError:
                problems.append(f"stale cgroup {directory} still has processes (an earlier run's "
                                f"container?): kill them by PID (see its cgroup.procs files)")
    return problems


# ---- nspawn ----------------------------------------------------------------------------------------

def _nspawn(root: Path, machine: str, network: bool, binds: tuple[str, ...]) -> list[str]:
    argv = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", f"--machine={machine}",
            f"--directory={root}"]
    argv += [] if network else ["--private-network"]
    argv += [f"--bind={bind}" for bind in binds]
    return argv


def run_in_root(root: Path, machine: str, script: str, *, network: bool = False,
                binds: tuple[str, ...] = (), timeout: float = 900) -> Result:
    """`sh -ec SCRIPT` inside the root without booting it (apt, svctl install...)."""
    argv = _nspawn(root, machine, network, binds) + [
        "--console=pipe", "--resolv-conf=copy-host" if network else "--resolv-conf=off",
        "--setenv=DEBIAN_FRONTEND=noninteractive", "--setenv=LANG=C.UTF-8", f"--setenv=PATH={HOST_PATH}",
        "/bin/sh", "-ec", script]
    cgroup = Cgroup(f"{machine}.cmd")
    try:
        result = run(argv, timeout=timeout, env=NSPAWN_ENV, preexec=cgroup.enter)
    finally:
        problems = cgroup.remove()
    if problems:
        result.out += "\n[realboot: " + "; ".join(problems) + "]"
    return result


class Container:
    """A booted root: `systemd-nspawn -b --private-network --register=no --keep-unit`."""

    def __init__(self, root: Path, machine: str, console_log: Path):
        self.root, self.machine, self.console_log = root, machine, console_log
        self.process: subprocess.Popen | None = None
        self.leader: int | None = None
        self.cgroup: Cgroup | None = None
        self.started = 0.0
        self.problems: list[str] = []

    def start(self, timeout: float = 20) -> None:
        self.cgroup = Cgroup(f"{self.machine}.boot")
        argv = _nspawn(self.root, self.machine, False, ()) + ["--boot", "--console=read-only"]
        with open(self.console_log, "wb") as console:
            self.started = time.monotonic()
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                            stderr=subprocess.STDOUT, env=NSPAWN_ENV,
                                            start_new_session=True, preexec_fn=self.cgroup.enter)
        own_namespace = os.readlink("/proc/self/ns/pid")
        nspawn = os.readlink(f"/proc/{self.process.pid}/exe")
        while self.leader is None:
            for pid in _children(self.process.pid):
                try:
                    # In the container's PID namespace, and no longer nspawn's inner child: init.
                    if (os.readlink(f"/proc/{pid}/ns/pid") != own_namespace
                            and os.readlink(f"/proc/{pid}/exe") != nspawn):
                        self.leader = pid
                except OSError:
                    pass
            if self.leader is None:
                if self.process.poll() is not None:
                    raise HarnessError(f"systemd-nspawn exited ({self.process.returncode}) before "
                                       f"its container started; see {self.console_log}")
                if time.monotonic() - self.started > timeout:
                    raise HarnessError(f"no container PID 1 under systemd-nspawn {self.process.pid}")
                time.sleep(0.02)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def nsenter(self, *argv: str, timeout: float = 30) -> Result:
        """A command inside every namespace of the container (its own binaries, clean env)."""
        return run(["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
                    *(f"{k}={v}" for k, v in CLEAN_ENV.items()), *argv], timeout=timeout)

    def read(self, path: str) -> str | None:
        """A file as the container sees it (its /run is a tmpfs the host can't see otherwise)."""
        try:
            return Path(f"/proc/{self.leader}/root{path}").read_text()
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.lexists(f"/proc/{self.leader}/root{path}")

    def processes(self) -> list[tuple[int, int, str]]:
        """(host PID, container PID, command line) of every process in the container."""
        namespace = os.readlink(f"/proc/{self.leader}/ns/pid")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                    continue
                status = Path(f"/proc/{entry}/status").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            nspid = next(line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:"))
            found.append((int(entry), int(nspid), cmdline.strip()))
        return found

    def poweroff(self, init: str) -> Result | None:
        """sysvinit: `telinit 0` inside; systemd: SIGRTMIN+4 to its PID 1 (what machinectl
        poweroff sends)."""
        if init == "sysvinit":
            return self.nsenter("/sbin/telinit", "0", timeout=15)
        os.kill(self.leader, signal.SIGRTMIN + 4)
        return None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> list[str]:
        """Make sure it is gone (SIGKILL to its PID 1 ends the whole PID namespace; then nspawn,
        by PID), remove the cgroup; the problems met, for the report."""
        problems = []
        if self.process is not None and self.process.poll() is None:
            problems.append("the container was still running: killed")
            if self.leader is not None:
                _kill(self.leader)
            if self.wait(10) is None:
                _kill(self.process.pid)
                self.process.wait()
        if self.cgroup is not None:
            problems += self.cgroup.remove()
            self.cgroup = None
        return problems


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(parent: int) -> list[int]:
    """PIDs whose parent is `parent` (this kernel has no /proc/PID/task/TID/children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found
