"""Gather the facts the doctor judges: addresses, resolvers, file modes, ports, installed tools.

The impure half of ``svctl check jupyterhub`` (the doctor package is the pure half; probe_files
reads files and programs as the caller may). Nothing here changes state: ports and 127.0.0.1 are
tested with a bind that is closed at once, and jupyter_server with an import probe in the hub's own
interpreter (never the hub's config).
"""

from __future__ import annotations

import errno
import os
import socket

import psutil

from supervisor.config import ServiceConfig
from supervisor.jupyterhub import probe_files
from supervisor.jupyterhub.doctor import (ERROR, Facts, Finding, HostFacts, PortState, diagnose, hub_user_names,
                                          resolve, unchecked)
from supervisor.jupyterhub.doctor.values import parse_url, usable_port
from supervisor.jupyterhub.probe_programs import (elsewhere, hub_venv, jupyter_server_state, proxy_wanted,
                                                  singleuser_blocked, trust_problems)
from supervisor.jupyterhub.pyconfig import ConfigFile, config_path_from_command, read_config

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _families(name: str) -> set[int]:
    try:
        return {entry[0] for entry in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        return set()


def ipv4_loopback() -> bool:
    """Whether 127.0.0.1 can be bound, exactly what jupyter_client's TCP kernels do (closed at once).

    Asked of the kernel rather than read from the interface list: 127.0.0.1 works whenever any
    127.x/8 address is on lo, and fails (EADDRNOTAVAIL) in a namespace whose lo has ::1 only, or
    (EAFNOSUPPORT) in a kernel without IPv4."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
    except OSError:
        return False
    return True


def host_facts() -> HostFacts:
    has_ipv4 = any(entry.family == socket.AF_INET
                   for entries in psutil.net_if_addrs().values() for entry in entries)
    # A name is only safe without IPv4 if it resolves to IPv6 *only*: node takes the first answer.
    localhost, hostname = _families("localhost"), _families(socket.gethostname())
    return HostFacts(has_ipv4=has_ipv4,
                     localhost_ipv6=socket.AF_INET6 in localhost and socket.AF_INET not in localhost,
                     hostname_ipv6=socket.AF_INET6 in hostname and socket.AF_INET not in hostname,
                     ipv4_loopback=ipv4_loopback())


def _endpoints(hub: ConfigFile) -> list[tuple[str, str, int]]:
    """(setting, host, port) of the three listeners: public proxy, proxy API, hub API. A URL or port
    that cannot be parsed is left out: values.value_findings reports it as an error."""
    endpoints = []
    legacy_ip, legacy_port = hub.get("JupyterHub.ip"), usable_port(hub.get("JupyterHub.port", 8000))
    if not hub.has("JupyterHub.bind_url") and isinstance(legacy_ip, str) and legacy_port is not None:
        endpoints.append(("JupyterHub.ip", legacy_ip, legacy_port))
    for key, default, default_port in (("JupyterHub.bind_url", "http://:8000", 8000),
                                       ("ConfigurableHTTPProxy.api_url", "http://127.0.0.1:8001", 8000),
                                       ("JupyterHub.hub_bind_url", None, 8081)):
        if key == "JupyterHub.bind_url" and endpoints:
            continue
        value = hub.get(key, default)
        if isinstance(value, str):
            try:
                host, port = parse_url(value)
            except ValueError:
                continue
            endpoints.append((key, host, port or default_port))
    if not isinstance(hub.get("JupyterHub.hub_bind_url"), str) and isinstance(hub.get("JupyterHub.hub_ip",
                                                                                      "127.0.0.1"), str):
        port = usable_port(hub.get("JupyterHub.hub_port", 8081))
        endpoints.append(("JupyterHub.hub_ip", str(hub.get("JupyterHub.hub_ip", "127.0.0.1")),
                          8081 if port is None else port))
    return endpoints


def _service_pids(config: ServiceConfig) -> set[int]:
    """The supervisor named by the service's PID file and all its descendants."""
    try:
        with open(config.pidfile, encoding="ascii") as handle:
            process = psutil.Process(int(handle.read().strip()))
        return {process.pid} | {child.pid for child in process.children(recursive=True)}
    except (OSError, ValueError, OverflowError, psutil.Error):
        return set()


def _listener(port: int) -> psutil.Process | None:
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port \
                and connection.pid:
            try:
                return psutil.Process(connection.pid)
            except psutil.NoSuchProcess:
                continue
    return None


PROXY_SETTINGS = ("JupyterHub.bind_url", "JupyterHub.ip", "ConfigurableHTTPProxy.api_url")


def port_state(setting: str, host: str, port: int, ours: set[int], external_proxy: bool = False) -> PortState:
    family = socket.AF_INET6 if ":" in host or host == "" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "::", port))
        except (TypeError, ValueError, OverflowError) as exc:  # a NUL (TypeError), a port past 65535, a bad name
            return PortState(setting, host, port, "unavailable", str(exc) or type(exc).__name__)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return PortState(setting, host, port, "unavailable", exc.strerror or str(exc))
        else:
            return PortState(setting, host, port, "free")
    owner = _listener(port)
    if owner is None and os.geteuid() != 0:  # others' sockets show no PID to a non-root caller
        return PortState(setting, host, port, "unknown", "it is in use, by a process only root may see "
                         "(perhaps the hub itself)")
    if owner is None:
        return PortState(setting, host, port, "taken", "another process (gone before it could be named)")
    if owner.pid in ours:
        return PortState(setting, host, port, "ours", f"pid {owner.pid}")
    try:
        command = " ".join(owner.cmdline())[:100]
    except psutil.Error:
        command = "?"
    if external_proxy and setting in PROXY_SETTINGS and "configurable-http-proxy" in command:
        # should_start = False: the proxy is its own service (jupyterhub-proxy) and these are its ports.
        return PortState(setting, host, port, "ours", f"pid {owner.pid} (the external proxy)")
    return PortState(setting, host, port, "taken", f"pid {owner.pid} ({command})")


def ports(hub: ConfigFile, config: ServiceConfig, host: HostFacts) -> tuple[PortState, ...]:
    ours = _service_pids(config)
    external_proxy = hub.get("ConfigurableHTTPProxy.should_start", True) is False
    states = []
    for setting, address, port in _endpoints(hub):
        literal = address == "" or ":" in address or address.replace(".", "").isdigit()
        if not literal or "\0" in address or ("." in address and not host.has_ipv4):
            continue  # names, and IPv4 on an IPv4-less host, are the IPv6 rules' business
        states.append(port_state(setting, address, port, ours, external_proxy))
    return tuple(states)


def missing_users(hub: ConfigFile) -> tuple[str, ...]:
    """The names the hub's config lets in that have no system account (PAM looks them up)."""
    import pwd

    missing = []
    for name in hub_user_names(hub):
        if "\0" in name:
            continue  # no account can have it: values.value_findings says so
        try:
            pwd.getpwnam(name)
        except (KeyError, ValueError):  # ValueError: a name that is no valid string for the C library
            missing.append(name)
    return tuple(missing)


def homes(hub: ConfigFile) -> dict[str, str]:
    """Home directories of the allowed users that exist: where their kernels' sockets go by default."""
    import pwd

    found = {}
    for name in hub_user_names(hub):
        try:
            found[name] = pwd.getpwnam(name).pw_dir
        except (KeyError, ValueError):
            continue
    return found


def install_commands(missing: set[str]) -> dict[str, tuple[str, ...]]:
    """For each missing role, the commands that install it on this OS (locate.py's, minus its
    comment lines: a finding's fix is one line). Empty: the doctor's generic hint."""
    try:
        from supervisor.jupyterhub import locate

        text = locate.os_release()
        return {role: tuple(command for command in locate.install_commands(
                    text, need_hub=role == "jupyterhub", need_proxy=role == "configurable-http-proxy")
                    if not command.startswith("#"))
                for role in missing & {"jupyterhub", "configurable-http-proxy"}}
    except (ImportError, AttributeError, TypeError):  # an older locate.py: the generic hint will do
        return {}


def gather(config: ServiceConfig, hub: ConfigFile) -> Facts:
    host = host_facts()
    closed: dict[str, str] = {}
    paths = [hub.get(key) for key in ("JupyterHub.cookie_secret_file", "JupyterHub.ssl_key", "JupyterHub.ssl_cert")]
    paths.append("jupyterhub_cookie_secret")
    cert, key = hub.get("JupyterHub.ssl_cert"), hub.get("JupyterHub.ssl_key")
    report = None
    if isinstance(cert, str) and isinstance(key, str) and cert and key and "\0" not in cert + key:
        report = probe_files.cert_report(resolve(cert, config), resolve(key, config), closed)
    proxy_tls = None
    if hub.get("ConfigurableHTTPProxy.should_start", True) is False:
        proxy_tls = probe_files.proxy_tls(config, closed)
        if proxy_tls is not None:
            paths += [proxy_tls.cert, proxy_tls.key]
    modes = {}
    for path in {resolve(path, config) for path in paths if isinstance(path, str) and path and "\0" not in path}:
        modes[path], why = probe_files.file_mode(path)
        if why:
            closed.setdefault(path, why)
    search_path = config.env.get("PATH", DEFAULT_PATH)
    uid = probe_files.runner(config.user, config.path)
    programs = (probe_files.program("jupyterhub", config.command[0], search_path, uid),
                probe_files.program("configurable-http-proxy", proxy_wanted(hub), search_path, uid),
                probe_files.program("node", "node", search_path, uid))
    not_run = {}
    why = probe_files.acts_as_service(config)
    if why:
        not_run["whether jupyter_server is installed next to jupyterhub (the hub's Python is run to ask)"] = why
    found = {program.role: program.found for program in programs}
    jupyter_server, jupyter_server_note = jupyter_server_state(config)
    return Facts(host=host, modes=modes, cert=report, ports=ports(hub, config, host),
                 node=found["node"], proxy=found["configurable-http-proxy"],
                 jupyter_server=jupyter_server, missing_users=missing_users(hub),
                 singleuser_blocked=singleuser_blocked(hub, search_path), caller=probe_files.caller_name(),
                 closed=closed, programs=programs, proxy_tls=proxy_tls, not_run=not_run, homes=homes(hub),
                 install=install_commands({program.role for program in programs if program.problem}),
                 jupyter_server_note=jupyter_server_note, hub_venv=hub_venv(config),
                 untrusted=trust_problems(config, hub, programs, search_path), elsewhere=elsewhere(programs))


def run_doctor(config: ServiceConfig) -> list[Finding]:
    """Read the hub config named by the service's command, gather facts, judge them."""
    path = config_path_from_command(config.command, config.working_directory)
    from supervisor.unix.asuser import AsUserError

    try:
        hub = read_config(path)
    except (PermissionError, AsUserError) as exc:
        if os.geteuid() == 0:
            return [Finding(ERROR, "no-config", f"cannot read {path}: {exc.strerror or exc}",
                            "make it a regular file root can read")]
        # AsUserError: it is in another user's directory, which only root may read as that user
        facts = Facts(HostFacts(True, True, True), caller=probe_files.caller_name())
        why = probe_files.closed_reason(path) if isinstance(exc, PermissionError) else str(exc)
        return [unchecked(facts, "no-config", f"the hub's config {path} (everything in it)", why)]
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        return [Finding(ERROR, "no-config", f"cannot read {path}: {exc.strerror or exc}",
                        "svctl init jupyterhub writes one" if missing else "make it a regular file root can read")]
    return diagnose(config, hub, gather(config, hub), running_as_root=os.geteuid() == 0)
