"""``svctl init jupyterhub``: the seed's manual install steps as one idempotent command.

Rendering is pure (``Layout`` + ``InitOptions`` -> text); ``write_all`` is the only part that touches
the disk. A file that exists is kept unless ``force``: a second run changes nothing and says so,
which is what lets ``make run`` call init every time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Template

from supervisor.jupyterhub import certs
from supervisor.jupyterhub.external_proxy import (
    PROXY_SERVICE,
    config_block,
    environment_line,
    proxy_token,
    render_proxy_service,
)
# tests/e2e import find_jupyterhub and find_proxy from here; hub_path (the service's PATH) is locate's.
from supervisor.jupyterhub.locate import BASE_PATH, find_jupyterhub, find_proxy, hub_path  # noqa: F401

SERVICE = "jupyterhub"
AUTH_MODES = ("pam", "dummy")
# "hub": the hub starts and stops configurable-http-proxy itself (JupyterHub's default).
# "external": the proxy is its own svctl service, so a hub restart (every reload) leaves the proxy,
# its routes and the user servers running: zero disruption for users (docs/jupyterhub.md, "Zero-disruption reloads").
PROXY_MODES = ("hub", "external")
DEFAULT_PORT = 9443
DEFAULT_HUB_PORT = 9081  # the hub's private API
DEFAULT_API_PORT = 9001  # the proxy's REST API
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


KEEP_USER_SERVERS = """\
# User servers outlive the hub. A config edit is applied by restarting the hub (JupyterHub cannot
# reload), and with JupyterHub's default, cleanup_servers = True, each restart would stop every
# user's server and kernels. With False they keep running and the new hub re-adopts them from its
# database, so an edit costs users at most the hub's restart. `svctl stop jupyterhub` (and
# `service jupyterhub stop`) therefore leave users' servers running too, as in The Littlest
# JupyterHub and Zero to JupyterHub; stop them from the admin panel (/hub/admin, "Stop All") or
# with the REST API (DELETE /hub/api/users/NAME/server) first.
c.JupyterHub.cleanup_servers = False
"""
# `svctl init jupyterhub --stop-user-servers` (what `make run` uses: Ctrl-C must leave nothing).
STOP_USER_SERVERS = """\
# The hub stops every user's server when it stops (svctl init --stop-user-servers: a trial, where
# Ctrl-C must leave nothing running). A config edit restarts the hub, and so every user's server
# and kernels too; set this to False to keep them across restarts (the new hub re-adopts them).
c.JupyterHub.cleanup_servers = True
"""


class InitError(Exception):
    pass


@dataclass(frozen=True)
class Layout:
    """Where every file goes; ``prefix`` "" is the real root (FHS paths, as in the seed)."""

    prefix: str
    config_dir: str  # the svctl service-definition directory

    @classmethod
    def under(cls, prefix: str, default_config_dir: str) -> Layout:
        prefix = os.path.abspath(prefix) if prefix else ""
        return cls(prefix, os.path.join(prefix, "etc/svctl") if prefix else default_config_dir)

    def _path(self, path: str) -> str:
        return self.prefix + path

    @property
    def config_path(self) -> str:
        return self._path("/etc/jupyterhub/jupyterhub_config.py")

    @property
    def state_dir(self) -> str:
        return self._path("/srv/jupyterhub")

    @property
    def ssl_dir(self) -> str:
        return os.path.join(self.state_dir, "ssl")

    @property
    def cert(self) -> str:
        return os.path.join(self.ssl_dir, "jupyterhub.crt")

    @property
    def key(self) -> str:
        return os.path.join(self.ssl_dir, "jupyterhub.key")

    @property
    def cookie_secret(self) -> str:
        return os.path.join(self.state_dir, "jupyterhub_cookie_secret")

    @property
    def password_file(self) -> str:
        return os.path.join(self.state_dir, "login-password")

    @property
    def admin_password_file(self) -> str:
        return os.path.join(self.state_dir, "admin-password")

    @property
    def proxy_token_file(self) -> str:
        return os.path.join(self.state_dir, "proxy-auth-token")

    @property
    def kernel_runtime_root(self) -> str:
        """Where the config's pre_spawn_hook makes each user's JUPYTER_RUNTIME_DIR (a tmpfs on a real
        /run: nothing to clean up after a reboot). Short on purpose: kernel sockets live there."""
        return self._path("/run/jupyterhub/kernels")

    @property
    def service_file(self) -> str:
        return os.path.join(self.config_dir, f"{SERVICE}.toml")

    @property
    def proxy_service_file(self) -> str:
        return os.path.join(self.config_dir, f"{PROXY_SERVICE}.toml")

    @property
    def proxy_pidfile(self) -> str:
        return self._path(f"/run/{PROXY_SERVICE}.pid")

    @property
    def proxy_log_file(self) -> str:
        return self._path(f"/var/log/{PROXY_SERVICE}.log")

    @property
    def proxy_events_file(self) -> str:
        return self._path(f"/var/log/svctl/{PROXY_SERVICE}.json")

    @property
    def pidfile(self) -> str:
        return self._path(f"/run/{SERVICE}.pid")  # the seed's PIDFILE: the supervisor's PID

    @property
    def run_dir(self) -> str:
        return self._path("/run/svctl")

    @property
    def log_file(self) -> str:
        return self._path(f"/var/log/{SERVICE}.log")

    @property
    def events_file(self) -> str:
        return self._path(f"/var/log/svctl/{SERVICE}.json")


@dataclass(frozen=True)
class InitOptions:
    ip: str
    jupyterhub: str  # absolute path of the jupyterhub program
    path_env: str  # PATH for the hub: jupyterhub-singleuser, node, configurable-http-proxy
    proxy: str | None = None  # absolute path of configurable-http-proxy, when found
    port: int = DEFAULT_PORT
    hub_port: int = DEFAULT_HUB_PORT
    api_port: int = DEFAULT_API_PORT
    users: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    auth: str = "pam"
    proxy_mode: str = "hub"
    proxy_token: str = ""  # external mode: the shared CONFIGPROXY_AUTH_TOKEN (write_all fills it in)
    stop_user_servers: bool = False  # --stop-user-servers (make run): cleanup_servers = True

    @property
    def external_proxy(self) -> bool:
        return self.proxy_mode == "external"


def url_host(ip: str) -> str:
    """IPv6 literals go in brackets inside URLs; bare ``*_ip`` settings take them without."""
    return f"[{ip}]" if ":" in ip else ip


def check_ip(ip: str) -> str:
    """Only literal, non-wildcard addresses: names and wildcards depend on /etc/hosts."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise InitError(f"--ip {ip!r} is not an IP address (use a literal such as ::1)") from None
    if address.is_unspecified:
        raise InitError(f"--ip {ip}: a wildcard bind makes the hub probe its proxy through the host name, "
                        "which fails on a pure-IPv6 host; give the address to serve on (default: the "
                        "host's global IPv6 address)")
    return str(address)


def _literal_set(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(repr(name) for name in names) + "}" if names else "set()"


def render_config(layout: Layout, options: InitOptions) -> str:
    """The jupyterhub_config.py text, with literal addresses and absolute paths."""
    loopback = "http://[::1]"
    values = {
        "config_path_comment": layout.config_path,
        "bind_url": repr(f"https://{url_host(options.ip)}:{options.port}"),
        "ssl_cert": repr(layout.cert),
        "ssl_key": repr(layout.key),
        "hub_bind_url": repr(f"{loopback}:{options.hub_port}"),
        "proxy_api_url": repr(f"{loopback}:{options.api_port}"),
        "db_url": repr("sqlite:///" + os.path.join(layout.state_dir, "jupyterhub.sqlite")),
        "cookie_secret_file": repr(layout.cookie_secret),
        "hub_pid_file": repr(os.path.join(layout.state_dir, "jupyterhub.pid")),
        "proxy_pid_file": repr(os.path.join(layout.state_dir, "jupyterhub-proxy.pid")),
        "proxy_command": (f"c.ConfigurableHTTPProxy.command = [{options.proxy!r}]" if options.proxy
                          else "# configurable-http-proxy is found on the service's PATH"),
        "allowed_users": _literal_set(options.users),
        "admin_users": _literal_set(options.admins),
        "auth_block": _render_auth(layout, options),
        "kernel_runtime_root": repr(layout.kernel_runtime_root),
        "cleanup_block": STOP_USER_SERVERS if options.stop_user_servers else KEEP_USER_SERVERS,
        "proxy_block": config_block(layout, options, TEMPLATES),
    }
    text = Template((TEMPLATES / "jupyterhub_config.py.tmpl").read_text()).substitute(values)
    return text


def _render_auth(layout: Layout, options: InitOptions) -> str:
    if options.auth == "pam":
        return (TEMPLATES / "jupyterhub_auth_pam.tmpl").read_text()
    admin_block = ""
    if options.admins:
        admin_block = (f"with open({layout.admin_password_file!r}) as _password_file:\n"
                       "    c.SharedPasswordAuthenticator.admin_password = _password_file.read().strip()\n")
    return Template((TEMPLATES / "jupyterhub_auth_dummy.tmpl").read_text()).substitute(
        password_file=repr(layout.password_file),
        admin_password_block=admin_block,
        home_template=repr(os.path.join(layout.state_dir, "home", "{username}")),
    )


def _toml(value: object) -> str:
    # JSON strings and arrays of strings are valid TOML basic strings and arrays.
    return json.dumps(value)


def render_service(layout: Layout, options: InitOptions) -> str:
    """The /etc/svctl/jupyterhub.toml text, with the seed's init.d defaults."""
    hub = [options.jupyterhub, "-f", layout.config_path]
    lines = [
        f"# {layout.service_file}: written by `svctl init jupyterhub`; every key is described in svctl(8)",
        "# and in the annotated example.toml (/usr/share/doc/svctl/examples/ in the Debian package).",
        f"description = {_toml('Multi-user server for Jupyter notebooks')}",
        f"command = {_toml(hub)}",
        "# The hub's relative defaults (sqlite db, cookie secret, proxy pid file) land here.",
        f"working_directory = {_toml(layout.state_dir)}",
        environment_line(options),
        f"pidfile = {_toml(layout.pidfile)}",
        *(["# The hub stops user servers when it stops (cleanup_servers = True: --stop-user-servers);",
           "# its cleanup (SIGINT 8 s, SIGTERM 8 s, SIGKILL 5 s per server) fits in the first 30 s,",
           "# so KILL is a last resort."] if options.stop_user_servers else
          ["# The hub leaves user servers running when it stops (cleanup_servers = False in its config);",
           "# were that set back to True, its cleanup (SIGINT 8 s, SIGTERM 8 s, SIGKILL 5 s per server)",
           "# would still fit in the first 30 s, so KILL is a last resort."]),
        'stop = "TERM/30/KILL/5"',
        "# JupyterHub cannot reload its config and dies on SIGHUP: reload = validated graceful restart.",
        'reload = "restart"',
        'restart = "on-failure"',
        "# Through the proxy: 200 only; 404 (no hub route yet) and 503 (hub down) are not ready.",
        f"ready = {_toml(f'https://{url_host(options.ip)}:{options.port}/hub/health')}",
        "ready_timeout = 60",
        "# Liveness, once running: the same URL every 30 s; 3 failures in a row restart the hub.",
        f"health = {_toml(f'https://{url_host(options.ip)}:{options.port}/hub/health')}",
        f"watch = {_toml([layout.config_path])}",
        "# Side-effect free only with --no-db and an empty pid_file (it still may create the cookie secret).",
        f"check = {_toml([*hub, '--show-config', '--no-db', '--JupyterHub.pid_file='])}",
        "check_timeout = 60",
        f"log_file = {_toml(layout.log_file)}",
    ]
    if layout.prefix:
        lines.append(f"events_file = {_toml(layout.events_file)}")
    lines.append('preset = "jupyterhub"')
    if options.external_proxy:
        lines[2:2] = [f"# Zero-disruption mode: the proxy is the {PROXY_SERVICE} service; this file holds the",
                      "# proxy's API token, so it is 0600."]
        lines[5:5] = [f"# `svctl start {SERVICE}` starts {PROXY_SERVICE} first (the hub's readiness goes through",
                      f"# it); `svctl stop {PROXY_SERVICE}` stops the hub first.",
                      f"requires = {_toml([PROXY_SERVICE])}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlannedFile:
    path: str
    mode: int
    produce: Callable[[], bytes] = field(compare=False)
    secret: bool = False  # print its content once when created (generated passwords)


def plan(layout: Layout, options: InitOptions) -> list[PlannedFile]:
    """Every file init writes, in order; the key/certificate pair is handled by write_all."""
    # With the proxy's token in its environment, a service file is readable by its owner only.
    service_mode = 0o600 if options.external_proxy else 0o644
    files = [
        PlannedFile(layout.config_path, 0o644, lambda: render_config(layout, options).encode()),
        PlannedFile(layout.service_file, service_mode, lambda: render_service(layout, options).encode()),
        # 32 random bytes in hex, as JupyterHub itself would write; it refuses the file if "other"
        # may read it, so it is created 0600.
        PlannedFile(layout.cookie_secret, 0o600, lambda: (secrets.token_hex(32) + "\n").encode()),
    ]
    if options.auth == "dummy":
        files.append(PlannedFile(layout.password_file, 0o600,
                                 lambda: (secrets.token_urlsafe(12) + "\n").encode(), secret=True))
        if options.admins:
            # SharedPasswordAuthenticator wants admin passwords of 32 characters or more.
            files.append(PlannedFile(layout.admin_password_file, 0o600,
                                     lambda: (secrets.token_urlsafe(32) + "\n").encode(), secret=True))
    if options.external_proxy:
        files += [
            PlannedFile(layout.proxy_token_file, 0o600, lambda: (options.proxy_token + "\n").encode()),
            PlannedFile(layout.proxy_service_file, 0o600, lambda: render_proxy_service(layout, options).encode()),
        ]
    return files


def _write_atomically(path: str, data: bytes, mode: int) -> None:
    """Atomic, never through a link, and MODE from creation: secrets are never briefly readable."""
    from supervisor.unix.safefs import write_trusted

    write_trusted(path, data, mode)


@dataclass(frozen=True)
class Written:
    path: str
    created: bool
    secret: str | None = None  # the generated password, to print once


def write_all(layout: Layout, options: InitOptions, *, force: bool = False) -> list[Written]:
    """Create directories and files; existing files are kept unless FORCE."""
    for directory, mode in ((os.path.dirname(layout.config_path), 0o755), (layout.config_dir, 0o755),
                            (layout.state_dir, 0o750), (layout.ssl_dir, 0o700),
                            (os.path.dirname(layout.pidfile), 0o755), (layout.run_dir, 0o755),
                            (os.path.dirname(layout.log_file), 0o755),
                            (os.path.dirname(layout.events_file), 0o755)):
        os.makedirs(directory, mode=mode, exist_ok=True)
    if options.external_proxy and not options.proxy_token:
        options = replace(options, proxy_token=shared_token(layout, force))
    results: list[Written] = []
    for planned in plan(layout, options):
        if os.path.exists(planned.path) and not force:
            results.append(Written(planned.path, created=False))
            continue
        data = planned.produce()
        _write_atomically(planned.path, data, planned.mode)
        results.append(Written(planned.path, True, data.decode().strip() if planned.secret else None))
    # A certificate without its key (or the reverse) is useless: regenerate the pair together.
    if force or not (os.path.exists(layout.cert) and os.path.exists(layout.key)):
        certs.generate(layout.cert, layout.key, options.ip)
        results += [Written(layout.cert, True), Written(layout.key, True)]
    else:
        results += [Written(layout.cert, False), Written(layout.key, False)]
    return results


# What a proxy token looks like (init writes 64 hex digits); anything else in the file is not one.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{16,1024}")


def shared_token(layout: Layout, force: bool) -> str:
    """The proxy token of both service files and the token file: the one already written, even with
    --force, because a running jupyterhub-proxy keeps the token it started with, and a hub restarted
    with a new one would get 403 from it. --force makes a new one only when the kept one is no token."""
    token = proxy_token(layout)  # the token file's, else a kept service file's, else a new one
    return token if not force or TOKEN_PATTERN.fullmatch(token) else proxy_token(layout, force=True)


def default_ip(addresses: list[str]) -> str:
    """The host's global IPv6 address (public before unique-local), else ::1 (pure)."""
    candidates = []
    for text in addresses:
        try:
            address = ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            continue
        candidates.append((0 if address.is_global else 1, text))
    return min(candidates)[1] if candidates else "::1"
