"""``svctl init jupyterhub [--ip ADDR] [--port N] [--prefix DIR] [--users a,b] [--admins a] [--auth pam|dummy]
[--proxy hub|external] [--jupyterhub PATH] [--proxy-command PATH] [--no-boot] [--force] [--renew-cert]
[--stop-user-servers]``
(options parsed by supervisor/cli.py, which also prints --help).

Finds JupyterHub and its proxy first (exit 5 with the commands that install them, exit 6 for a
given one root must not run; nothing written either way), writes the files and prints one line per
file (written / kept), installs the boot files (unless --prefix or --no-boot) and says what to do
next. What it reports is what the files on disk say, kept ones included: the programs they run, the
boot files that exist, the proxy mode of the kept config (a --proxy contradicting it is exit 6
before any write). ``--renew-cert`` (supervisor/commands/renew_cert.py) replaces only the
self-signed certificate and restarts whatever serves it.
"""

from __future__ import annotations

import getpass
import os

from supervisor.errors import Exit, SvctlError

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHOICES = {"--auth": ("pam", "dummy"), "--proxy": ("hub", "external")}
# What --renew-cert takes: it keeps everything else, so the options that shape it mean nothing.
RENEW_OPTIONS = ("--renew-cert", "--prefix", "--ip", "--no-hints")


class InitArgs:
    """The options of `svctl init jupyterhub` (parsed by the CLI's one parser), checked."""

    def __init__(self, options) -> None:
        self.ip = options.value("--ip")
        self.port = options.number("--port", 9443, 1, 65535)
        self.hub_port = options.number("--hub-port", 9081, 1, 65535)
        self.api_port = options.number("--api-port", 9001, 1, 65535)
        self.prefix = options.value("--prefix", "")
        self.users, self.admins = options.value("--users", ""), options.value("--admins", "")
        self.auth, self.proxy = _choice(options, "--auth", "pam"), _choice(options, "--proxy")  # None: the kept one
        self.jupyterhub, self.proxy_command = options.value("--jupyterhub"), options.value("--proxy-command")
        self.force, self.no_hints = options.flag("--force"), options.flag("--no-hints")
        self.no_boot, self.renew_cert = options.flag("--no-boot"), options.flag("--renew-cert")
        self.stop_user_servers = options.flag("--stop-user-servers")
        if self.renew_cert:
            others = sorted({given for given, _ in options.given if given not in RENEW_OPTIONS})
            if others:
                from supervisor.cli import bad_args

                raise bad_args("init", f"--renew-cert keeps everything else, so it takes only --prefix and "
                                       f"--ip, not {', '.join(others)}")


def _choice(options, option: str, default: str | None = None) -> str | None:
    """The value of a choice option; DEFAULT (None: "not given") when absent."""
    from supervisor.cli import bad_args

    allowed = CHOICES[option]
    value = options.value(option, default)
    if value is not None and value not in allowed:
        raise bad_args("init", f"{option} must be {' or '.join(allowed)}, not {value!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))


def host_addresses() -> list[str]:
    import socket

    import psutil

    return [entry.address for entries in psutil.net_if_addrs().values() for entry in entries
            if entry.family == socket.AF_INET6]


def require_root(prefix: str, what: str) -> None:
    """Exit 4 before anything else is looked at: without --prefix init needs root, and a --prefix
    must be (or be creatable in) a directory the caller can write."""
    if not prefix and os.geteuid() != 0:
        raise SvctlError(f"init jupyterhub: {what}: run it as root (or with --prefix DIR in a directory "
                         "of yours)", Exit.NOT_ROOT)
    if prefix:
        existing = os.path.abspath(prefix)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SvctlError(f"init jupyterhub: cannot write {existing}: run it as root, or give --prefix "
                             "a directory of yours", Exit.NOT_ROOT)


def init(context, args: list[str]) -> int:
    """`svctl init NAME`: the scaffolder of the preset called NAME (supervisor/presets)."""
    from supervisor.cli import options_for
    from supervisor.presets import preset_for, scaffolding

    parsed = options_for(context, "init", args)
    preset = preset_for(parsed.name)
    if not preset.scaffolds:
        raise SvctlError(f"init: unknown preset {parsed.name!r}; svctl init takes: {', '.join(scaffolding())}",
                         Exit.BAD_ARGS)
    return preset.init(context, parsed)


def init_jupyterhub(context, parsed) -> int:
    """`svctl init jupyterhub` (the jupyterhub preset's scaffolder), PARSED: the CLI's options."""
    options = InitArgs(parsed)
    from supervisor.jupyterhub import certs, scaffold

    if options.renew_cert:
        from supervisor.commands.renew_cert import renew_cert

        return renew_cert(context, options)
    try:
        ip = scaffold.check_ip(options.ip) if options.ip else scaffold.default_ip(host_addresses())
    except scaffold.InitError as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.BAD_ARGS) from None
    require_root(options.prefix, "it writes /etc/jupyterhub, /srv/jupyterhub, /etc/svctl and the boot files")
    layout = scaffold.Layout.under(options.prefix, context.config_dir)
    proxy_mode = _proxy_mode(options, layout)
    programs = _locate(options)
    users, admins = _names(options.users), _names(options.admins)
    if options.auth == "dummy" and not users:
        users = (getpass.getuser(),)
    services = _services(proxy_mode == "external")
    boot = not layout.prefix and not options.no_boot
    if boot:
        _preflight_boot(services)  # refusals come before anything is written
    settings = scaffold.InitOptions(
        ip=ip, port=options.port, hub_port=options.hub_port, api_port=options.api_port,
        jupyterhub=programs.jupyterhub, proxy=programs.proxy, path_env=programs.path_env,
        users=users, admins=admins, auth=options.auth, proxy_mode=proxy_mode,
        stop_user_servers=options.stop_user_servers,
    )
    token_before = _read_token(layout)
    try:
        results = scaffold.write_all(layout, settings, force=options.force)
    except PermissionError as exc:
        where = exc.filename or (options.prefix or "/etc")
        raise SvctlError(f"init jupyterhub: cannot write {where}: run it as root (or with --prefix DIR "
                         "in a directory of yours)", Exit.NOT_ROOT) from None
    except (OSError, certs.CertError) as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.FAILED) from None
    _report(results, layout, settings, programs, options)
    if settings.external_proxy and token_before not in (None, _read_token(layout)):
        print(f"note: {layout.proxy_token_file} held no valid token, so the proxy's token is new: restart "
              "jupyterhub-proxy, then jupyterhub, so that both use it")
    if boot:
        _install_boot(context, services)
    _report_boot(layout, services, options.no_boot)
    if not options.no_hints:
        _next(layout, settings)
    return Exit.OK


def _services(external: bool) -> list[str]:
    return ["jupyterhub-proxy", "jupyterhub"] if external else ["jupyterhub"]


def config_is_external(config_path: str) -> bool | None:
    """Whether the hub config leaves the proxy to the jupyterhub-proxy service (should_start = False);
    None when there is no config or it cannot be told (unreadable, or the value is computed)."""
    from supervisor.jupyterhub.pyconfig import read_config

    try:
        value = read_config(config_path).get("ConfigurableHTTPProxy.should_start", True)
    except (OSError, SyntaxError, ValueError):
        return None
    return value is False if isinstance(value, bool) else None


def _proxy_mode(options, layout) -> str:
    """The proxy mode in effect: --proxy, else the kept deployment's (a rerun, --force included, keeps
    an external-proxy install external). A --proxy the kept config contradicts is refused (exit 6,
    nothing written): the kept config would win, while the boot files and the next: line would be
    the other mode's (following them: EADDRINUSE). --force rewrites the files for the given mode."""
    kept, where = None, layout.config_path
    if os.path.exists(layout.config_path):
        external = config_is_external(layout.config_path)
        kept = None if external is None else "external" if external else "hub"
    elif os.path.exists(layout.proxy_service_file):
        kept, where = "external", layout.proxy_service_file
    if options.proxy is None:
        return kept or "hub"
    if kept not in (None, options.proxy) and not options.force:
        what = ("leaves the proxy to the jupyterhub-proxy service" if kept == "external"
                else "lets the hub start its own proxy")
        raise SvctlError(f"init jupyterhub: --proxy {options.proxy}: the kept {where} {what} (--proxy {kept}); "
                         f"nothing was written; rerun with --force to rewrite the files for --proxy "
                         f"{options.proxy}", Exit.NOT_CONFIGURED)
    return options.proxy


def _locate(options):
    """The programs, or exit 5 naming what is missing and how to install it, before any write; exit 6
    for a given program root must not run (as a start of the service would refuse it: exit 6)."""
    from supervisor.jupyterhub import locate

    # make jupyterhub-deps' proxy in svctl's own source checkout, for a --prefix install (make run's
    # and the tests'); never the current directory, which may be anyone's (/tmp).
    checkout = os.path.exists(os.path.join(_REPO_ROOT, "mk", "jupyterhub.mk"))
    roots = (_REPO_ROOT,) if options.prefix and checkout else ()
    try:
        return locate.locate(options.jupyterhub, options.proxy_command, roots, trusted=os.geteuid() == 0)
    except locate.Untrusted as exc:
        raise SvctlError(f"init jupyterhub: {exc}; nothing was written", Exit.NOT_CONFIGURED) from None
    except locate.NotFound as exc:
        lines = [f"init jupyterhub: {exc}; nothing was written"]
        lines += [f"skipped: {line}" for line in exc.skipped]
        if not str(exc).startswith("--"):
            system = locate.os_release()
            lines.append("install it (as root):")
            lines += [f"  {command}" for command in locate.install_commands(system, exc.need_hub, exc.need_proxy)]
            lines.append("or give --jupyterhub PATH" if exc.need_hub else "or give --proxy-command PATH")
        raise SvctlError("\n".join(lines), Exit.NOT_INSTALLED) from None


def _preflight_boot(services: list[str]) -> None:
    from supervisor.commands import install

    try:
        install.preflight(services)
    except SvctlError as exc:
        raise SvctlError(f"init jupyterhub: {exc}; nothing was written (rerun with --no-boot to skip the "
                         "boot files)", exc.code) from None


def _install_boot(context, services: list[str]) -> None:
    """What `svctl install NAME` does for each service (the proxy first: the hub's readiness needs it)."""
    from supervisor.commands import install

    for name in services:
        try:
            install.install(context, [name])
        except SvctlError as exc:
            raise SvctlError(f"init jupyterhub: the files are written, but the boot files are not: {exc}; "
                             f"fix that and run `svctl install {name}`", exc.code) from None


def _read_token(layout) -> bytes | None:
    from supervisor.unix import userfiles

    try:
        return userfiles.read_bytes(layout.proxy_token_file, 4096)
    except OSError:
        return None


def _in_effect(layout, external: bool) -> tuple[str, str]:
    """(hub, proxy) as the files on disk run them, kept or written: what `start` will run."""
    from supervisor.config import load
    from supervisor.jupyterhub.pyconfig import read_config

    try:
        hub = load("jupyterhub", layout.config_dir).command[0]
    except SvctlError as exc:
        hub = f"(unknown: {exc})"
    if external:
        try:
            return hub, load("jupyterhub-proxy", layout.config_dir).command[0]
        except SvctlError as exc:
            return hub, f"(unknown: {exc})"
    try:
        command = read_config(layout.config_path).get("ConfigurableHTTPProxy.command")
    except (OSError, ValueError) as exc:
        return hub, f"(unknown: {layout.config_path}: {exc})"
    if command is None:
        return hub, "configurable-http-proxy from the service's PATH"
    if isinstance(command, list) and command and all(isinstance(word, str) for word in command):
        return hub, command[0]
    return hub, f"(what {layout.config_path} computes for c.ConfigurableHTTPProxy.command)"


def _report(results, layout, settings, programs, options) -> None:
    """One line per file, then the programs the files on disk run: a kept file wins over the options."""
    from supervisor.jupyterhub.locate import program_problem

    for line in programs.skipped:
        print(f"skipped: {line}")
    for item in results:
        print(f"{'wrote' if item.created else 'kept (exists; --force overwrites)'}: {item.path}")
    hub, proxy = _in_effect(layout, settings.external_proxy)
    proxy_file = layout.proxy_service_file if settings.external_proxy else layout.config_path
    for running, chosen, given, where in ((hub, settings.jupyterhub, options.jupyterhub, layout.service_file),
                                         (proxy, settings.proxy, options.proxy_command, proxy_file)):
        if running == chosen or running.startswith("("):
            continue
        print(f"kept: {where} runs {running}, not the {'given' if given else 'found'} {chosen}; --force rewrites it")
        problem = program_problem(running) if os.geteuid() == 0 and running.startswith("/") else None
        if problem:
            print(f"warning: root must not run {running}: {problem}")
    print(f"using: {hub} and {proxy}")
    if programs.node is None:
        print("warning: node not found, and configurable-http-proxy runs on it: apt-get install nodejs")
    if settings.auth == "dummy":
        secret = next((item.secret for item in results if item.path == layout.password_file and item.secret), None)
        shown = secret + "  (shown once)" if secret else f"in {layout.password_file}"
        print(f"login: {', '.join(settings.users)}  password: {shown}")
    elif not settings.users and not settings.admins:
        print(f"note: no --users given; nobody can log in until {layout.config_path} sets allowed_users")
    if not settings.external_proxy and os.path.exists(layout.proxy_service_file):
        undo = "" if layout.prefix else ", `svctl uninstall jupyterhub-proxy`"
        print(f"note: {layout.proxy_service_file} is left from the external-proxy mode: stop that service{undo} "
              "and remove the file, or the hub's own proxy cannot bind its port")


def _boot_files(name: str) -> list[str]:
    from supervisor import boot

    return [path for path in (f"{boot.INITD_DIR}/{name}", f"{boot.SYSTEMD_DIR}/{name}.service")
            if os.path.lexists(path)]


def _report_boot(layout, services: list[str], no_boot: bool) -> None:
    """What boot files exist now (this run's, or a previous one's that --no-boot left in place)."""
    if layout.prefix:
        print(f"boot files: none (--prefix writes nothing outside {layout.prefix})")
        return
    if not no_boot:
        return  # install printed each file
    present = [path for name in services for path in _boot_files(name)]
    missing = [name for name in services if not _boot_files(name)]
    parts = [f"{', '.join(present)} (installed before; --no-boot leaves them)"] if present else []
    if missing:
        parts.append(f"not installed (--no-boot); {', '.join(f'`svctl install {name}`' for name in missing)} "
                     "would install them")
    print(f"boot files: {'; '.join(parts)}")


def _next(layout, settings) -> None:
    """The commands that start what the files in effect describe: `service NAME start` where NAME's
    boot files exist (what the operator and the boot use), else svctl itself."""
    from supervisor.jupyterhub.pyconfig import read_config

    try:
        url = read_config(layout.config_path).get("JupyterHub.bind_url")  # a kept config's address
    except (OSError, ValueError):
        url = None
    if not isinstance(url, str):
        url = f"https://{'[' + settings.ip + ']' if ':' in settings.ip else settings.ip}:{settings.port}"
    global_flags = f"--config-dir {layout.config_dir} --run-dir {layout.run_dir} " if layout.prefix else ""
    # the hub's service file requires the external proxy: starting the hub starts both
    starts = [f"service {name} start" if not layout.prefix and _boot_files(name) else
              f"svctl {global_flags}start {name}" for name in ["jupyterhub"]]
    if settings.external_proxy:
        starts[0] += " (starts jupyterhub-proxy first)"
    print(f"next: svctl {global_flags}check jupyterhub; {'; '.join(starts)}; then open {url}")
