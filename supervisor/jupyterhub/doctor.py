"""``svctl check jupyterhub``: what is wrong with a JupyterHub config, and the fix (pure rules).

Every rule is a function of the parsed config (pyconfig, never executed), the service definition and
``Facts`` gathered by probe.py, so each can be unit-tested with made-up facts. The facts behind
each rule are summarised in docs/jupyterhub.md (and in the rule's comment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from supervisor.config import ServiceConfig
from supervisor.core.schedule import Send, Wait
from supervisor.jupyterhub.certs import CertReport
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning | info
    code: str  # stable short name, for --json consumers and tests
    message: str
    fix: str = ""


@dataclass(frozen=True)
class HostFacts:
    has_ipv4: bool  # any IPv4 address on any interface, loopback included
    localhost_ipv6: bool  # "localhost" resolves to an IPv6 address
    hostname_ipv6: bool  # gethostname() resolves to an IPv6 address (used for wildcard binds)


@dataclass(frozen=True)
class PortState:
    setting: str  # which setting the port comes from
    host: str
    port: int
    state: str  # free | ours | taken | unavailable | unknown
    detail: str = ""  # who holds it, or the errno text


@dataclass(frozen=True)
class Facts:
    host: HostFacts
    modes: dict[str, int | None] = field(default_factory=dict)  # path -> st_mode & 0o777, None = missing
    cert: CertReport | None = None
    ports: tuple[PortState, ...] = ()
    node: str | None = None
    proxy: str | None = None
    jupyter_server: bool | None = None  # None: could not tell
    # LocalProcessSpawner: the first path on the way to jupyterhub-singleuser (or its Python) that
    # other users cannot traverse or execute (a venv under /root, which is 0700), with its mode.
    singleuser_blocked: tuple[str, int] | None = None
    # names in allowed_users/admin_users with no system account (what PAM logs in); None: not asked
    missing_users: tuple[str, ...] | None = None


# (setting, default) for every address JupyterHub binds or connects to (spec A3 table).
ADDRESS_SETTINGS: tuple[tuple[str, str | None], ...] = (
    ("JupyterHub.bind_url", "http://:8000"),
    ("JupyterHub.hub_bind_url", None),
    ("JupyterHub.hub_ip", "127.0.0.1"),
    ("JupyterHub.hub_connect_ip", None),
    ("JupyterHub.hub_connect_url", None),
    ("ConfigurableHTTPProxy.api_url", "http://127.0.0.1:8001"),
    ("Spawner.ip", "127.0.0.1"),
)
_IPV4_WORDS = ("127.0.0.1", "0.0.0.0", "localhost")
_FIXES = {
    "JupyterHub.bind_url": 'c.JupyterHub.bind_url = "https://[::1]:9443" (or the host\'s IPv6 address)',
    "JupyterHub.ip": 'c.JupyterHub.bind_url = "https://[::1]:9443" instead of JupyterHub.ip',
    "JupyterHub.hub_bind_url": 'c.JupyterHub.hub_bind_url = "http://[::1]:8081"',
    "JupyterHub.hub_ip": 'c.JupyterHub.hub_bind_url = "http://[::1]:8081" (or hub_ip = "::1")',
    "JupyterHub.hub_connect_ip": 'c.JupyterHub.hub_connect_ip = "::1"',
    "JupyterHub.hub_connect_url": 'c.JupyterHub.hub_connect_url = "http://[::1]:8081"',
    "ConfigurableHTTPProxy.api_url": 'c.ConfigurableHTTPProxy.api_url = "http://[::1]:8001"',
    "Spawner.ip": 'c.Spawner.ip = "::1"',
}


def host_of(value: str) -> str:
    """The host part of a URL setting or a bare ``*_ip`` setting, without brackets."""
    if "://" in value:
        try:
            return urlsplit(value).hostname or ""
        except ValueError:
            return value
    return value.strip("[]")


def _spawner_ip(hub: ConfigFile) -> tuple[str, object]:
    for key in ("SimpleLocalProcessSpawner.ip", "LocalProcessSpawner.ip", "Spawner.ip"):
        if hub.has(key):
            return key, hub.get(key)
    return "Spawner.ip", "127.0.0.1"


def _address_values(hub: ConfigFile) -> list[tuple[str, object, bool]]:
    """(setting, value, is_default) for every address setting that applies."""
    values: list[tuple[str, object, bool]] = []
    for key, default in ADDRESS_SETTINGS:
        if key == "Spawner.ip":
            spawner_key, value = _spawner_ip(hub)
            values.append((spawner_key, value, not hub.has(spawner_key)))
        elif key == "JupyterHub.hub_ip" and hub.has("JupyterHub.hub_bind_url"):
            continue  # hub_bind_url wins over hub_ip
        elif key == "JupyterHub.bind_url" and not hub.has(key) and hub.has("JupyterHub.ip"):
            values.append(("JupyterHub.ip", hub.get("JupyterHub.ip"), False))
        elif hub.has(key):
            values.append((key, hub.get(key), False))
        elif default is not None:
            values.append((key, default, True))
    return values


def ipv6_findings(hub: ConfigFile, host: HostFacts) -> list[Finding]:
    """IPv4-only, name-based and wildcard addresses (spec A3, B6, D6)."""
    findings: list[Finding] = []
    severity = INFO if host.has_ipv4 else ERROR
    where = "works here (the host has IPv4) but fails on a pure-IPv6 host" if host.has_ipv4 \
        else "fails: this host has no IPv4 address"
    connect_ip = hub.get("JupyterHub.hub_connect_ip") or hub.get("JupyterHub.hub_connect_url")
    for key, value, is_default in _address_values(hub):
        if not isinstance(value, str):
            continue
        name = host_of(value)
        shown = f"{key} = {value!r}" + (" (JupyterHub's default)" if is_default else "")
        fix = _FIXES.get(key, _FIXES["Spawner.ip"] if key.endswith(".ip") else "use a literal IPv6 address")
        if name in ("127.0.0.1", "0.0.0.0") or (name.count(".") == 3 and name.replace(".", "").isdigit()):
            findings.append(Finding(severity, "ipv4-only", f"{shown} is an IPv4 address: {where}", fix))
        elif name == "localhost" and not host.localhost_ipv6:
            findings.append(Finding(severity, "ipv4-only",
                                    f"{shown}: 'localhost' resolves only to 127.0.0.1 here: {where}", fix))
        elif name in ("", "::"):
            findings.extend(_wildcard(key, name, shown, host, bool(connect_ip)))
    findings.extend(_ipv4_elsewhere(hub, severity, where))
    return findings


def _wildcard(key: str, name: str, shown: str, host: HostFacts, has_connect_ip: bool) -> list[Finding]:
    """Wildcard binds are fine to listen on, but JupyterHub then *connects* via gethostname()."""
    if key.endswith("Spawner.ip") and name == "":
        return [Finding(ERROR if not host.has_ipv4 else INFO, "wildcard",
                        f"{shown}: the hub then connects to the user server at 127.0.0.1",
                        _FIXES["Spawner.ip"])]
    if key in ("JupyterHub.hub_bind_url", "JupyterHub.hub_ip") and has_connect_ip:
        return []
    if host.hostname_ipv6:
        return [Finding(INFO, "wildcard", f"{shown}: a wildcard; works because the host name resolves to IPv6",
                        "a literal address does not depend on /etc/hosts")]
    fix = _FIXES["JupyterHub.hub_connect_ip"] if key in ("JupyterHub.hub_bind_url", "JupyterHub.hub_ip") \
        else _FIXES.get(key, "use a literal IPv6 address")
    return [Finding(ERROR if not host.has_ipv4 else INFO, "wildcard",
                    f"{shown}: a wildcard makes JupyterHub connect through the host name, which does not "
                    "resolve to an IPv6 address here", fix)]


def _ipv4_elsewhere(hub: ConfigFile, severity: str, where: str) -> list[Finding]:
    """127.0.0.1/localhost/0.0.0.0 in any other setting (Spawner.args, services, ...)."""
    known = {key for key, _ in ADDRESS_SETTINGS} | {"JupyterHub.ip", "LocalProcessSpawner.ip",
                                                     "SimpleLocalProcessSpawner.ip"}
    findings = []
    for key, setting in hub.settings.items():
        if key in known:
            continue
        text = repr(setting.value) if setting.value is not UNKNOWN else ""
        word = next((word for word in _IPV4_WORDS if word in text), None)
        if word:
            findings.append(Finding(severity, "ipv4-only", f"{key} (line {setting.line}) mentions {word}: {where}",
                                    "use ::1 (bare) or [::1] (inside URLs)"))
    return findings


DEPRECATED = {
    "whitelist": ("allowed_users", "renamed in JupyterHub 1.2; some authenticators ignore the old name"),
    "blacklist": ("blocked_users", "renamed in JupyterHub 1.2"),
}


def deprecation_findings(hub: ConfigFile) -> list[Finding]:
    """Deprecated or silently ignored options (spec A4)."""
    findings = []
    for key, setting in hub.settings.items():
        section, _, trait = key.partition(".")
        if trait in DEPRECATED:
            new, why = DEPRECATED[trait]
            findings.append(Finding(WARNING, "deprecated", f"c.{key} (line {setting.line}): {why}",
                                    f"write c.{section}.{new} instead"))
    ignored = {
        "JupyterHub.log_file": "does not exist: JupyterHub ignores it (only a warning in its log)",
        "JupyterHub.extra_log_file": "deprecated since 0.8.2 and covers the hub's own lines only",
    }
    for key, why in ignored.items():
        if hub.has(key):
            findings.append(Finding(WARNING, "ignored-option", f"c.{key} (line {hub.line(key)}) {why}",
                                    "remove it: svctl captures hub, proxy and server output in the service's "
                                    "log_file"))
    if hub.has("JupyterHub.admin_users"):
        findings.append(Finding(WARNING, "deprecated", "c.JupyterHub.admin_users is deprecated since 0.7.2",
                                "write c.Authenticator.admin_users instead"))
    if hub.has("JupyterHub.ip") and hub.has("JupyterHub.bind_url"):
        findings.append(Finding(WARNING, "conflict", "both JupyterHub.ip and JupyterHub.bind_url are set",
                                "keep only bind_url"))
    return findings


def _is_relative_db(url: str) -> bool:
    if "://" not in url:
        return not os.path.isabs(url)
    return url.startswith("sqlite:///") and not url[len("sqlite:///"):].startswith("/")


STATE_SETTINGS = (("JupyterHub.db_url", "sqlite:///jupyterhub.sqlite"),
                  ("JupyterHub.cookie_secret_file", "jupyterhub_cookie_secret"),
                  ("ConfigurableHTTPProxy.pid_file", "jupyterhub-proxy.pid"),
                  ("JupyterHub.pid_file", ""), ("JupyterHub.ssl_key", ""), ("JupyterHub.ssl_cert", ""))


def path_findings(hub: ConfigFile, config: ServiceConfig) -> list[Finding]:
    """CWD-relative state (spec D11): set -> warning; left at a relative default -> info."""
    findings = []
    for key, default in STATE_SETTINGS:
        value = hub.get(key, default)
        if not isinstance(value, str) or not value:
            continue
        relative = _is_relative_db(value) if key.endswith("db_url") else not os.path.isabs(value)
        if not relative:
            continue
        resolved = f"resolves against the hub's working directory {config.working_directory}"
        if hub.has(key):
            findings.append(Finding(WARNING, "relative-path", f"c.{key} = {value!r} is relative: it {resolved}",
                                    f"give an absolute path under {config.working_directory}"))
        else:
            severity = WARNING if config.working_directory == "/" else INFO
            findings.append(Finding(severity, "relative-path", f"c.{key} is not set: its default {value!r} "
                                    f"{resolved}", f"set c.{key} to an absolute path"))
    return findings


def resolve(path: str, config: ServiceConfig) -> str:
    return os.path.normpath(os.path.join(config.working_directory, path))


def tls_findings(hub: ConfigFile, config: ServiceConfig, facts: Facts) -> list[Finding]:
    """Cookie secret and key permissions, certificate presence, validity and key match (spec A4)."""
    findings = []
    secret = hub.get("JupyterHub.cookie_secret_file", "jupyterhub_cookie_secret")
    if isinstance(secret, str) and secret:
        mode = facts.modes.get(resolve(secret, config))
        if mode is not None and mode & 0o007:
            findings.append(Finding(ERROR, "permissions", f"cookie secret {secret} has mode {mode:04o}: "
                                    "JupyterHub refuses to start", f"chmod 600 {secret}"))
    cert, key = hub.get("JupyterHub.ssl_cert"), hub.get("JupyterHub.ssl_key")
    bind = hub.get("JupyterHub.bind_url", "")
    if not cert:
        if isinstance(bind, str) and bind.startswith("https://"):
            findings.append(Finding(WARNING, "no-tls", "bind_url is https:// but ssl_cert is not set: JupyterHub "
                                    "silently serves plain http", "set c.JupyterHub.ssl_cert and ssl_key"))
        return findings
    if not isinstance(cert, str) or not isinstance(key, str) or not key:
        if not key:
            findings.append(Finding(ERROR, "tls", "ssl_cert is set but ssl_key is not", "set c.JupyterHub.ssl_key"))
        return findings
    for label, path in (("certificate", cert), ("key", key)):
        if facts.modes.get(resolve(path, config)) is None:
            findings.append(Finding(ERROR, "tls", f"{label} {path} does not exist: the proxy fails to start",
                                    "svctl init jupyterhub --force writes a self-signed pair"))
    key_mode = facts.modes.get(resolve(key, config))
    if key_mode is not None and key_mode & 0o077:
        findings.append(Finding(ERROR if key_mode & 0o004 else WARNING, "permissions",
                                f"private key {key} has mode {key_mode:04o}", f"chmod 600 {key}"))
    if facts.cert is not None:
        findings += [Finding(ERROR, "tls", problem, "svctl init jupyterhub --force writes a new self-signed pair")
                     for problem in facts.cert.problems]
        findings += [Finding(WARNING, "tls", warning, "renew the certificate") for warning in facts.cert.warnings]
    return findings


def port_findings(facts: Facts) -> list[Finding]:
    findings = []
    for port in facts.ports:
        where = f"[{port.host}]:{port.port}" if ":" in port.host else f"{port.host}:{port.port}"
        if port.state == "taken":
            fix = "stop that process, or choose another port"
            if "configurable-http-proxy" in port.detail:
                fix = "an orphaned proxy: 'svctl start' stops the one named in the proxy pid file; else kill it"
            findings.append(Finding(ERROR, "port-taken", f"{port.setting}: {where} is in use by {port.detail}", fix))
        elif port.state == "unavailable":
            findings.append(Finding(ERROR, "address", f"{port.setting}: cannot bind {where}: {port.detail}",
                                    "use an address configured on this host (ip -6 addr)"))
    return findings


def tool_findings(hub: ConfigFile, facts: Facts) -> list[Finding]:
    """node, configurable-http-proxy, jupyter_server (spec D14)."""
    findings = []
    if hub.get("ConfigurableHTTPProxy.should_start", True) is not False:
        if facts.proxy is None:
            findings.append(Finding(ERROR, "missing-tool", "configurable-http-proxy is not on the service's PATH "
                                    "nor in ConfigurableHTTPProxy.command",
                                    "npm install -g configurable-http-proxy (or make jupyterhub-deps)"))
        if facts.node is None:
            findings.append(Finding(ERROR, "missing-tool", "node is not on the service's PATH (the proxy is "
                                    "#!/usr/bin/env node)", "apt-get install nodejs, or add its directory to "
                                    "environment.PATH in the service file"))
    if facts.singleuser_blocked:
        path, mode = facts.singleuser_blocked
        findings.append(Finding(WARNING, "singleuser-access", f"users cannot run jupyterhub-singleuser: {path} is "
                                f"mode {mode:03o}, closed to other users, so LocalProcessSpawner's servers fail to start",
                                "install JupyterHub where users can execute it (a venv in /opt/jupyterhub), or set "
                                "c.Spawner.cmd to a Python they can run"))
    if facts.jupyter_server is False:
        findings.append(Finding(ERROR, "missing-tool", "jupyter_server is not installed next to jupyterhub: "
                                "user servers cannot start", "pip install jupyter_server"))
    return findings


def _grace(config: ServiceConfig) -> float | None:
    """Seconds the service gets between the first signal and SIGKILL (None: never killed)."""
    total, started = 0.0, False
    for step in config.stop.steps:
        if isinstance(step, Send):
            if step.signal == 9:
                return total
            started = True
        elif isinstance(step, Wait) and started:
            total += step.seconds
    return None if config.stop.repeat_from is not None else total


def _number(hub: ConfigFile, trait: str, default: float) -> float | None:
    for section in ("SimpleLocalProcessSpawner", "LocalProcessSpawner", "Spawner"):
        value = hub.get(f"{section}.{trait}", None)
        if value is UNKNOWN:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def stop_findings(hub: ConfigFile, config: ServiceConfig) -> list[Finding]:
    """A hub SIGKILLed mid-cleanup orphans its proxy and user servers (spec A1, D5)."""
    if hub.get("JupyterHub.cleanup_servers", True) is not True:
        return []
    parts = [_number(hub, "interrupt_timeout", 30), _number(hub, "term_timeout", 30), _number(hub, "kill_timeout", 5)]
    grace = _grace(config)
    if any(part is None for part in parts) or grace is None:
        return []
    needed = sum(parts) + 5  # the hub's own shutdown around the user servers' (spec A1: ~1-3 s)
    if grace >= needed:
        return []
    return [Finding(WARNING, "stop-too-short",
                    f"stop = {config.stop_text!r} sends SIGKILL after {grace:g} s, but with cleanup_servers the hub "
                    f"may need {needed:g} s to stop a stuck user server (SIGINT {parts[0]:g} + SIGTERM {parts[1]:g} "
                    f"+ SIGKILL {parts[2]:g} s)",
                    "lower c.LocalProcessSpawner.interrupt_timeout/term_timeout, or lengthen the stop schedule")]


PAM_AUTHENTICATORS = ("pam", "jupyterhub.auth.PAMAuthenticator")


def hub_user_names(hub: ConfigFile) -> tuple[str, ...]:
    """Every name allowed_users and admin_users list (sets of string literals), sorted."""
    names: set[str] = set()
    for key in ("Authenticator.allowed_users", "Authenticator.admin_users"):
        value = hub.get(key)
        if isinstance(value, (set, frozenset, list, tuple)):
            names.update(item for item in value if isinstance(item, str))
    return tuple(sorted(names))


def auth_findings(hub: ConfigFile, config: ServiceConfig, running_as_root: bool,
                  facts: Facts | None = None) -> list[Finding]:
    findings = []
    authenticator = hub.get("JupyterHub.authenticator_class", "pam")
    if authenticator in PAM_AUTHENTICATORS and facts is not None and facts.missing_users:
        names = ", ".join(facts.missing_users)
        findings.append(Finding(WARNING, "no-such-user", f"allowed_users/admin_users name {names}, which have no "
                                "account on this host: PAM can never log them in",
                                f"create the account(s) (adduser {facts.missing_users[0]}), or fix the names"))
    if authenticator in ("dummy", "jupyterhub.auth.DummyAuthenticator") and not hub.get("DummyAuthenticator.password"):
        findings.append(Finding(ERROR, "open-hub", "DummyAuthenticator without a password: anyone can log in as "
                                "anyone", "svctl init jupyterhub --auth dummy --force (a generated shared password)"))
    if hub.get("Authenticator.allow_all") is True:
        findings.append(Finding(WARNING, "open-hub", "Authenticator.allow_all = True: every account the "
                                "authenticator accepts may log in", "list users in c.Authenticator.allowed_users"))
    spawner = hub.get("JupyterHub.spawner_class", "localprocess")
    if spawner in ("localprocess", "jupyterhub.spawner.LocalProcessSpawner") and not running_as_root \
            and config.user not in (None, "root"):
        findings.append(Finding(WARNING, "privileges", "LocalProcessSpawner starts servers as each user: the hub "
                                "must run as root", "drop `user` from the service file, or use another spawner"))
    return findings


def diagnose(config: ServiceConfig, hub: ConfigFile, facts: Facts, *, running_as_root: bool = True) -> list[Finding]:
    """All findings for one hub config, errors first (pure)."""
    if hub.syntax_error:
        return [Finding(ERROR, "syntax", f"not valid Python: {hub.syntax_error}", "fix the line; the hub exits 1 on it")]
    findings = (ipv6_findings(hub, facts.host) + deprecation_findings(hub) + path_findings(hub, config)
                + tls_findings(hub, config, facts) + port_findings(facts) + tool_findings(hub, facts)
                + stop_findings(hub, config) + auth_findings(hub, config, running_as_root, facts))
    return sorted(findings, key=lambda finding: SEVERITY_ORDER[finding.severity])
