"""Finding JupyterHub and configurable-http-proxy, and saying how to install them when they are missing.

On Debian 12/13 and Ubuntu 24.04 ``pip install jupyterhub`` outside a venv is refused (PEP 668), so
a server has JupyterHub in a venv, by convention ``/opt/jupyterhub``, which is on nobody's PATH; and
the proxy comes from npm, into that same prefix. Both are looked for where they really are, and
when they are not found the answer is the commands that install them there (``install_commands``,
pure, shared with the doctor). Nothing here writes anything.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass

OPT = "/opt/jupyterhub"  # the venv (and npm prefix) the install commands below create
HUB = "jupyterhub"
PROXY = "configurable-http-proxy"
# The releases whose package names the commands are known to be right for.
KNOWN_SYSTEMS = {("debian", "12"), ("debian", "13"), ("ubuntu", "24.04")}


class NotFound(Exception):
    """What was not found, where it was looked for; str() is the one error line."""

    def __init__(self, message: str, need_hub: bool, need_proxy: bool) -> None:
        super().__init__(message)
        self.need_hub, self.need_proxy = need_hub, need_proxy


@dataclass(frozen=True)
class Programs:
    jupyterhub: str
    proxy: str
    node: str | None  # configurable-http-proxy is #!/usr/bin/env node: its directory goes on PATH


def is_program(path: str) -> bool:
    """An executable regular file (a symlink to one counts: npm's .bin entries are links)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and os.access(path, os.X_OK)


def _on_path(name: str, path: str | None) -> str | None:
    found = shutil.which(name, path=path)
    return os.path.abspath(found) if found and is_program(found) else None


def _first(name: str, directories: list[str]) -> str | None:
    for directory in directories:
        candidate = os.path.join(directory, name)
        if is_program(candidate):
            return os.path.abspath(candidate)
    return None


def hub_places(executable: str | None = None) -> list[str]:
    """Where jupyterhub is looked for after PATH: beside the interpreter running svctl (its venv;
    unresolved, since a venv's python is a symlink to /usr/bin/python3), then /opt/jupyterhub/bin."""
    beside = os.path.dirname(executable if executable is not None else sys.executable)
    return [place for place in (beside, f"{OPT}/bin") if place]


def proxy_places(jupyterhub: str | None, search_roots: tuple[str, ...]) -> list[str]:
    """Where configurable-http-proxy is looked for after PATH: beside jupyterhub, in its venv used as
    an npm prefix (``npm install --prefix VENV``, the install commands' way, wherever the venv is),
    the npm prefix of the install commands, and .npm-prefix under SEARCH_ROOTS (``make run``'s)."""
    places = []
    if jupyterhub:
        bin_dir = os.path.dirname(jupyterhub)
        places += [bin_dir, os.path.join(os.path.dirname(bin_dir), "node_modules", ".bin")]
    places += [f"{OPT}/node_modules/.bin", f"{OPT}/bin"]
    places += [os.path.join(root, ".npm-prefix", "node_modules", ".bin") for root in search_roots]
    unique: list[str] = []
    for place in places:
        if place not in unique:
            unique.append(place)
    return unique


def find_jupyterhub(path: str | None = None, executable: str | None = None) -> str | None:
    """jupyterhub on PATH, else beside the running interpreter, else in /opt/jupyterhub/bin."""
    return _on_path(HUB, path) or _first(HUB, hub_places(executable))


def find_proxy(search_roots: tuple[str, ...] = (), jupyterhub: str | None = None,
               path: str | None = None) -> str | None:
    """configurable-http-proxy on PATH, else in one of ``proxy_places``."""
    return _on_path(PROXY, path) or _first(PROXY, proxy_places(jupyterhub, search_roots))


def find_node(jupyterhub: str | None, proxy: str | None, path: str | None = None) -> str | None:
    """node on PATH, else beside jupyterhub (a nodeenv in the venv) or beside the proxy's real file."""
    places = [os.path.dirname(program) for program in (jupyterhub, proxy) if program]
    if proxy:
        places.append(os.path.dirname(os.path.realpath(proxy)))
    return _on_path("node", path) or _first("node", places)


def _explicit(option: str, given: str) -> str:
    path = os.path.abspath(given)
    if not is_program(path):
        raise NotFound(f"{option} {given}: not an executable file", option == "--jupyterhub",
                       option == "--proxy-command")
    return path


def locate(jupyterhub: str | None, proxy: str | None, search_roots: tuple[str, ...],
           path: str | None = None, executable: str | None = None) -> Programs:
    """The programs the service files will name: the given paths (checked), else found.

    Raises NotFound naming what is missing and every place that was looked at."""
    hub = _explicit("--jupyterhub", jupyterhub) if jupyterhub else find_jupyterhub(path, executable)
    chp = _explicit("--proxy-command", proxy) if proxy else find_proxy(search_roots, hub, path)
    missing = []
    if hub is None:
        missing.append(f"jupyterhub not found (looked on PATH and in {', '.join(hub_places(executable))})")
    if chp is None:
        missing.append(f"configurable-http-proxy not found (looked on PATH and in "
                       f"{', '.join(proxy_places(hub, search_roots))})")
    if missing:
        raise NotFound("; ".join(missing), hub is None, chp is None)
    return Programs(hub, chp, find_node(hub, chp, path))


def os_release(path: str = "/etc/os-release") -> str:
    """The os-release text ("" when unreadable: then the commands come with the note)."""
    for candidate in (path, "/usr/lib/os-release"):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as handle:
                return handle.read(64 << 10)
        except OSError:
            continue
    return ""


def _fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if not equals or not key.strip().isidentifier():
            continue
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            continue
        fields[key.strip()] = words[0] if words else ""
    return fields


def install_commands(os_release_text: str, need_hub: bool = True, need_proxy: bool = True) -> list[str]:
    """The shell commands (as root) that install what is missing into /opt/jupyterhub (pure).

    A venv, because pip outside one is refused on these systems (PEP 668); notebook brings JupyterLab
    and ipykernel, so users have something to run after login; the proxy with npm into the same
    prefix, where ``svctl init jupyterhub`` finds it. On an unknown system the same commands come
    after a comment line (copying it does no harm) saying they are Debian's."""
    fields = _fields(os_release_text)
    system = (fields.get("ID", "").lower(), fields.get("VERSION_ID", ""))
    packages = (["python3-venv"] if need_hub else []) + (["nodejs", "npm"] if need_proxy else [])
    commands = [f"apt-get install {' '.join(packages)}"] if packages else []
    if need_hub:
        commands += [f"python3 -m venv {OPT}", f"{OPT}/bin/pip install jupyterhub notebook"]
    if need_proxy:
        commands.append(f"npm install --prefix {OPT} {PROXY}")
    if system not in KNOWN_SYSTEMS:
        shown = fields.get("PRETTY_NAME") or " ".join(part for part in system if part) or "an unknown system"
        commands.insert(0, f"# these are for Debian 12/13 and Ubuntu 24.04; this is {shown}: "
                           "use its packages for the Python venv module, Node.js and npm")
    return commands
