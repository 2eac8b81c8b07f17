"""Addresses, ports and kernel sockets: what fails on a host without IPv4."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from supervisor.jupyterhub.doctor.facts import ERROR, INFO, WARNING, Facts, Finding, HostFacts, unchecked
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

# (setting, default) for every address JupyterHub binds or connects to.
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
# Most specific first: traitlets gives a subclass's setting precedence over Spawner's.
SPAWNER_SECTIONS = ("SimpleLocalProcessSpawner", "LocalProcessSpawner", "Spawner")


def host_of(value: str) -> str:
    """The host part of a URL setting or a bare ``*_ip`` setting, without brackets (a URL that does not
    parse is returned whole: no rule here matches it, and values.value_findings reports it)."""
    if "://" in value:
        try:
            return urlsplit(value).hostname or ""
        except ValueError:
            return value
    return value.strip("[]")


def _spawner_setting(hub: ConfigFile, trait: str) -> str | None:
    """The key (e.g. "LocalProcessSpawner.args") that decides TRAIT for the user servers, if any."""
    return next((f"{section}.{trait}" for section in SPAWNER_SECTIONS if hub.has(f"{section}.{trait}")), None)


def _address_values(hub: ConfigFile) -> list[tuple[str, object, bool]]:
    """(setting, value, is_default) for every address setting that applies."""
    values: list[tuple[str, object, bool]] = []
    for key, default in ADDRESS_SETTINGS:
        if key == "Spawner.ip":
            spawner_key = _spawner_setting(hub, "ip")
            values.append((spawner_key, hub.get(spawner_key), False) if spawner_key
                          else ("Spawner.ip", "127.0.0.1", True))
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
    """IPv4-only, name-based and wildcard addresses."""
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


def port_findings(facts: Facts) -> list[Finding]:
    findings = []
    for port in facts.ports:
        where = f"[{port.host}]:{port.port}" if ":" in port.host else f"{port.host}:{port.port}"
        if port.state == "taken":
            fix = "stop that process, or choose another port"
            if "configurable-http-proxy" in port.detail:
                fix = "an orphaned proxy: 'svctl start' stops the one named in the proxy pid file; else kill it"
            findings.append(Finding(ERROR, "port-taken", f"{port.setting}: {where} is in use by {port.detail}", fix))
        elif port.state == "unknown":  # in use, by a process only root may see: perhaps the hub itself
            findings.append(unchecked(facts, "port-taken", f"who holds {port.setting}'s {where}", port.detail))
        elif port.state == "unavailable":
            findings.append(Finding(ERROR, "address", f"{port.setting}: cannot bind {where}: {port.detail}",
                                    "use an address configured on this host (ip -6 addr)"))
    return findings


# Kernels. jupyter_client's default transport is TCP on 127.0.0.1 (KernelManager.ip), and "::1" is
# refused as "not a local interface", so where 127.0.0.1 cannot be bound users log in but no kernel
# starts (EADDRNOTAVAIL in the hub log; POST /api/kernels answers 500). The ipc transport (Unix
# sockets in the runtime dir) needs no address. It must reach the *user server*: the hub's own
# config is not read there, so it goes in c.Spawner.args (traitlets accepts the trait on any
# KernelManager subclass, or on ConnectionFileMixin, where it is defined).
IPC_ARG = "--KernelManager.transport=ipc"
_TRANSPORT = re.compile(r"--(\w*KernelManager|ConnectionFileMixin)\.transport(?:=(.*))?$")
# A kernel's sockets are RUNTIME_DIR/kernel-<36-char uuid>-ipc-<N> (N counts from 1); sun_path
# holds 107 bytes plus the NUL. Two digits for N leave 107 - 8 - 36 - 5 - 2 = 56 for the directory.
SOCKET_PATH_MAX = 107
RUNTIME_DIR_MAX = SOCKET_PATH_MAX - len("/kernel-") - 36 - len("-ipc-") - 2
DEFAULT_RUNTIME = ".local/share/jupyter/runtime"  # jupyter_core: JUPYTER_RUNTIME_DIR, else this under ~


def kernel_transport(hub: ConfigFile) -> tuple[str, str]:
    """("tcp" | "ipc" | "unknown", the setting that decides, or "" for JupyterHub's default).

    The spawner runs cmd + args, so the last --*KernelManager.transport across both wins."""
    transport, decided_by, present = "tcp", "", ""
    for trait in ("cmd", "args"):
        key = _spawner_setting(hub, trait)
        if key is None:
            continue
        present = key  # a list without the option still decides: it replaces Spawner's
        value = hub.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return "unknown", key
        words = [str(word) for word in value]
        for index, word in enumerate(words):
            match = _TRANSPORT.match(word)
            if match:
                chosen = match.group(2) if match.group(2) is not None else \
                    (words[index + 1] if index + 1 < len(words) else "")
                transport, decided_by = chosen.strip().lower() or "tcp", key  # the trait is case-less
    return transport, decided_by or present


def kernel_findings(hub: ConfigFile, facts: Facts) -> list[Finding]:
    """Kernels need 127.0.0.1 unless the user servers use the ipc transport (issue 12)."""
    transport, key = kernel_transport(hub)
    shown = f"c.{key} (line {hub.line(key)})" if key else "c.Spawner.args"
    if transport == "ipc":
        return _runtime_dir_findings(hub, facts)
    if facts.host.kernel_loopback:
        if transport == "unknown":
            return []
        return [Finding(INFO, "kernel-transport", "kernels use TCP on 127.0.0.1: works here, fails on a host "
                        "without IPv4", f"add {IPC_ARG!r} to c.Spawner.args")]
    if transport == "unknown":
        return [Finding(WARNING, "kernel-transport", f"{shown} is computed: cannot tell whether kernels use the "
                        "ipc transport, which this host (127.0.0.1 cannot be bound) needs",
                        f"make c.Spawner.args a literal list holding {IPC_ARG!r}")]
    hub_only = " (c.KernelManager.transport in the hub's config applies to the hub, not to user servers)" \
        if hub.has("KernelManager.transport") else ""
    return [Finding(ERROR, "kernel-transport",
                    f"kernels will not start on this IPv6-only host: jupyter_client binds their ports on 127.0.0.1, "
                    f"which cannot be bound here, and {shown} does not select the ipc transport{hub_only}",
                    f"add {IPC_ARG!r} to c.Spawner.args, then svctl reload jupyterhub (the config svctl init "
                    "jupyterhub writes has it)")]


def _runtime_dir_findings(hub: ConfigFile, facts: Facts) -> list[Finding]:
    """ipc sockets live in the runtime dir: a long one (a deep home) makes every kernel fail to bind."""
    environment = hub.get(_spawner_setting(hub, "environment") or "Spawner.environment", {})
    if _spawner_setting(hub, "pre_spawn_hook") or not isinstance(environment, dict):
        return []  # computed per user (svctl's generated hook): nothing a static reader can measure
    runtime = environment.get("JUPYTER_RUNTIME_DIR")
    if isinstance(runtime, str) and runtime:
        # Spawner.environment values go through format_string: {username} is the user's name
        # (at most 32 bytes on Linux), so measure the longest a known user makes it.
        names = sorted(facts.homes) or ["x" * 32]
        candidates = {name: runtime.replace("{username}", name) for name in names}
        origin = "its JUPYTER_RUNTIME_DIR"
    elif "JUPYTER_DATA_DIR" in environment or "XDG_DATA_HOME" in environment:
        return []
    else:
        candidates = {name: f"{home.rstrip('/')}/{DEFAULT_RUNTIME}" for name, home in facts.homes.items()}
        origin = "the default runtime dir ~/" + DEFAULT_RUNTIME
    long = {name: path for name, path in candidates.items() if _bytes(path) > RUNTIME_DIR_MAX}
    if not long:
        return []
    path = max(long.values(), key=len)
    return [Finding(ERROR, "kernel-socket-path",
                    f"kernels use ipc sockets in {origin}, and for {', '.join(sorted(long))} that is {path} "
                    f"({_bytes(path)} bytes): the socket paths exceed the {SOCKET_PATH_MAX}-byte limit "
                    f"of Unix sockets, so no kernel starts",
                    f"set JUPYTER_RUNTIME_DIR to a directory of at most {RUNTIME_DIR_MAX} bytes per user "
                    "(the config svctl init jupyterhub writes has a pre_spawn_hook that does: see it with svctl init "
                    "jupyterhub --prefix NEW_EMPTY_DIR --no-boot, which touches nothing outside that directory)")]


def _bytes(path: str) -> int:
    """PATH's length as the kernel counts it (a lone surrogate from a "\\ud800" escape still counts)."""
    return len(path.encode("utf-8", "surrogatepass"))
