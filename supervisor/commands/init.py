"""``svctl init jupyterhub [--ip ADDR] [--port N] [--prefix DIR] [--users a,b] [--admins a] [--auth pam|dummy]
[--proxy hub|external] [--jupyterhub PATH] [--proxy-command PATH] [--no-boot] [--force] [--renew-cert]
[--stop-user-servers]``
(options parsed by supervisor/cli.py, which also prints --help).

Finds JupyterHub and its proxy first (exit 5 with the commands that install them, having written
nothing), writes the files and prints one line per file (written / kept), installs the boot files
(unless --prefix or --no-boot) and says what to do next. ``--renew-cert`` replaces only the
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
        self.auth, self.proxy = _choice(options, "--auth"), _choice(options, "--proxy")
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


def _require_root(prefix: str, what: str) -> None:
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
    from supervisor.cli import options_for

    parsed = options_for(context, "init", args)
    if parsed.name != "jupyterhub":
        raise SvctlError("init: only 'svctl init jupyterhub' exists", Exit.BAD_ARGS)
    options = InitArgs(parsed)
    from supervisor.jupyterhub import certs, scaffold

    if options.renew_cert:
        return renew_cert(context, options)
    try:
        ip = scaffold.check_ip(options.ip) if options.ip else scaffold.default_ip(_host_addresses())
    except scaffold.InitError as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.BAD_ARGS) from None
    _require_root(options.prefix, "it writes /etc/jupyterhub, /srv/jupyterhub, /etc/svctl and the boot files")
    programs = _locate(options)
    users, admins = _names(options.users), _names(options.admins)
    if options.auth == "dummy" and not users:
        users = (getpass.getuser(),)
    layout = scaffold.Layout.under(options.prefix, context.config_dir)
    services = ["jupyterhub-proxy", "jupyterhub"] if options.proxy == "external" else ["jupyterhub"]
    boot = not layout.prefix and not options.no_boot
    if boot:
        _preflight_boot(services)  # refusals come before anything is written
    settings = scaffold.InitOptions(
        ip=ip, port=options.port, hub_port=options.hub_port, api_port=options.api_port,
        jupyterhub=programs.jupyterhub, proxy=programs.proxy,
        path_env=scaffold.hub_path(programs.jupyterhub, programs.proxy, programs.node),
        users=users, admins=admins, auth=options.auth, proxy_mode=options.proxy,
        stop_user_servers=options.stop_user_servers,
    )
    try:
        results = scaffold.write_all(layout, settings, force=options.force)
    except PermissionError as exc:
        where = exc.filename or (options.prefix or "/etc")
        raise SvctlError(f"init jupyterhub: cannot write {where}: run it as root (or with --prefix DIR "
                         "in a directory of yours)", Exit.NOT_ROOT) from None
    except (OSError, certs.CertError) as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.FAILED) from None
    _report(results, layout, settings, programs.node)
    if boot:
        _install_boot(context, services)
    elif layout.prefix:
        print(f"boot files: none (--prefix writes nothing outside {layout.prefix})")
    else:
        print(f"boot files: not installed (--no-boot); {', '.join(f'`svctl install {name}`' for name in services)} "
              "would install them")
    if not options.no_hints:
        _next(results, layout, settings, boot)
    return Exit.OK


def _locate(options):
    """The programs, or exit 5 naming what is missing and how to install it, before any write."""
    from supervisor.jupyterhub import locate

    try:
        return locate.locate(options.jupyterhub, options.proxy_command, (os.getcwd(), _REPO_ROOT))
    except locate.NotFound as exc:
        lines = [f"init jupyterhub: {exc}; nothing was written"]
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


def _report(results, layout, settings, node: str | None) -> None:
    for item in results:
        print(f"{'wrote' if item.created else 'kept (exists; --force overwrites)'}: {item.path}")
    print(f"using: {settings.jupyterhub} and {settings.proxy}")
    if node is None:
        print("warning: node not found, and configurable-http-proxy runs on it: apt-get install nodejs")
    if settings.auth == "dummy":
        secret = next((item.secret for item in results if item.path == layout.password_file and item.secret), None)
        shown = secret + "  (shown once)" if secret else f"in {layout.password_file}"
        print(f"login: {', '.join(settings.users)}  password: {shown}")
    elif not settings.users and not settings.admins:
        print(f"note: no --users given; nobody can log in until {layout.config_path} sets allowed_users")


def _next(results, layout, settings, boot: bool) -> None:
    url = f"https://{'[' + settings.ip + ']' if ':' in settings.ip else settings.ip}:{settings.port}"
    global_flags = f"--config-dir {layout.config_dir} --run-dir {layout.run_dir} " if layout.prefix else ""
    services = ["jupyterhub-proxy", "jupyterhub"] if settings.external_proxy else ["jupyterhub"]
    if settings.external_proxy:
        kept_config = any(item.path == layout.config_path and not item.created for item in results)
        if kept_config and not _is_external(layout.config_path):
            print(f"warning: the kept {layout.config_path} lets the hub start its own proxy; "
                  "rerun with --force to write the external-proxy config")
    # With boot files, `service` is what the operator (and the boot) uses; without, svctl itself.
    starts = [f"service {name} start" if boot else f"svctl {global_flags}start {name}" for name in services]
    print(f"next: svctl {global_flags}check jupyterhub; {'; '.join(starts)}; then open {url}")


def _is_external(config_path: str) -> bool:
    from supervisor.jupyterhub.pyconfig import read_config

    try:
        return read_config(config_path).get("ConfigurableHTTPProxy.should_start", True) is False
    except (OSError, SyntaxError, ValueError):
        return False


# ---- --renew-cert ------------------------------------------------------------------------------


def renew_cert(context, options) -> int:
    """A new self-signed pair for the one the hub (or, external mode, the proxy) serves; then a
    restart of that service if it runs: it reads the certificate only when it starts, and the
    certificate is not a watched file, so a reload would say "unchanged"."""
    from supervisor.jupyterhub import certs, scaffold

    layout = scaffold.Layout.under(options.prefix, context.config_dir)
    _require_root(layout.prefix, f"it replaces the certificate in {layout.ssl_dir}")
    external = _is_external(layout.config_path) and os.path.exists(layout.proxy_service_file)
    cert, key, bind_url = _served_pair(layout, external)
    try:
        ip = scaffold.check_ip(options.ip or _url_ip(bind_url) or scaffold.default_ip(_host_addresses()))
    except scaffold.InitError as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.BAD_ARGS) from None
    existing = _read_certificate(cert)
    if existing is not None:
        issuer, subject = _issuer_and_subject(cert, existing)
        if issuer != subject:
            raise SvctlError(f"init jupyterhub --renew-cert: {cert} was issued by {issuer}, not self-signed: "
                             "renew it with that CA (svctl replaces only a self-signed certificate)")
    try:
        certs.generate(cert, key, ip)
    except (OSError, certs.CertError) as exc:
        raise SvctlError(f"init jupyterhub --renew-cert: {exc}") from None
    print(f"renewed: {cert} and {key} (self-signed for {ip}, ::1 and localhost, {certs.VALID_DAYS} days)")
    _restart_servers(context, layout, external)
    return Exit.OK


def _served_pair(layout, external: bool) -> tuple[str, str, str | None]:
    """(certificate, key, bind URL) as the config (external mode: the proxy's service file) names them,
    else init's own paths; a value the config computes (not a literal) is not guessed at."""
    from supervisor.jupyterhub.pyconfig import read_config

    cert, key, bind_url = layout.cert, layout.key, None
    try:
        hub = read_config(layout.config_path)
    except (OSError, ValueError):
        hub = None
    if hub is not None:
        bind_url = hub.get("JupyterHub.bind_url") if isinstance(hub.get("JupyterHub.bind_url"), str) else None
        for trait in ("ssl_cert", "ssl_key"):
            value = hub.get(f"JupyterHub.{trait}", None)
            if value is not None and not isinstance(value, str):
                raise SvctlError(f"init jupyterhub --renew-cert: c.JupyterHub.{trait} in {layout.config_path} "
                                 "is computed, so which file to replace is not known; renew it by hand")
        cert, key = hub.get("JupyterHub.ssl_cert", cert), hub.get("JupyterHub.ssl_key", key)
    if external:
        from supervisor.config import load

        command = list(load("jupyterhub-proxy", layout.config_dir).command)
        for flag in ("--ssl-cert", "--ssl-key"):
            if flag in command[:-1]:
                value = command[command.index(flag) + 1]
                cert, key = (value, key) if flag == "--ssl-cert" else (cert, value)
    return cert, key, bind_url


def _url_ip(url: str | None) -> str | None:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname if url else None
    except ValueError:
        return None
    return host if host and (":" in host or host.replace(".", "").isdigit()) else None


def _read_certificate(path: str) -> bytes | None:
    """The certificate's bytes (None when there is none yet), read as whoever controls its directory:
    the config names the file, and a FIFO or a link planted there is refused, never followed."""
    from supervisor.unix import userfiles

    try:
        return userfiles.read_bytes(path, 1 << 20)
    except OSError as exc:
        raise SvctlError(f"init jupyterhub --renew-cert: cannot read {path}: {userfiles.describe(exc)}") from None


def _issuer_and_subject(path: str, data: bytes) -> tuple[str, str]:
    """The certificate's issuer and subject names; one that cannot be parsed is refused, never replaced."""
    not_pem = SvctlError(f"init jupyterhub --renew-cert: {path} is not a PEM certificate; it is left alone "
                         "(move it away and run the command again to make a new one)")
    try:
        from cryptography import x509
    except ImportError:
        return _issuer_and_subject_openssl(data, not_pem)
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise not_pem from None
    return certificate.issuer.rfc4514_string(), certificate.subject.rfc4514_string()


def _issuer_and_subject_openssl(data: bytes, not_pem: SvctlError) -> tuple[str, str]:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise SvctlError("init jupyterhub --renew-cert: neither the cryptography package nor openssl is "
                         "installed, so the certificate's issuer cannot be checked")
    done = subprocess.run([openssl, "x509", "-noout", "-issuer", "-subject", "-nameopt", "RFC2253"], input=data,
                          capture_output=True, timeout=30, check=False)
    lines = done.stdout.decode("utf-8", errors="replace").splitlines()
    names = dict(line.partition("=")[::2] for line in lines if "=" in line)
    if done.returncode != 0 or "issuer" not in names or "subject" not in names:
        raise not_pem
    return names["issuer"].strip(), names["subject"].strip()


def _restart_servers(context, layout, external: bool) -> None:
    """Restart what serves TLS, if it runs. External mode: the proxy, then the hub, whose start puts
    the user routes back into the new proxy at once (a hub restart costs users nothing there)."""
    from supervisor import config as configuration
    from supervisor.cli import Context
    from supervisor.commands import lifecycle
    from supervisor.observe import observe

    run_dir = layout.run_dir if layout.prefix else context.run_dir
    scope = Context(layout.config_dir, run_dir)
    for name in ["jupyterhub-proxy", "jupyterhub"] if external else ["jupyterhub"]:
        try:
            service = configuration.load(name, layout.config_dir)
        except SvctlError as exc:
            print(f"{name}: {exc}; restart whatever serves the certificate yourself")
            return
        if not lifecycle.is_running(observe(service, run_dir)):
            print(f"{name}: not running; it uses the new certificate when it starts")
            return
        print(f"{name}: restarting, so that it serves the new certificate")
        code = lifecycle.restart(scope, [name])
        if code != Exit.OK:
            raise SvctlError(f"init jupyterhub --renew-cert: the certificate is new, but restarting {name} "
                             f"failed (exit {code}): see svctl status {name}", code)
