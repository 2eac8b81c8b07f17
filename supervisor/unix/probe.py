"""Readiness probes: tcp://[addr]:port connects, http(s):// answers 200 (https: no cert check).

A probe runs in a thread so a slow connect never holds up the supervisor's loop; it retries with a
growing interval (20 ms, doubling up to 500 ms) until it succeeds or is cancelled, then calls
``on_ready`` exactly once. 404 and 503 are not ready (a JupyterHub proxy answers 404 before the hub
route exists and 503 while the hub is unreachable).

``failure`` is one probe that says why it failed: the liveness probes (supervisor/unix/health.py)
use it once per health_interval.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def probe_once(url: str, timeout: float = 2.0) -> bool:
    return failure(url, timeout) is None


def failure(url: str, timeout: float) -> str | None:
    """One probe of URL: None when it passed, else why not ("HTTP 503", "connection refused").
    TIMEOUT bounds each connect, send and receive."""
    if url.startswith("tcp://"):
        try:
            with socket.create_connection(tcp_address(url), timeout=timeout):
                return None
        except OSError as exc:
            return _why(exc, timeout)
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""

    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # self-signed certificates are the norm here (seed: openssl req -x509)
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                                            context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")  # ?token=...: part of the URL
        connection.request("GET", target, headers={"User-Agent": "svctl-probe"})
        status = connection.getresponse().status
        return None if status == 200 else f"HTTP {status}"
    except (OSError, http.client.HTTPException) as exc:
        return _why(exc, timeout)
    finally:
        connection.close()


def tcp_address(url: str) -> tuple[bytes, int]:
    """(host, port) of a tcp:// URL as config_values.ready_url accepts it (ASCII, a host and a port,
    no user information), as urlsplit reads it, without urllib: urlsplit checks a bracketed host
    with the ipaddress module, and the supervisor would keep both for good (0.5 MB). The host goes
    to getaddrinfo as bytes: a str one loads the IDNA codec and unicodedata on the first connect."""
    netloc = url[len("tcp://"):].split("/", 1)[0].split("?", 1)[0]
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest.partition(":")[2]  # as urlsplit reads it
    else:
        host, _, port = netloc.rpartition(":")
    return host.lower().encode("ascii"), int(port)


def _why(exc: Exception, timeout: float) -> str:
    """One short line for status (no URL: that is in the config)."""
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"timed out after {timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]  # "connection refused"
    return str(exc) or type(exc).__name__


class Probe:
    def __init__(self, url: str, on_ready: Callable[[], None]) -> None:
        self.url = url
        self.on_ready = on_ready
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._run, name="svctl-probe", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        interval = 0.02
        while not self.cancelled.is_set():
            if probe_once(self.url):
                if not self.cancelled.is_set():
                    self.on_ready()
                return
            self.cancelled.wait(interval)
            interval = min(interval * 2, 0.5)

    def cancel(self) -> None:
        self.cancelled.set()
