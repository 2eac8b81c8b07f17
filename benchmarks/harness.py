"""Measurement plumbing shared by every metric module.

The harness process is a child subreaper (PID 1 on these machines reaps orphans seconds late, so a
daemon reparented to it would look slow for a reason that is not its own). A reaper thread reaps at
once every zombie that is not in our own process group (daemonized supervisors, start-stop-daemon's
backgrounded children); zombies in our process group are our own ``subprocess`` children and are
left to ``Popen.wait``. Every process the harness starts is a descendant of it, and ``kill_tree``
SIGKILLs those descendants by PID at the end, even on errors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CHILDREN = BENCH_DIR / "children"
MARKER_CHILD = CHILDREN / "marker.sh"
LISTENER_CHILD = CHILDREN / "listener.py"
FLOOR_PARENT = CHILDREN / "floor_parent.py"
FLOOR_STOP = CHILDREN / "floor_stop.py"
VENV = Path(os.environ.get("VENV", REPO / ".venv"))
if not VENV.is_absolute():
    VENV = REPO / VENV
PEER_VENV = Path(os.environ.get("PEER_VENV", REPO / ".venv-peer"))
if not PEER_VENV.is_absolute():
    PEER_VENV = REPO / PEER_VENV
PYTHON = str(VENV / "bin" / "python")
SVCTL = str(VENV / "bin" / "svctl")
SUPERVISORD = str(PEER_VENV / "bin" / "supervisord")
SUPERVISORCTL = str(PEER_VENV / "bin" / "supervisorctl")
SSD = "/sbin/start-stop-daemon"
SH = "/bin/sh"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def now_ns() -> int:
    return time.monotonic_ns()


# ---------------------------------------------------------------- reaping and cleanup


def _pgrp_of(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[2])  # state ppid pgrp -> index 2


class Reaper(threading.Thread):
    """Reap orphans adopted by the subreaper as soon as they exit."""

    def __init__(self) -> None:
        super().__init__(name="reaper", daemon=True)
        self.own_pgrp = os.getpgrp()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                time.sleep(0.002)  # no children at the moment; a daemon may be adopted soon
                continue
            except InterruptedError:
                continue
            if info is None:
                continue
            pid = info.si_pid
            if _pgrp_of(pid) != self.own_pgrp:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            else:
                time.sleep(0.0005)  # a subprocess child: Popen.wait reaps it


def descendants(root: int | None = None) -> list[int]:
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree() -> int:
    """SIGKILL every descendant of this process, by PID; return how many were signalled."""
    total = 0
    for _ in range(20):
        pids = descendants()
        live = [p for p in pids if _state(p) not in ("Z", None)]
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                total += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    while True:  # reap whatever is left
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    return total


def _state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


# ---------------------------------------------------------------- commands


def run(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None, check: bool = False):
    """Run a command; return (wall seconds, returncode, stdout+stderr text)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        env=env,
    )
    wall = time.perf_counter() - t0
    out = proc.stdout.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {out.strip()[-800:]}")
    return wall, proc.returncode, out


def wait_until(pred, timeout: float, what: str, interval: float = 0.001):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read_pid(path: str | Path) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- markers via inotify

IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class MarkerDir:
    """A directory the child writes ``<pid>`` into when it starts; watched with inotify."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, str(path).encode(), IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.seen: list[tuple[int, int]] = []  # (pid, monotonic ns when seen)
        self.other: list[tuple[str, int]] = []  # other names (e.g. term-<pid>), same clock
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            stamp = now_ns()
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0").decode()
                offset += _EVENT.size + length
                if name.isdigit():
                    self.seen.append((int(name), stamp))
                else:
                    self.other.append((name, stamp))

    def latest_pid(self) -> int | None:
        self._drain()
        if self.seen:
            return self.seen[-1][0]
        pids = [int(p.name) for p in self.path.iterdir() if p.name.isdigit()]
        return max(pids, key=lambda p: Path(self.path, str(p)).stat().st_mtime_ns) if pids else None

    def wait_new(self, exclude: set[int] | int | None, timeout: float) -> tuple[int, int]:
        """Block until a marker from a PID not in ``exclude`` appears; return (pid, ns seen)."""
        if isinstance(exclude, int):
            exclude = {exclude}
        exclude = exclude or set()
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            for pid, stamp in self.seen:
                if pid not in exclude:
                    self.seen = [s for s in self.seen if s[0] != pid]
                    return pid, stamp
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no new marker in {self.path} within {timeout}s")
            self._poll.poll(max(1, int(left * 1000)))

    def clear(self) -> None:
        self._drain()
        self.seen.clear()
        self.other.clear()

    def close(self) -> None:
        os.close(self.fd)


# ---------------------------------------------------------------- stats


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": quantile(values, 0.5),
        "p95": quantile(values, 0.95),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


# ---------------------------------------------------------------- per-process cost


def proc_cost(pid: int) -> dict:
    """CPU seconds, context switches (summed over threads), RSS, PSS and USS in MB."""
    tick = os.sysconf("SC_CLK_TCK")
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / tick
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
        except OSError:
            pass
    rss = pss = uss = 0.0  # USS: private pages only, what the process alone costs (PSS shares the rest)
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            uss += int(line.split()[1]) / 1024
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return {
        "cpu": cpu,
        "vol": vol,
        "invol": invol,
        "rss": rss,
        "pss": pss,
        "uss": uss,
        "threads": threads,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def machine_info() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_mb": mem,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


TMPDIRS: list[Path] = []


def tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"svctl-bench-{prefix}-"))
    TMPDIRS.append(path)
    return path


def remove_tmpdirs() -> None:
    import shutil

    while TMPDIRS:
        shutil.rmtree(TMPDIRS.pop(), ignore_errors=True)


def dump_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def ignore_esrch(fn, *args) -> None:
    try:
        fn(*args)
    except ProcessLookupError:
        pass
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


class TermToGone(threading.Thread):
    """Stamp, as they happen, the child's ``term-<pid>`` marker and the child's exit (pidfd)."""

    def __init__(self, markers: MarkerDir, pid: int) -> None:
        super().__init__(daemon=True)
        markers.clear()
        self.markers, self.pid = markers, pid
        self.pidfd = os.pidfd_open(pid)
        self.term_ns: int | None = None
        self.gone_ns: int | None = None
        self.start()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.markers.fd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                for fd, _ in poller.poll(1000):
                    if fd == self.pidfd:
                        self.gone_ns = now_ns()
                    else:
                        self.markers._drain()
                        if self.term_ns is None:
                            for name, stamp in self.markers.other:
                                if name == f"term-{self.pid}":
                                    self.term_ns = stamp
                                    break
                if self.gone_ns is not None:
                    return
        finally:
            os.close(self.pidfd)

    def overshoot_ms(self, wait_s: float) -> float | None:
        self.join(65)
        if self.term_ns is None or self.gone_ns is None:
            return None
        return (self.gone_ns - self.term_ns) / 1e6 - wait_s * 1000


class GoneStamps(threading.Thread):
    """Stamp (monotonic ns) the moment each of ``pids`` exits, via pidfds, from a thread."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.fds = {}
        for pid in pids:
            try:
                self.fds[os.pidfd_open(pid)] = pid
            except ProcessLookupError:
                pass
        self.gone: dict[int, int] = {}
        self.start()

    def run(self) -> None:
        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + 60
        while len(self.gone) < len(self.fds) and time.monotonic() < deadline:
            for fd, _ in poller.poll(1000):
                if self.fds[fd] not in self.gone:
                    self.gone[self.fds[fd]] = now_ns()
                    poller.unregister(fd)
        for fd in self.fds:
            os.close(fd)
