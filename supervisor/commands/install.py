"""``svctl install NAME`` and ``svctl uninstall NAME``: write or remove the boot files.

Rendering is ``supervisor.boot`` (pure); this module writes the files (atomically), registers them
with ``update-rc.d`` / ``systemctl`` and prints what it did. It overwrites or deletes only files that
svctl generated: a hand-written ``/etc/init.d/NAME`` (the seed's) is left alone with an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from supervisor import boot, config
from supervisor.errors import Exit, SvctlError
from supervisor.names import validate_name

INSTALL_USAGE = (
    "Usage: svctl install NAME [--systemd|--no-systemd] [--initd|--no-initd] [--root DIR] [--print]"
)
UNINSTALL_USAGE = "Usage: svctl uninstall NAME [--root DIR]"
# update-rc.d and systemctl live in sbin, which a non-login root shell may lack.
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
WANTS_DIR = "multi-user.target.wants"


def install(context, args: list[str]) -> int:
    options = _parse(context, "install", args)
    name = options["name"]
    root = options.get("root", "/")
    live = root == "/"
    if live and not options.get("print"):
        _require_root("install")
    service = config.load(name, context.config_dir)
    svctl_path = svctl_executable()
    systemd = options.get("systemd", systemd_is_running())
    files = []
    if options.get("initd", True):
        files.append(boot.render_initd(service, svctl_path, context.config_dir, context.run_dir))
    if systemd:
        files.append(boot.render_systemd_unit(service, svctl_path, context.config_dir, context.run_dir))
    if not files:
        raise SvctlError(
            f"{name}: nothing to install (--no-initd without --systemd)\n{INSTALL_USAGE}", Exit.BAD_ARGS
        )
    if options.get("print"):  # the same checks as a real install; its notes go to stderr
        _check_requirements(service, context.config_dir, root, False, [file.name for file in files], sys.stderr)
        for file in files:
            print(f"==> {file.name} (mode {file.mode:04o}) <==")
            print(file.text, end="")
        return Exit.OK
    for file in files:
        _refuse_foreign(_under(root, file.name))
    _check_requirements(service, context.config_dir, root, live, [file.name for file in files])
    for file in files:
        write_file(_under(root, file.name), file.text, file.mode)
        print(f"{name}: wrote {_under(root, file.name)}")
    if systemd:
        _enable_unit(name, root, live)
    if options.get("initd", True) and live:
        run_tool(["update-rc.d", name, "defaults"])
        print(f"{name}: registered with update-rc.d (starts in runlevels 2-5, stops in 0, 1, 6)")
    return Exit.OK


def _check_requirements(service, config_dir: str, root: str, live: bool, targets: list[str],
                        notes=None) -> None:
    """Unknown requirements and cycles are exit 6. Each requirement's boot file must be there
    first: insserv refuses a script whose Required-Start names one it does not know, and
    systemd's Requires= on a missing unit fails the start. Live: an error; under --root (and
    --print): a note, on NOTES (default stdout)."""
    if not service.requires:
        return
    from supervisor import depgraph

    depgraph.requirements(service.name, config_dir)
    for target in targets:
        suffix = ".service" if target.endswith(".service") else ""
        for needed in service.requires:
            path = _under(root, os.path.join(os.path.dirname(target), needed + suffix))
            if os.path.lexists(path):
                continue
            message = f"{service.name}: requires {needed}, whose boot file {path} is not installed"
            if live:
                raise SvctlError(f"{message}: run `svctl install {needed}` first")
            print(f"{message} (yet): install it too", file=notes or sys.stdout)


def uninstall(context, args: list[str]) -> int:
    options = _parse(context, "uninstall", args)
    name = options["name"]
    root = options.get("root", "/")
    live = root == "/"
    if live:
        _require_root("uninstall")
    initd = _under(root, f"{boot.INITD_DIR}/{name}")
    unit = _under(root, f"{boot.SYSTEMD_DIR}/{name}.service")
    for path in (initd, unit):
        _refuse_foreign(path)
    removed = False
    if os.path.lexists(unit):
        _disable_unit(name, root, live)
        os.unlink(unit)
        print(f"{name}: removed {unit}")
        removed = True
        if live and systemd_is_running():
            run_tool(["systemctl", "daemon-reload"])
    if os.path.lexists(initd):
        # Script first, then the links: what Debian's postrm does on purge.
        os.unlink(initd)
        print(f"{name}: removed {initd}")
        removed = True
    if live and shutil.which("update-rc.d", path=TOOL_PATH):
        run_tool(["update-rc.d", name, "remove"])
    if not removed:
        print(f"{name}: no boot files were installed")
    return Exit.OK


def preflight(names: list[str]) -> None:
    """What ``install NAME`` would refuse, checked before ``svctl init`` writes anything: the path of
    svctl, a boot file svctl did not write (the seed's hand-written /etc/init.d/jupyterhub), and
    the tools that register the files."""
    svctl_executable()
    systemd = systemd_is_running()
    for name in names:
        _refuse_foreign(f"{boot.INITD_DIR}/{name}")
        if systemd:
            _refuse_foreign(f"{boot.SYSTEMD_DIR}/{name}.service")
    for tool in ("update-rc.d", *(("systemctl",) if systemd else ())):
        if shutil.which(tool, path=TOOL_PATH) is None:
            raise SvctlError(f"{tool} not found in {TOOL_PATH}, so the boot files cannot be registered",
                             Exit.NOT_INSTALLED)


def svctl_executable() -> str:
    """Absolute path of the running svctl: the boot files call it with a bare environment."""
    candidate = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if _is_command(candidate):
        return candidate
    found = shutil.which("svctl")
    if found:
        return os.path.abspath(found)
    raise SvctlError(
        "cannot tell the absolute path of the svctl command (run it as 'svctl', not 'python -m supervisor')",
        Exit.NOT_INSTALLED,
    )


def _is_command(path: str) -> bool:
    """An executable file that is a command, not a module run with ``python -m`` or ``python x.py``."""
    return bool(path) and not path.endswith(".py") and os.path.isfile(path) and os.access(path, os.X_OK)


def systemd_is_running() -> bool:
    """sd_booted(3): systemd is PID 1 exactly when this directory exists."""
    return os.path.isdir("/run/systemd/system")


def write_file(path: str, text: str, mode: int) -> None:
    """Atomic replace: a crash leaves the old file or the new one, never half a script."""
    from supervisor.unix.safefs import UnsafePath, write_trusted

    try:
        write_trusted(path, text.encode("utf-8"), mode, create_dirs=True)
    except UnsafePath as exc:
        raise SvctlError(f"refusing to write {path}: {exc}") from exc
    except OSError as exc:
        raise SvctlError(f"cannot write {path}: {exc.strerror}") from exc


def run_tool(argv: list[str]) -> None:
    """Run update-rc.d/systemctl; a failure is one line naming the command and what it said."""
    program = shutil.which(argv[0], path=TOOL_PATH)
    if program is None:
        raise SvctlError(
            f"{argv[0]} not found in {TOOL_PATH}: register the boot files by hand", Exit.NOT_INSTALLED
        )
    environment = dict(os.environ, PATH=TOOL_PATH)
    result = subprocess.run(
        [program, *argv[1:]], capture_output=True, text=True, env=environment, check=False
    )
    if result.returncode != 0:
        said = " ".join((result.stderr or result.stdout).split()) or "no message"
        raise SvctlError(f"{' '.join(argv)} failed (exit {result.returncode}): {said}")


def _enable_unit(name: str, root: str, live: bool) -> None:
    """``systemctl enable`` when systemd runs; otherwise the same WantedBy symlink, made by hand."""
    if live and systemd_is_running():
        run_tool(["systemctl", "daemon-reload"])
        run_tool(["systemctl", "enable", f"{name}.service"])
        print(f"{name}: enabled {name}.service (systemctl enable)")
        return
    link = _under(root, f"{boot.SYSTEMD_DIR}/{WANTS_DIR}/{name}.service")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(f"{boot.SYSTEMD_DIR}/{name}.service", link)
    print(f"{name}: enabled {name}.service ({link})")


def _disable_unit(name: str, root: str, live: bool) -> None:
    if live and systemd_is_running():
        run_tool(["systemctl", "disable", f"{name}.service"])
        return
    link = _under(root, f"{boot.SYSTEMD_DIR}/{WANTS_DIR}/{name}.service")
    if os.path.islink(link):
        os.unlink(link)


def _refuse_foreign(path: str) -> None:
    """Never overwrite or delete a boot file that svctl did not generate."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SvctlError(f"cannot read {path}: {exc.strerror}") from exc
    if boot.GENERATED_MARKER not in head:
        raise SvctlError(
            f"{path} exists and was not generated by svctl: move it away first (it is left untouched)"
        )


def _require_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise SvctlError(
            f"{verb} writes to /etc and runs update-rc.d: run it as root (or use --root DIR / --print)",
            Exit.NOT_ROOT,
        )


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root != "/" else path


def _parse(context, verb: str, args: list[str]) -> dict:
    """NAME, root and the flags given (the CLI's parser refused anything else); the last of a
    --x/--no-x pair wins."""
    from supervisor.cli import options_for, usage

    parsed = options_for(context, verb, args)
    options: dict = {"name": validate_name(parsed.name)}
    root = parsed.value("--root")
    if root is not None:
        if not root:
            raise SvctlError(f"{verb}: --root needs a directory\n{usage(verb)}", Exit.BAD_ARGS)
        options["root"] = os.path.abspath(root)
    if parsed.flag("--print"):
        options["print"] = True
    for key in ("systemd", "initd"):
        last = parsed.last(f"--{key}", f"--no-{key}")
        if last is not None:
            options[key] = not last.startswith("--no-")
    return options
