"""The hub's programs as the doctor finds them: which Python runs it, whether it has jupyter_server,
where else JupyterHub is installed, and whether anyone but root could change what a root hub runs.

Part of probe.py's impure half (see there); files are read through probe_files, as the caller may.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from supervisor.config import ServiceConfig
from supervisor.jupyterhub import probe_files
from supervisor.jupyterhub.probe_files import interpreter as _interpreter
from supervisor.jupyterhub.pyconfig import ConfigFile


def proxy_wanted(hub: ConfigFile) -> str:
    """ConfigurableHTTPProxy.command's program (a list or a string), else the name the hub runs."""
    command = hub.get("ConfigurableHTTPProxy.command")
    if isinstance(command, list) and command and isinstance(command[0], str):
        return command[0]
    return command if isinstance(command, str) and command else "configurable-http-proxy"


LOCAL_PROCESS_SPAWNERS = ("localprocess", "jupyterhub.spawner.LocalProcessSpawner")


def _closed_to_others(path: str) -> tuple[str, int] | None:
    """The first directory on the way to PATH's real file without o+x, or the file itself if not o+x."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # ValueError: a NUL (from a #! line)
        return None
    for directory in (*reversed(Path(real).parents), Path(real)):
        try:
            mode = os.stat(directory).st_mode & 0o777
        except OSError:
            return None
        if not mode & 0o001:
            return str(directory), mode
    return None


def singleuser_blocked(hub: ConfigFile, search_path: str) -> tuple[str, int] | None:
    """Whether users cannot execute the jupyterhub-singleuser that LocalProcessSpawner runs as them."""
    if hub.get("JupyterHub.spawner_class", "localprocess") not in LOCAL_PROCESS_SPAWNERS or hub.has("Spawner.cmd"):
        return None
    program = shutil.which("jupyterhub-singleuser", path=search_path)
    if program is None:
        return None
    interpreter = _interpreter(program)
    return _closed_to_others(program) or (_closed_to_others(interpreter) if interpreter else None)


# What a #! line must name for the import probe to mean anything: python3, python3.11, pypy3...
PYTHON_NAME = re.compile(r"(python|pypy)[0-9.]*")


def jupyter_server_state(config: ServiceConfig) -> tuple[bool | None, str]:
    """(can the hub's interpreter import jupyter_server? None when that can't be asked safely;
    why it was not asked, for an information line, or "").

    The interpreter comes from command[0]'s #! line, a file the service's user may control: it
    runs as that user (like the hub itself), or, for a hub that runs as root, only when root alone
    controls the interpreter and its path (docs/security.md X2): never someone's code as root.
    A non-root caller asks only for a service that runs as itself (acts_as_service). A wrapper
    that is not a Python script (#!/bin/sh, a binary) is not asked: its "interpreter" would fail
    the import for no reason, and nothing says which Python it ends up running.
    """
    import pwd

    from supervisor.unix.validate import check_environment, runs_as_root

    if probe_files.acts_as_service(config):
        return None, ""
    program = config.command[0]
    python = _interpreter(program)
    if python is None:
        head, _, _ = probe_files.read(program, 2)
        return None, (f"command[0] {program} is not a Python script (it has no #! line)" if head else "")
    if "\0" in python or not PYTHON_NAME.fullmatch(os.path.basename(python)):
        return None, f"command[0] {program} is not a Python script (it runs {python!r})"
    identity: dict = {}
    try:
        account = pwd.getpwnam(config.user) if config.user else None
    except KeyError:
        return None, ""  # the service file's own check says the user is unknown
    if os.geteuid() == 0 and runs_as_root(config.user):
        if probe_files.root_trust_problem(python) or probe_files.root_trust_problem(program):
            return None, ""  # trust_findings reports it; nothing of it runs as root
        account = None
    elif os.geteuid() == 0 and account is not None:
        identity = {"user": account.pw_uid, "group": account.pw_gid,
                    "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
    try:
        result = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                                 "sys.exit(u.find_spec('jupyter_server') is None)"],
                                capture_output=True, timeout=30, check=False, cwd="/",
                                env=check_environment(config, account, "/tmp"), **identity)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None, ""
    return result.returncode == 0, ""


def hub_venv(config: ServiceConfig) -> str | None:
    """The venv command[0] lives in (the directory above its bin/, holding pyvenv.cfg), or None."""
    bin_dir = os.path.dirname(config.command[0])
    venv = os.path.dirname(bin_dir)
    if os.path.basename(bin_dir) != "bin" or not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return None
    return venv


def trust_problems(config: ServiceConfig, hub: ConfigFile, programs, search_path: str
                   ) -> tuple[tuple[str, str, str], ...]:
    """(what, path, why others could change it) for every program a root hub runs as root and every
    directory on its PATH (the proxy and node are looked up there); empty for a hub of another user."""
    if probe_files.runner(config.user, config.path) != 0:
        return ()
    found = {program.role: program.found for program in programs}
    starts_proxy = hub.get("ConfigurableHTTPProxy.should_start", True) is not False
    configured = "ConfigurableHTTPProxy.command[0]" if hub.has("ConfigurableHTTPProxy.command") \
        else "found on the service's PATH"
    candidates = [("command[0]", found.get("jupyterhub"))]
    candidates.append(("command[0]'s interpreter", _absolute_interpreter(found.get("jupyterhub"))))
    if starts_proxy:
        candidates += [(f"the proxy the hub starts ({configured})", found.get("configurable-http-proxy")),
                       ("the proxy's interpreter", _absolute_interpreter(found.get("configurable-http-proxy"))),
                       ("node (the proxy is #!/usr/bin/env node)", found.get("node"))]
    problems, seen = [], set()
    for what, path in candidates:
        if path and path not in seen:
            seen.add(path)
            reason = probe_files.root_trust_problem(path)
            if reason:
                problems.append((what, path, reason))
    for directory in dict.fromkeys(search_path.split(":")):
        reason = probe_files.path_directory_problem(directory)
        if reason:
            problems.append(("a directory on the service's PATH", directory, reason))
    return tuple(problems)


def _absolute_interpreter(program: str | None) -> str | None:
    """PROGRAM's #! interpreter when it names one by absolute path (not env, whose target is on PATH)."""
    if not program:
        return None
    python = _interpreter(program, follow_env=False)
    if not python or not os.path.isabs(python) or os.path.basename(python) == "env":
        return None
    return python


def elsewhere(programs) -> dict[str, str]:
    """For a missing jupyterhub or proxy, one that exists where init looks (PATH, beside svctl's
    Python, /opt/jupyterhub): the fix is then to point the service at it, not to install anything."""
    try:
        from supervisor.jupyterhub import locate

        wanted = {program.role: program for program in programs}
        found = {}
        hub = wanted.get("jupyterhub")
        if hub is not None and hub.problem:
            candidate = locate.find_jupyterhub(trusted=os.geteuid() == 0)
            if candidate and candidate != hub.wanted:
                found["jupyterhub"] = candidate
        proxy = wanted.get("configurable-http-proxy")
        if proxy is not None and proxy.problem:
            candidate = locate.find_proxy((), hub.found if hub is not None else None, trusted=os.geteuid() == 0)
            if candidate and candidate != proxy.wanted:
                found["configurable-http-proxy"] = candidate
        return found
    except (ImportError, AttributeError, TypeError, OSError, ValueError):  # locate.py is another's; a hint only
        return {}
