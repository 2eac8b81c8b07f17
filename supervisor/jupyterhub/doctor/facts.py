"""What the doctor's rules judge: findings, and the facts probe.py gathers from the OS.

Facts are plain values so that every rule can be unit-tested with made-up ones. New fields go
at the end with a default: tests elsewhere build Facts positionally (host, modes, cert, ports,
node, proxy, jupyter_server).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from supervisor.jupyterhub.certs import CertReport

# UNCHECKED: the caller could not look (a file or process only root may see); never an error, and
# never a reason to recommend `init --force`, which run as root would replace the cert and secret.
ERROR, WARNING, UNCHECKED, INFO = "error", "warning", "unchecked", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, UNCHECKED: 2, INFO: 3}
AS_ROOT = "run svctl check as root"


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning | unchecked | info
    code: str  # stable short name, for --json consumers and tests
    message: str
    fix: str = ""


@dataclass(frozen=True)
class HostFacts:
    has_ipv4: bool  # any IPv4 address on any interface, loopback included
    localhost_ipv6: bool  # "localhost" resolves to an IPv6 address
    hostname_ipv6: bool  # gethostname() resolves to an IPv6 address (used for wildcard binds)
    # 127.0.0.1 can be bound: jupyter_client's TCP kernels need it. None: as has_ipv4.
    ipv4_loopback: bool | None = None

    @property
    def kernel_loopback(self) -> bool:
        return self.has_ipv4 if self.ipv4_loopback is None else self.ipv4_loopback


@dataclass(frozen=True)
class PortState:
    setting: str  # which setting the port comes from
    host: str
    port: int
    state: str  # free | ours | taken | unavailable | unknown (taken, owner hidden from a non-root caller)
    detail: str = ""  # who holds it, or the errno text


@dataclass(frozen=True)
class Program:
    """A program the hub needs, as the service would find it."""

    role: str  # "jupyterhub" (command[0]), "configurable-http-proxy", "node"
    wanted: str  # as configured: an absolute path, or a name looked up on the service's PATH
    found: str | None = None  # the executable file
    problem: str = ""  # why it cannot run: "does not exist", "is not executable", ...
    closed: str = ""  # why the caller could not look (a directory only root may enter)


@dataclass(frozen=True)
class ProxyTls:
    """--proxy external: the pair configurable-http-proxy serves, from its own service file."""

    service_file: str
    cert: str | None  # --ssl-cert (None: the proxy serves plain http)
    key: str | None
    report: CertReport | None = None
    closed: str = ""  # why the caller could not read the service file (it holds a token: 0600)


@dataclass(frozen=True)
class Facts:
    host: HostFacts
    modes: dict[str, int | None] = field(default_factory=dict)  # path -> st_mode & 0o777, None = missing
    cert: CertReport | None = None  # the hub's ssl_cert/ssl_key pair
    ports: tuple[PortState, ...] = ()
    node: str | None = None
    proxy: str | None = None
    jupyter_server: bool | None = None  # None: could not tell
    # LocalProcessSpawner: the first path on the way to jupyterhub-singleuser (or its Python) that
    # other users cannot traverse or execute (a venv under /root, which is 0700), with its mode.
    singleuser_blocked: tuple[str, int] | None = None
    # names in allowed_users/admin_users with no system account (what PAM logs in); None: not asked
    missing_users: tuple[str, ...] | None = None
    caller: str = "root"  # who runs the check: named in "not checked as USER"
    closed: dict[str, str] = field(default_factory=dict)  # path -> why the caller cannot read it
    programs: tuple[Program, ...] = ()  # overrides node/proxy when the role is present
    proxy_tls: ProxyTls | None = None
    now: datetime.datetime | None = None  # the clock certificates are judged by (None: the real one)
    # role ("jupyterhub", "configurable-http-proxy") -> the commands that install it on this OS (locate.py)
    install: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # what a non-root caller could not run: e.g. "the service's check command" -> why
    not_run: dict[str, str] = field(default_factory=dict)
    homes: dict[str, str] = field(default_factory=dict)  # allowed user -> home (kernel socket paths)
    # why jupyter_server was not asked for (command[0] is no Python script): an information line
    jupyter_server_note: str = ""
    hub_venv: str | None = None  # the venv command[0] lives in: where `pip install notebook` goes
    # a root hub: (what, path, why someone else could change it) for each program it runs as root
    # and each directory on its PATH (docs/security.md X2)
    untrusted: tuple[tuple[str, str, str], ...] = ()
    # role -> an executable of that role that exists where init looks (for a command[0] that does not)
    elsewhere: dict[str, str] = field(default_factory=dict)

    def program(self, role: str) -> Program | None:
        for program in self.programs:
            if program.role == role:
                return program
        legacy = {"node": self.node, "configurable-http-proxy": self.proxy}.get(role, "")
        if legacy == "":
            return None  # not gathered: nothing to judge
        return Program(role, role, legacy, "" if legacy else "not found")


def unchecked(facts: Facts, code: str, what: str, why: str) -> Finding:
    """The one shape of "needs root": WHAT could not be looked at by the caller, and WHY."""
    return Finding(UNCHECKED, code, f"not checked as {facts.caller}: {what}: {why}", AS_ROOT)
