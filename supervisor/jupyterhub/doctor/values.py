"""Values no program could use: a NUL byte, a URL that does not parse, a port out of range (pure).

The config may be a user's file and is hostile input to root's `svctl check`: each such value is
one error naming the setting and its line, and the probes skip it (a NUL makes os.stat, pwd and
socket raise ValueError; a bad port makes urlsplit().port raise). JupyterHub itself fails on each
of these at startup, so none of them is a false alarm.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from supervisor.jupyterhub.doctor.facts import ERROR, Finding
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

URL_SETTINGS = ("JupyterHub.bind_url", "JupyterHub.hub_bind_url", "JupyterHub.hub_connect_url",
                "JupyterHub.public_url", "ConfigurableHTTPProxy.api_url")
PORT_SETTINGS = ("JupyterHub.port", "JupyterHub.hub_port", "Spawner.port", "LocalProcessSpawner.port",
                 "SimpleLocalProcessSpawner.port")
SHOWN = 60  # characters of an offending value quoted in a finding


def parse_url(value: str) -> tuple[str, int | None]:
    """(host without brackets, port or None) of a URL; ValueError with urllib's reason when it
    cannot be parsed (a bracketed host that is no IPv6 address, a port that is no number in 0-65535)."""
    parts = urlsplit(value)
    port = parts.port  # raises for "x" and for 80801
    return parts.hostname or "", port


def has_nul(value: object, depth: int = 0) -> str | None:
    """The first string in VALUE (a folded setting: containers included) that holds a NUL, or None."""
    if isinstance(value, str):
        return value if "\0" in value else None
    if depth > 40:  # pyconfig bounds nesting well below this
        return None
    if isinstance(value, dict):
        members = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        members = list(value)
    else:
        return None
    for member in members:
        found = has_nul(member, depth + 1)
        if found is not None:
            return found
    return None


def _shown(text: str) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= SHOWN else quoted[:SHOWN - 3] + "..."


def value_findings(hub: ConfigFile) -> list[Finding]:
    """One error per setting whose value cannot work: NUL bytes, unparsable URLs, bad ports."""
    findings = []
    for key, setting in hub.settings.items():
        offending = has_nul(setting.value)
        if offending is not None:
            findings.append(Finding(ERROR, "bad-value", f"c.{key} (line {setting.line}) holds a NUL byte in "
                                    f"{_shown(offending)}: no file, URL or account name can contain one",
                                    f"remove the NUL (\\x00 or \\0) from c.{key}"))
    for key in URL_SETTINGS:
        value = hub.get(key)
        if not isinstance(value, str) or "\0" in value:
            continue
        try:
            parse_url(value)
        except ValueError as exc:
            findings.append(Finding(ERROR, "bad-value", f"c.{key} (line {hub.line(key)}) = {_shown(value)} is not "
                                    f"a valid URL: {exc}: JupyterHub fails to start",
                                    "write it as http(s)://[IPv6 address]:PORT with PORT in 1-65535"))
    for key in PORT_SETTINGS:
        value = hub.get(key)
        if value is None or value is UNKNOWN:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            shown = _shown(value) if isinstance(value, str) else repr(value)[:SHOWN]
            findings.append(Finding(ERROR, "bad-value", f"c.{key} (line {hub.line(key)}) = {shown} "
                                    "is not a port number", f"set c.{key} to an integer in 1-65535"))
        elif not 0 <= value <= 65535:
            findings.append(Finding(ERROR, "bad-value", f"c.{key} (line {hub.line(key)}) = {value} is out of "
                                    "range: ports are 0-65535", f"set c.{key} to an integer in 1-65535"))
    return findings


def usable_port(value: object) -> int | None:
    """VALUE as a port number, None when it is not one (value_findings reports it)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    return None
