"""Is something else already serving the hub's ports? Checked before each start of the hub.

A hub that svctl did not start (the seed's, started by its own init.d script and not yet stopped)
keeps the public, API and hub ports. A new hub would then crash-loop on EADDRINUSE while the old
proxy answers /hub/health, so readiness would pass on someone else's hub. The start is refused
instead, naming the process. Our own orphaned proxy is stopped by the preset's clean-up first.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

# JupyterHub's defaults when the config does not set them.
DEFAULT_BIND_URL = "http://:8000"
DEFAULT_HUB_PORT = 8081
DEFAULT_API_URL = "http://127.0.0.1:8001"


def _port(url: object) -> int | None:
    if not isinstance(url, str) or url is UNKNOWN:
        return None
    try:
        parts = urlsplit(url)
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # out of range or malformed: the doctor reports it; nothing to check here
        return None


def hub_ports(hub_config: ConfigFile) -> dict[int, str]:
    """port -> what it is for, from the parsed config (pure). The proxy's ports only when the hub
    starts the proxy itself: an external proxy (should_start = False) is another service's."""
    ports: dict[int, str] = {}
    hub_url = hub_config.get("JupyterHub.hub_bind_url", None)
    hub_port = _port(hub_url) if hub_url else hub_config.get("JupyterHub.hub_port", DEFAULT_HUB_PORT)
    if isinstance(hub_port, int) and not isinstance(hub_port, bool):
        ports[hub_port] = "the hub's API (hub_bind_url)"
    if hub_config.get("ConfigurableHTTPProxy.should_start", True) is not False:
        for key, default, what in (("JupyterHub.bind_url", DEFAULT_BIND_URL, "the public port (bind_url)"),
                                   ("ConfigurableHTTPProxy.api_url", DEFAULT_API_URL, "the proxy's API (api_url)")):
            port = _port(hub_config.get(key, default))
            if port is not None:
                ports.setdefault(port, what)
    return ports


def held_by_others(ports: dict[int, str]) -> str | None:
    """One line naming a process that listens on one of PORTS, or None (all free)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None  # not root: the hub's own bind error will say it
    for connection in connections:
        if connection.status != psutil.CONN_LISTEN or not connection.laddr or connection.laddr.port not in ports:
            continue
        who = f"pid {connection.pid}" if connection.pid else "another process"
        try:
            if connection.pid:
                who += f" ({' '.join(' '.join(psutil.Process(connection.pid).cmdline()).split())[:80]})"
        except psutil.Error:
            pass
        port = connection.laddr.port
        return (f"port {port}, {ports[port]}, is already in use by {who}: another JupyterHub (one an old "
                "init script started?) or its proxy; stop it first")
    return None
