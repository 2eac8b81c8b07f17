"""The ``jupyterhub`` preset's start hook: clear what an unclean hub exit left behind.

After SIGKILL, SIGHUP, a crash or a startup failure, the hub's configurable-http-proxy keeps
running in its own session (process-group kills miss it) and keeps the public and API ports. The
next hub then either SIGKILLs whatever PID the stale pid file names (it only checks ``kill(pid,
0)``: PID reuse makes that an unrelated process) or, with the file gone, fails with 403/EADDRINUSE
(docs/jupyterhub.md). So before each start svctl stops the orphan itself, but
only once the PID's command line proves it is a proxy, and removes the stale pid files.

The hub's config names those pid files, and the hub's user may write that config: so every file
operation here is done with the credentials of the service's user when it is not root
(userfiles.read_bytes_as / remove_as: a pid file pointed at a root-only file is then simply not
removable), a proxy is signalled only if it runs as that same user, and for a hub that runs as
root nothing is done unless root alone controls the config (docs/security.md, P1 and F2).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import psutil

from supervisor.config import ServiceConfig
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile, config_path_from_command, parse_config
from supervisor.unix import userfiles

MAX_CONFIG_BYTES = 4 << 20

PROXY_MARK = "configurable-http-proxy"
DEFAULT_PROXY_PID_FILE = "jupyterhub-proxy.pid"  # JupyterHub's default, relative to the hub's cwd


@dataclass(frozen=True)
class HubFiles:
    proxy_pid_file: str | None  # None: the hub does not start the proxy (should_start = False)
    hub_pid_file: str | None  # None: JupyterHub.pid_file unset (its default '' writes none)


def _absolute(path: str, working_directory: str) -> str:
    return os.path.normpath(os.path.join(working_directory, path))


def hub_files(config: ServiceConfig, hub_config: ConfigFile | None) -> HubFiles:
    """Where the hub writes its pid files, from the parsed config (pure)."""
    cwd = config.working_directory
    hub_config = hub_config or ConfigFile()
    proxy = hub_config.get("ConfigurableHTTPProxy.pid_file", DEFAULT_PROXY_PID_FILE)
    if not isinstance(proxy, str) or not proxy:
        proxy = DEFAULT_PROXY_PID_FILE  # UNKNOWN: the default is the best guess left
    # An external proxy (zero-disruption mode) is its own service: never ours to stop.
    external = hub_config.get("ConfigurableHTTPProxy.should_start", True) is False
    hub = hub_config.get("JupyterHub.pid_file", "")
    return HubFiles(
        proxy_pid_file=None if external else _absolute(proxy, cwd),
        hub_pid_file=_absolute(hub, cwd) if isinstance(hub, str) and hub and hub is not UNKNOWN else None,
    )


def _read_pid(path: str, actor: tuple[int, int] | None) -> int | None | str:
    """The PID in PATH; None if there is no file; "garbage" if it holds no PID (or is no regular
    file: a FIFO never blocks us, see userfiles)."""
    try:
        raw = userfiles.read_bytes_as(actor, path, 64)
    except OSError:
        return "garbage"
    if raw is None:
        return None
    text = raw.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 1 << 22 else "garbage"


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _is_hub(process: psutil.Process) -> bool:
    """``python /venv/bin/jupyterhub -f ...`` or ``python -m jupyterhub``: the program, not a mention."""
    try:
        argv = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    head = [os.path.basename(word) for word in argv[:3]]
    return "jupyterhub" in head[:2] or head[1:3] == ["-m", "jupyterhub"]


def _remove(path: str, why: str, lines: list[str], actor: tuple[int, int] | None) -> None:
    try:
        if not userfiles.remove_as(actor, path):
            return
    except OSError as exc:
        lines.append(f"cannot remove {why} {path}: {userfiles.describe(exc)}")
        return
    lines.append(f"removed {why} {path}")


def _owned_by_live_hub(process: psutil.Process) -> psutil.Process | None:
    """A proxy whose parent is a running hub is that hub's, not an orphan."""
    try:
        parent = process.parent()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if parent is not None and parent.pid != 1 and _is_hub(parent):
        return parent
    return None


def _stop(process: psutil.Process, term_timeout: float, lines: list[str]) -> None:
    """SIGTERM (CHP exits 2 on it), then SIGKILL after TERM_TIMEOUT."""
    how = "SIGTERM"
    try:
        process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([process], timeout=term_timeout)
        if alive:
            how = "SIGKILL"
            process.send_signal(signal.SIGKILL)
            _, alive = psutil.wait_procs([process], timeout=5)
    except psutil.NoSuchProcess:
        alive = []
    except psutil.AccessDenied:
        lines.append(f"not allowed to stop the orphaned proxy pid {process.pid}: stop it as its owner")
        return
    if alive:
        lines.append(f"orphaned configurable-http-proxy pid {process.pid} survived SIGKILL")
    else:
        lines.append(f"stopped orphaned configurable-http-proxy pid {process.pid} ({how})")


def _runs_as(process: psutil.Process, actor: tuple[int, int] | None) -> bool:
    """Whether PROCESS runs as the service's user (any process will do for a root hub)."""
    if actor is None:
        return True
    try:
        return process.uids().real == actor[0]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def cleanup_proxy(path: str, lines: list[str], term_timeout: float = 5.0,
                  actor: tuple[int, int] | None = None) -> None:
    pid = _read_pid(path, actor)
    if pid is None:
        return
    if pid == "garbage":
        _remove(path, "unreadable proxy pid file", lines, actor)
        return
    assert isinstance(pid, int)
    try:
        process = psutil.Process(pid)
        command = _cmdline(process)
        same_group = os.getpgid(pid) == os.getpgrp()
    except (psutil.NoSuchProcess, ProcessLookupError):
        _remove(path, f"stale proxy pid file (pid {pid} is gone)", lines, actor)
        return
    if PROXY_MARK not in command or pid == os.getpid() or same_group or not _runs_as(process, actor):
        # PID reuse (or a pid file written to point elsewhere): the number belongs to something
        # else, which must survive; only the file goes.
        what = command or "unknown command"
        lines.append(f"pid {pid} named by {path} is not an orphaned proxy of this hub ({what[:80]}); "
                     "left it alone")
        _remove(path, "stale proxy pid file", lines, actor)
        return
    owner = _owned_by_live_hub(process)
    if owner is not None:
        lines.append(f"proxy pid {pid} belongs to a running hub (pid {owner.pid}); left it alone: "
                     "two hubs on one state directory break each other")
        return
    _stop(process, term_timeout, lines)
    _remove(path, "proxy pid file", lines, actor)


def cleanup_hub_pid_file(path: str, lines: list[str], actor: tuple[int, int] | None = None) -> None:
    pid = _read_pid(path, actor)
    if pid is None:
        return
    if isinstance(pid, int):
        try:
            if _is_hub(psutil.Process(pid)) and pid != os.getpid():
                lines.append(f"a jupyterhub (pid {pid}) still runs with {path}; left it alone")
                return
        except psutil.NoSuchProcess:
            pass
    _remove(path, "stale hub pid file", lines, actor)


def service_actor(config: ServiceConfig) -> tuple[int, int] | None | str:
    """Whose credentials the clean-up uses: (uid, gid) of a non-root service user, None for root,
    or a one-line reason to do nothing (a root hub whose config someone else could change)."""
    import pwd

    from supervisor.unix.validate import runs_as_root

    if not runs_as_root(config.user):
        if os.geteuid() != 0:
            return None  # svctl itself runs as that user (a private setup): its own rights already
        entry = pwd.getpwnam(config.user)
        return entry.pw_uid, entry.pw_gid
    from supervisor.unix.trustchain import check_chain

    config_path = config_path_from_command(config.command, config.working_directory)
    reason = check_chain(config_path)
    return f"not cleaning up after the hub: {reason}" if reason else None


def cleanup_before_start(config: ServiceConfig, term_timeout: float = 5.0) -> list[str]:
    """Stop an orphaned proxy and clear stale pid files; returns what was done, one line each."""
    return before_start(config, term_timeout)[0]


def before_start(config: ServiceConfig, term_timeout: float = 5.0) -> tuple[list[str], str | None]:
    """The clean-up above, then whether the start must be refused: (lines, refusal or None). The
    refusal names another JupyterHub that holds the hub's port (supervisor/jupyterhub/ports.py):
    starting anyway would crash-loop the new hub while the old one answers."""
    lines: list[str] = []
    actor = service_actor(config)
    if isinstance(actor, str):
        return [actor], None
    config_path = config_path_from_command(config.command, config.working_directory)
    try:
        raw = userfiles.read_bytes_as(actor, config_path, MAX_CONFIG_BYTES)
        if raw is None:
            raise FileNotFoundError(2, "No such file or directory")
        hub_config: ConfigFile | None = parse_config(raw.decode("utf-8", "replace"), config_path)
    except OSError as exc:
        hub_config = None
        lines.append(f"cannot read {config_path} ({userfiles.describe(exc)}); assuming the default proxy pid file")
    files = hub_files(config, hub_config)
    if files.proxy_pid_file:
        cleanup_proxy(files.proxy_pid_file, lines, term_timeout, actor)
    if files.hub_pid_file:
        cleanup_hub_pid_file(files.hub_pid_file, lines, actor)
    if hub_config is None:
        return lines, None  # unreadable: nothing to judge the ports by
    from supervisor.jupyterhub.ports import held_by_another_hub, hub_ports

    return lines, held_by_another_hub(hub_ports(hub_config), _is_hub)
