"""Drivers for the things being measured: svctl, supervisord, start-stop-daemon and the floor.

Each driver owns its temp directory (config, run state, pidfiles, logs, marker directories) and
knows how to start, stop and find the PID of its service. Nothing here touches /etc or /run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from harness import (
    MARKER_CHILD,
    PYTHON,
    SH,
    SSD,
    SUPERVISORCTL,
    SUPERVISORD,
    SVCTL,
    FLOOR_PARENT,
    MarkerDir,
    alive,
    descendants,
    ignore_esrch,
    read_pid,
    run,
    tmpdir,
    wait_until,
)


def marker_command(markers: Path, ignore_term: bool = False) -> list[str]:
    cmd = [SH, str(MARKER_CHILD), str(markers)]
    return cmd + ["ignore-term"] if ignore_term else cmd


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


# ---------------------------------------------------------------- svctl


class Svctl:
    """Services managed by svctl, in a private --config-dir/--run-dir."""

    label = "svctl"

    def __init__(self, tag: str = "svctl") -> None:
        self.root = tmpdir(tag)
        self.config_dir = self.root / "etc"
        self.run_dir = self.root / "run"
        self.config_dir.mkdir()
        self.run_dir.mkdir()

    def cmd(self, verb: str, name: str, *extra: str) -> list[str]:
        return [
            SVCTL,
            "--config-dir",
            str(self.config_dir),
            "--run-dir",
            str(self.run_dir),
            verb,
            name,
            *extra,
        ]

    def define(self, name: str, command: list[str], **keys) -> Path:
        base = {
            "command": command,
            "pidfile": str(self.root / f"{name}.pid"),
            "log_file": str(self.root / f"{name}.log"),
            "events_file": str(self.root / f"{name}.json"),
            "stop": "TERM/2/KILL/1",
            "restart": "always",
            "min_uptime": 0,
            "backoff_initial": 0.1,
            "give_up_after": 100000,
            "start_seconds": 0.2,
        }
        base.update(keys)
        text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in base.items() if value is not None)
        path = self.config_dir / f"{name}.toml"
        path.write_text(text)
        return path

    def markers(self, name: str) -> MarkerDir:
        return MarkerDir(self.root / "markers" / name)

    def start(self, name: str, timeout: float = 60):
        return run(self.cmd("start", name), timeout=timeout)

    def stop(self, name: str, timeout: float = 60):
        return run(self.cmd("stop", name), timeout=timeout)

    def status(self, name: str):
        return run(self.cmd("status", name), timeout=30)

    def supervisor_pid(self, name: str) -> int | None:
        return read_pid(self.root / f"{name}.pid")

    def service_pid(self, name: str) -> int | None:
        for path in (self.run_dir / name / "state.json", self.run_dir / f"{name}.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            service = data.get("service") or {}
            if isinstance(service, dict) and service.get("pid"):
                return int(service["pid"])
            if data.get("service_pid"):
                return int(data["service_pid"])
        return None

    def kill_all(self) -> None:
        """SIGKILL the supervisors (by PID from their pidfiles); kill_tree finishes the rest."""
        for pidfile in self.root.glob("*.pid"):
            pid = read_pid(pidfile)
            if pid:
                ignore_esrch(os.kill, pid, signal.SIGKILL)


def svctl_available() -> str | None:
    """None if `svctl start` can run a service here, else the reason."""
    if not os.access(SVCTL, os.X_OK):
        return f"{SVCTL} not installed"
    svc = Svctl("probe")
    markers = svc.markers("probe")
    svc.define("probe", marker_command(markers.path), start_seconds=0.05)
    try:
        wall, rc, out = svc.start("probe", timeout=20)
        if rc != 0:
            return f"svctl start exited {rc}: {out.strip().splitlines()[-1] if out.strip() else ''}"
        markers.wait_new(None, 5)
        wall, rc, out = svc.stop("probe", timeout=20)
        if rc != 0:
            return f"svctl stop exited {rc}: {out.strip()[-300:]}"
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable yet"; report why
        return f"{type(exc).__name__}: {exc}"
    finally:
        svc.kill_all()
        markers.close()


class SvctlUp(Svctl):
    """`svctl up`: every service of a private --config-dir in ONE foreground process, our child.

    Its console (one line per event on stderr) goes to a file: a pipe nobody reads would fill up
    with 100 services' events and block the supervisor. The service files keep Svctl's private
    pidfile paths (up writes none, but the default would be /run/NAME.pid).
    """

    label = "svctl up"

    def __init__(self, tag: str = "svctl-up") -> None:
        super().__init__(tag)
        self.console = self.root / "console.log"
        self.proc: subprocess.Popen | None = None
        self._tree: list[int] = []  # its descendants, last seen (for cleanup by PID)

    def up_cmd(self, *names: str) -> list[str]:
        return [SVCTL, "--config-dir", str(self.config_dir), "--run-dir", str(self.run_dir), "up", *names]

    def boot(self, *names: str) -> subprocess.Popen:
        """Start `svctl up` (not waiting for anything): the caller times what it wants."""
        with open(self.console, "ab") as console:
            self.proc = subprocess.Popen(
                self.up_cmd(*names), stdin=subprocess.DEVNULL, stdout=console, stderr=console
            )
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited_early(self) -> str | None:
        """If `svctl up` is already gone: why (exit code and the console's last line)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        tail = self.console.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return f"`svctl up` exited {self.proc.returncode}: {tail[0][:300]}"

    def children(self) -> list[int]:
        """Every live descendant of the up process (services, checks, escapees)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        self._tree = [p for p in descendants(self.pid) if alive(p)]
        return self._tree

    def terminate(self, timeout: float = 60) -> tuple[int | None, float, list[int]]:
        """SIGTERM up; return (exit code or None if it hung, seconds to exit, PIDs it left alive).

        What it left (or everything, if it hung) is SIGKILLed by PID here.
        """
        assert self.proc is not None
        tree = self.children()
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            self.proc.kill()
            self.proc.wait()
        seconds = time.perf_counter() - t0
        left = [p for p in tree if alive(p)]
        for pid in left:
            ignore_esrch(os.kill, pid, signal.SIGKILL)
        return rc, seconds, left

    def kill_all(self) -> None:
        """Cleanup on error: SIGKILL up and what it supervises, by PID."""
        tree = self.children() or self._tree
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in tree:
            if alive(pid):
                ignore_esrch(os.kill, pid, signal.SIGKILL)


# ---------------------------------------------------------------- supervisord


class Supervisord:
    """One supervisord (PyPI supervisor 4.x, its own venv) in the foreground as our child."""

    label = "supervisord"

    def __init__(self, programs: dict[str, dict], tag: str = "supd") -> None:
        self.root = tmpdir(tag)
        self.conf = self.root / "supervisord.conf"
        self.sock = self.root / "supervisor.sock"
        lines = [
            "[unix_http_server]",
            f"file={self.sock}",
            "",
            "[supervisord]",
            f"logfile={self.root}/supervisord.log",
            f"pidfile={self.root}/supervisord.pid",
            "nodaemon=true",
            "loglevel=info",
            f"childlogdir={self.root}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.sock}",
            "",
        ]
        for name, opts in programs.items():
            base = {
                "autostart": "true",
                "autorestart": "true",
                "startsecs": "0",
                "startretries": "100000",
                "stopwaitsecs": "2",
                "stdout_logfile": f"{self.root}/{name}.out",
                "redirect_stderr": "true",
            }
            base.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in opts.items()})
            lines.append(f"[program:{name}]")
            lines += [f"{k}={v}" for k, v in base.items()]
            lines.append("")
        self.conf.write_text("\n".join(lines))
        self.proc: subprocess.Popen | None = None

    def boot(self, wait_programs: int = 0, markers_root: Path | None = None, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(
            [SUPERVISORD, "-n", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.sock.exists, 20, "supervisord socket", interval=0.005)
        if wait_programs and markers_root:
            wait_until(
                lambda: sum(1 for p in markers_root.glob("*/*")) >= wait_programs,
                timeout,
                f"{wait_programs} supervisord programs to start",
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ctl_cmd(self, *args: str) -> list[str]:
        return [SUPERVISORCTL, "-c", str(self.conf), *args]

    def ctl(self, *args: str, timeout: float = 60):
        return run(self.ctl_cmd(*args), timeout=timeout)

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- start-stop-daemon


class StartStopDaemon:
    """Debian's start-stop-daemon: --background --make-pidfile; no supervision."""

    label = "start-stop-daemon"

    def __init__(self, tag: str = "ssd") -> None:
        self.root = tmpdir(tag)
        self.pidfile = self.root / "svc.pid"
        self.markers = MarkerDir(self.root / "markers")

    def start(self, ignore_term: bool = False):
        cmd = [
            SSD,
            "--start",
            "--background",
            "--make-pidfile",
            "--pidfile",
            str(self.pidfile),
            "--startas",
            SH,
            "--",
            *marker_command(self.markers.path, ignore_term)[1:],
        ]
        wall, rc, out = run(cmd, check=True)
        pid = wait_until(lambda: read_pid(self.pidfile), 5, "start-stop-daemon pidfile")
        wait_until(lambda: (self.markers.path / str(pid)).exists(), 5, "ssd child marker")
        return pid

    def stop_cmd(self, schedule: str = "TERM/30/KILL/5") -> list[str]:
        return [SSD, "--stop", "--retry", schedule, "--pidfile", str(self.pidfile)]

    def status_cmd(self) -> list[str]:
        return [SSD, "--status", "--pidfile", str(self.pidfile)]

    def kill(self) -> None:
        pid = read_pid(self.pidfile)
        if pid and alive(pid):
            ignore_esrch(os.kill, pid, signal.SIGKILL)


# ---------------------------------------------------------------- floor


class Floor:
    """floor_parent.py: waitpid, then fork+exec the same child again."""

    label = "floor"

    def __init__(self, tag: str = "floor") -> None:
        self.root = tmpdir(tag)
        self.markers = MarkerDir(self.root / "markers")
        self.proc: subprocess.Popen | None = None

    def boot(self) -> int:
        self.proc = subprocess.Popen(
            [PYTHON, str(FLOOR_PARENT), *marker_command(self.markers.path)], stdin=subprocess.DEVNULL
        )
        pid, _ = self.markers.wait_new(None, 10)
        return pid

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        child = self.markers.latest_pid()
        if child and alive(child):
            ignore_esrch(os.kill, child, signal.SIGKILL)


def settle(seconds: float) -> None:
    time.sleep(seconds)
