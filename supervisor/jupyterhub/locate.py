"""Finding JupyterHub and configurable-http-proxy, and saying how to install them when they are missing.

On Debian 12/13 and Ubuntu 24.04 ``pip install jupyterhub`` outside a venv is refused (PEP 668), so
a server has JupyterHub in a venv, by convention ``/opt/jupyterhub``, which is on nobody's PATH; and
the proxy comes from npm, into that same prefix. Both are looked for where they really are, and
when they are not found the answer is the commands that install them there (``install_commands``,
pure, shared with the doctor). Nothing here writes anything.

When the hub will run as root (``trusted=True``), every program chosen here runs as root: the hub,
the proxy it starts, node under the proxy, and each ``#!`` interpreter on the way. So each must
pass the rule ``command[0]`` of a root service passes at start (docs/security.md X2,
supervisor/unix/trustchain.py): the file, through its symlinks, and every directory above it owned
by root and not group- or world-writable. A candidate found by searching that fails is skipped (and
said so); a given one is refused (``Untrusted``). The service's PATH gets only such directories.
Never searched: the current directory, or a relative PATH entry (which means it): whoever runs
``svctl init`` from /tmp must not get a program another user planted there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass

from supervisor.unix.trustchain import directory_problem, file_problem, walk

OPT = "/opt/jupyterhub"  # the venv (and npm prefix) the install commands below create
HUB = "jupyterhub"
PROXY = "configurable-http-proxy"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The releases whose package names the commands are known to be right for.
KNOWN_SYSTEMS = {("debian", "12"), ("debian", "13"), ("ubuntu", "24.04")}
MAX_PROGRAMS = 8  # a program, its interpreters (the kernel follows 4 levels) and env's program
PIP_LAUNCHER = b"'''exec' "  # pip's second line when the interpreter's path is too long for #!


class NotFound(Exception):
    """What was not found, where it was looked for; str() is the one error line."""

    def __init__(self, message: str, need_hub: bool, need_proxy: bool, skipped: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.need_hub, self.need_proxy, self.skipped = need_hub, need_proxy, skipped


class Untrusted(Exception):
    """A given program (or what it runs) that root would run but someone else could change."""


@dataclass(frozen=True)
class Programs:
    jupyterhub: str
    proxy: str
    node: str | None  # configurable-http-proxy is #!/usr/bin/env node: its directory goes on PATH
    path_env: str = BASE_PATH  # the service's PATH (hub_path)
    skipped: tuple[str, ...] = ()  # "CANDIDATE: why root must not run it", one per candidate passed over


def is_program(path: str) -> bool:
    """An executable regular file (a symlink to one counts: npm's .bin entries are links)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and os.access(path, os.X_OK)


def program_problem(path: str, search_path: str | None = None) -> str | None:
    """Why root must not run PATH, or None: the file and each program its ``#!`` line makes the
    kernel run (with ``#!/usr/bin/env NAME``, NAME as found on SEARCH_PATH, when given), each
    judged as trustchain judges ``command[0]``. A program that does not exist is no trust problem."""
    pending, seen = [path], 0
    while pending:
        current = pending.pop(0)
        seen += 1
        if seen > MAX_PROGRAMS:
            return f"{path}: too many levels of #! interpreters"
        reason, info, resolved = walk(current)
        if reason is None and info is not None:
            reason = file_problem(info, resolved)
        if reason:
            return reason if current == path else f"it runs {current}, and {reason}"
        if info is not None:
            pending += _interpreters(resolved, search_path)
    return None


def _interpreters(resolved: str, search_path: str | None) -> list[str]:
    """The programs a ``#!`` first line names: the interpreter, and env's program."""
    try:  # after walk() passed, root alone controls this path: nobody can swap the file under us
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            head = os.read(fd, 1024)
        finally:
            os.close(fd)
    except OSError:
        return []
    lines = head.split(b"\n")
    if not lines[0].startswith(b"#!"):
        return []
    words = lines[0][2:].decode("utf-8", errors="replace").split()
    if not words:
        return []
    found = [words[0]]
    if words == ["/bin/sh"] and len(lines) > 1 and lines[1].startswith(PIP_LAUNCHER):
        # pip writes this launcher when the interpreter's path is long or has spaces: quoted
        import shlex

        try:
            found += shlex.split(lines[1][len(PIP_LAUNCHER):].decode("utf-8", errors="replace"))[:1]
        except ValueError:
            found.append(lines[1].decode("utf-8", errors="replace"))  # unparsable: judged (and refused) as is
    if os.path.basename(words[0]) == "env":
        name = next((word for word in words[1:] if not word.startswith("-") and "=" not in word), None)
        if name and "/" in name:
            found.append(name)
        elif name and search_path is not None:
            found += [program for program in [shutil.which(name, path=search_path)] if program]
    return found


def _directory_problem(directory: str) -> str | None:
    """trustchain's rule for a directory put on root's PATH (a missing one: nobody but root can make it)."""
    reason, info, resolved = walk(directory)
    if reason or info is None:
        return reason
    if not stat.S_ISDIR(info.st_mode):
        return f"{resolved} is not a directory"
    return directory_problem(info, resolved)


def _directories(path: str | None) -> list[str]:
    """PATH's absolute entries: a relative one ("" too) means the current directory."""
    text = os.environ.get("PATH", os.defpath) if path is None else path
    return [entry for entry in text.split(os.pathsep) if os.path.isabs(entry)]


def _pick(name: str, directories: list[str], trusted: bool, skipped: list[str] | None) -> str | None:
    """The first NAME in DIRECTORIES that is a program (and, TRUSTED, root's to run)."""
    for directory in dict.fromkeys(directories):
        candidate = os.path.abspath(os.path.join(directory, name))
        if not is_program(candidate):
            continue
        problem = program_problem(candidate) if trusted else None
        if problem is None:
            return candidate
        if skipped is not None and f"{candidate}: {problem}" not in skipped:
            skipped.append(f"{candidate}: {problem}")
    return None


def hub_places(executable: str | None = None) -> list[str]:
    """Where jupyterhub is looked for after PATH: beside the interpreter running svctl (its venv;
    unresolved, since a venv's python is a symlink to /usr/bin/python3), then /opt/jupyterhub/bin."""
    beside = os.path.dirname(executable if executable is not None else sys.executable)
    return [place for place in (beside, f"{OPT}/bin") if place]


def proxy_places(jupyterhub: str | None, search_roots: tuple[str, ...]) -> list[str]:
    """Where configurable-http-proxy is looked for after PATH: beside jupyterhub, in its venv used as
    an npm prefix (``npm install --prefix VENV``, the install commands' way, wherever the venv is),
    the npm prefix of the install commands, and .npm-prefix under SEARCH_ROOTS (``make
    jupyterhub-deps``' place: init passes svctl's own source checkout, for a --prefix install only)."""
    places = []
    if jupyterhub:
        bin_dir = os.path.dirname(jupyterhub)
        places += [bin_dir, os.path.join(os.path.dirname(bin_dir), "node_modules", ".bin")]
    places += [f"{OPT}/node_modules/.bin", f"{OPT}/bin"]
    places += [os.path.join(root, ".npm-prefix", "node_modules", ".bin") for root in search_roots]
    return list(dict.fromkeys(places))


def find_jupyterhub(path: str | None = None, executable: str | None = None, trusted: bool = False,
                    skipped: list[str] | None = None) -> str | None:
    """jupyterhub on PATH, else beside the running interpreter, else in /opt/jupyterhub/bin."""
    return _pick(HUB, _directories(path) + hub_places(executable), trusted, skipped)


def find_proxy(search_roots: tuple[str, ...] = (), jupyterhub: str | None = None, path: str | None = None,
               trusted: bool = False, skipped: list[str] | None = None) -> str | None:
    """configurable-http-proxy on PATH, else in one of ``proxy_places``."""
    return _pick(PROXY, _directories(path) + proxy_places(jupyterhub, search_roots), trusted, skipped)


def find_node(jupyterhub: str | None, proxy: str | None, path: str | None = None, trusted: bool = False,
              skipped: list[str] | None = None) -> str | None:
    """node on PATH, else beside jupyterhub (a nodeenv in the venv) or beside the proxy's real file."""
    places = [os.path.dirname(program) for program in (jupyterhub, proxy) if program]
    if proxy:
        places.append(os.path.dirname(os.path.realpath(proxy)))
    return _pick("node", _directories(path) + places, trusted, skipped)


def hub_path(jupyterhub: str | None, proxy: str | None, node: str | None = None, trusted: bool = False,
             skipped: list[str] | None = None) -> str:
    """PATH for the hub: the directories of jupyterhub (jupyterhub-singleuser is beside it),
    configurable-http-proxy and node first, because the hub starts the first two by name and the
    proxy is ``#!/usr/bin/env node``; then the system's. TRUSTED: a directory someone else could
    write is left off (and said so in SKIPPED): whatever the service finds there would run."""
    programs = [program for program in (jupyterhub, proxy, node) if program]
    entries = dict.fromkeys([*(os.path.dirname(program) for program in programs), *BASE_PATH.split(":")])
    kept = []
    for entry in entries:
        problem = _directory_problem(entry) if trusted else None
        if problem is None:
            kept.append(entry)
        elif skipped is not None:
            skipped.append(f"{entry} (left off the service's PATH): {problem}")
    return ":".join(kept)


def _explicit(option: str, given: str, trusted: bool) -> str:
    path = os.path.abspath(given)
    if not is_program(path):
        raise NotFound(f"{option} {given}: not an executable file", option == "--jupyterhub",
                       option == "--proxy-command")
    problem = program_problem(path) if trusted else None
    if problem:
        raise Untrusted(f"{option} {given}: refusing to run it as root: {problem}")
    return path


def locate(jupyterhub: str | None, proxy: str | None, search_roots: tuple[str, ...],
           path: str | None = None, executable: str | None = None, trusted: bool = False) -> Programs:
    """The programs the service files will name: the given paths (checked), else found.

    TRUSTED (the hub will run as root): each must be root's to run (see the module's docstring).
    Raises NotFound naming what is missing and every place that was looked at, and Untrusted for
    a given program (or what it runs) that fails the rule."""
    skipped: list[str] = []
    hub = (_explicit("--jupyterhub", jupyterhub, trusted) if jupyterhub
           else find_jupyterhub(path, executable, trusted, skipped))
    chp = (_explicit("--proxy-command", proxy, trusted) if proxy
           else find_proxy(search_roots, hub, path, trusted, skipped))
    missing = []
    if hub is None:
        missing.append(f"jupyterhub not found (looked on PATH and in {', '.join(hub_places(executable))})")
    if chp is None:
        missing.append(f"configurable-http-proxy not found (looked on PATH and in "
                       f"{', '.join(proxy_places(hub, search_roots))})")
    if missing:
        raise NotFound("; ".join(missing), hub is None, chp is None, tuple(skipped))
    node = find_node(hub, chp, path, trusted, skipped)
    path_env = hub_path(hub, chp, node, trusted, skipped)
    if trusted:  # `#!/usr/bin/env node` runs whichever node the service's PATH finds: root's too
        for given, program in ((jupyterhub and "--jupyterhub", hub), (proxy and "--proxy-command", chp)):
            problem = program_problem(program, path_env)
            if problem:
                raise Untrusted(f"{given or 'the one found:'} {program}: refusing to run it as root: {problem}")
    return Programs(hub, chp, node, path_env, tuple(skipped))


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
