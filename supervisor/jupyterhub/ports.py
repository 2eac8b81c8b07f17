"""Is something else already serving the hub's ports? Checked before each start of the hub.

A hub that svctl did not start (the seed's, started by its own init.d script and not yet stopped)
keeps the hub's ports. A new hub would then crash-loop on EADDRINUSE while the old proxy answers
/hub/health, so readiness would pass on someone else's hub. The start is refused instead, naming
the process, but only when the holder is itself a JupyterHub hub listening where ours would bind:
anything else (a proxy still shutting down after a reload, an unrelated program, a user's socket
on another address) is left to the hub's own bind, as before, so that nobody can turn this check
into a way to keep the hub down.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from supervisor.errors import printable
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

def _endpoint(url: object) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL; None for a unix socket, a computed or a malformed value."""
    if not isinstance(url, str) or url is UNKNOWN:
        return None
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None  # http+unix://...: no TCP port at all
        return (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except ValueError:  # out of range or malformed: the doctor reports it; nothing to check here
        return None


def hub_ports(hub_config: ConfigFile) -> dict[int, tuple[str, str]]:
    """port -> (host, what it is for) where the hub itself binds, from the parsed config (pure):
    hub_bind_url when it is set literally (the layout init writes); nothing to judge otherwise."""
    endpoint = _endpoint(hub_config.get("JupyterHub.hub_bind_url", None))
    return {endpoint[1]: (endpoint[0], "the hub's API (hub_bind_url)")} if endpoint else {}


def _conflicts(listening: str, ours: str) -> bool:
    """Would a bind to OURS fail with EADDRINUSE because of a socket listening on LISTENING?"""
    import ipaddress

    wildcards = {"", "::", "0.0.0.0"}
    if listening in wildcards or ours in wildcards:
        return True  # (an IPv4 wildcard and an IPv6 one only clash dual-stack; say they may)
    try:
        return ipaddress.ip_address(listening) == ipaddress.ip_address(ours.strip("[]"))
    except ValueError:
        return False  # a name: the hub resolves it itself


def held_by_another_hub(ports: dict[int, tuple[str, str]], is_hub) -> str | None:
    """One line naming a JupyterHub (IS_HUB(process) says which are) that listens where the hub
    would bind, or None."""
    import psutil

    if not ports:
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None  # not root: the hub's own bind error will say it
    for connection in connections:
        if (connection.status != psutil.CONN_LISTEN or not connection.laddr or not connection.pid
                or connection.laddr.port not in ports):
            continue
        host, what = ports[connection.laddr.port]
        try:
            process = psutil.Process(connection.pid)
            if not (_conflicts(connection.laddr.ip, host) and is_hub(process)):
                continue
            shown = printable(" ".join(process.cmdline()))[:80]
        except psutil.Error:
            continue
        return (f"port {connection.laddr.port}, {what}, is held by another JupyterHub, pid {connection.pid} "
                f"({shown}), that svctl did not start (an old init script's?): stop it first")
    return None

