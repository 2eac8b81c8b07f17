"""``svctl init jupyterhub [--ip ADDR] [--port N] [--prefix DIR] [--users a,b] [--admins a] [--auth pam|dummy]
[--proxy hub|external] [--force]`` (options parsed by supervisor/cli.py, which also prints --help).

Prints one line per file (written / kept) and what to do next.
"""

from __future__ import annotations

import getpass
import os

from supervisor.errors import Exit, SvctlError

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHOICES = {"--auth": ("pam", "dummy"), "--proxy": ("hub", "external")}


class InitArgs:
    """The options of `svctl init jupyterhub` (parsed by the CLI's one parser), checked."""

    def __init__(self, options) -> None:
        self.ip = options.value("--ip")
        self.port = options.number("--port", 9443, 1, 65535)
        self.hub_port = options.number("--hub-port", 9081, 1, 65535)
        self.api_port = options.number("--api-port", 9001, 1, 65535)
        self.prefix = options.value("--prefix", "")
        self.users, self.admins = options.value("--users", ""), options.value("--admins", "")
        self.auth, self.proxy = _choice(options, "--auth"), _choice(options, "--proxy")
        self.force, self.no_hints = options.flag("--force"), options.flag("--no-hints")


def _choice(options, option: str) -> str:
    from supervisor.cli import bad_args

    allowed = CHOICES[option]
    value = options.value(option, allowed[0])
    if value not in allowed:
        raise bad_args("init", f"{option} must be {' or '.join(allowed)}, not {value!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))


def _host_addresses() -> list[str]:
    import socket

    import psutil

    return [entry.address for entries in psutil.net_if_addrs().values() for entry in entries
            if entry.family == socket.AF_INET6]


def init(context, args: list[str]) -> int:
    from supervisor.cli import options_for

    parsed = options_for(context, "init", args)
    if parsed.name != "jupyterhub":
        raise SvctlError("init: only 'svctl init jupyterhub' exists", Exit.BAD_ARGS)
    options = InitArgs(parsed)
    from supervisor.jupyterhub import certs, scaffold

    try:
        ip = scaffold.check_ip(options.ip) if options.ip else scaffold.default_ip(_host_addresses())
    except scaffold.InitError as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.BAD_ARGS) from None
    users, admins = _names(options.users), _names(options.admins)
    if options.auth == "dummy" and not users:
        users = (getpass.getuser(),)
    jupyterhub = scaffold.find_jupyterhub()
    proxy = scaffold.find_proxy((os.getcwd(), _REPO_ROOT))
    layout = scaffold.Layout.under(options.prefix, context.config_dir)
    settings = scaffold.InitOptions(
        ip=ip, port=options.port, hub_port=options.hub_port, api_port=options.api_port,
        jupyterhub=jupyterhub or "/usr/local/bin/jupyterhub", proxy=proxy,
        path_env=scaffold.hub_path(jupyterhub, proxy), users=users, admins=admins, auth=options.auth,
        proxy_mode=options.proxy,
    )
    try:
        results = scaffold.write_all(layout, settings, force=options.force)
    except PermissionError as exc:
        where = exc.filename or (options.prefix or "/etc")
        raise SvctlError(f"init jupyterhub: cannot write {where}: run it as root (or with --prefix DIR "
                         "in a directory of yours)", Exit.NOT_ROOT) from None
    except (OSError, certs.CertError) as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.FAILED) from None
    _report(results, layout, settings, hints=not options.no_hints)
    return Exit.OK


def _report(results, layout, settings, hints: bool = True) -> None:
    for item in results:
        print(f"{'wrote' if item.created else 'kept (exists; --force overwrites)'}: {item.path}")
    if settings.jupyterhub == "/usr/local/bin/jupyterhub" and not os.access(settings.jupyterhub, os.X_OK):
        print("warning: jupyterhub is not installed; pip install jupyterhub jupyter_server")
    if settings.proxy is None:
        print("warning: configurable-http-proxy not found; npm install -g configurable-http-proxy")
    if settings.auth == "dummy":
        secret = next((item.secret for item in results if item.path == layout.password_file and item.secret), None)
        shown = secret + "  (shown once)" if secret else f"in {layout.password_file}"
        print(f"login: {', '.join(settings.users)}  password: {shown}")
    elif not settings.users and not settings.admins:
        print(f"note: no --users given; nobody can log in until {layout.config_path} sets allowed_users")
    if not hints:
        return
    url = f"https://{'[' + settings.ip + ']' if ':' in settings.ip else settings.ip}:{settings.port}"
    global_flags = f"--config-dir {layout.config_dir} --run-dir {layout.run_dir} " if layout.prefix else ""
    if settings.external_proxy:
        kept_config = any(item.path == layout.config_path and not item.created for item in results)
        if kept_config and not _is_external(layout.config_path):
            print(f"warning: the kept {layout.config_path} lets the hub start its own proxy; "
                  "rerun with --force to write the external-proxy config")
        print(f"next: svctl {global_flags}check jupyterhub; svctl {global_flags}start jupyterhub-proxy; "
              f"svctl {global_flags}start jupyterhub; then open {url}")
        return
    print(f"next: svctl {global_flags}check jupyterhub; svctl {global_flags}start jupyterhub; then open {url}")


def _is_external(config_path: str) -> bool:
    from supervisor.jupyterhub.pyconfig import read_config

    try:
        return read_config(config_path).get("ConfigurableHTTPProxy.should_start", True) is False
    except (OSError, SyntaxError, ValueError):
        return False
