"""Service definitions: ``/etc/svctl/NAME.toml`` -> a frozen ServiceConfig.

Every key is validated once, here; an unknown key, a wrong type or a bad value is a ConfigError
naming the file and the key (exit 6). Defaults live in DEFAULTS and in etc/example.toml, which
documents every key.
"""

from __future__ import annotations

import os
from collections import namedtuple

from supervisor.core.schedule import ScheduleError, format_schedule, parse_schedule
from supervisor.core.signals import parse_signal
from supervisor.errors import ConfigError, Exit, SvctlError
from supervisor.names import validate_name

RESTART_POLICIES = ("always", "on-failure", "never")
PRESETS = ("jupyterhub",)
READY_SCHEMES = ("http://", "https://", "tcp://")


DEFAULT_STOP = parse_schedule("TERM/30/KILL/5")


# field name -> default; `name`, `path` and `command` have none. A namedtuple, not a dataclass,
# because `svctl status` must not pay for importing dataclasses (inspect) or typing.
FIELDS: dict = {
    "name": None, "path": None,  # the service name and the TOML file it came from
    "command": None,  # tuple[str, ...]
    "description": "", "working_directory": "/", "user": None,
    "environment": (),  # tuple of (name, value) pairs
    "pidfile": "", "stop": DEFAULT_STOP,
    "reload": "restart", "reload_signal": None,  # "restart" or a signal name (and its number)
    "restart": "on-failure", "ready": None, "ready_timeout": 60.0,
    "start_seconds": 0.5,  # without `ready`: alive this long = started
    "watch": (), "check": (), "check_timeout": 60.0,
    "log_file": "", "log_max_bytes": 10 * 1024 * 1024, "log_backups": 5, "events_file": "",
    "preset": None,
    "min_uptime": 1.0,  # a run at least this long resets the backoff
    "backoff_initial": 0.1, "backoff_max": 30.0,
    "give_up_after": 5, "give_up_window": 60.0, "give_up_cooldown": 300.0,
}


class ServiceConfig(namedtuple("ServiceConfig", FIELDS, defaults=list(FIELDS.values())[3:])):
    """One validated service definition (immutable)."""

    __slots__ = ()

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)

    @property
    def stop_text(self) -> str:
        return format_schedule(self.stop)


# key -> (accepted Python types, human description)
_NUMBER = ((int, float), "a number of seconds")
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "description": ((str,), "a string"),
    "command": ((list,), "a non-empty list of strings"),
    "working_directory": ((str,), "an absolute path"),
    "user": ((str,), "a user name"),
    "environment": ((dict,), "a table of strings"),
    "pidfile": ((str,), "an absolute path"),
    "stop": ((str, int), "a start-stop-daemon --retry schedule"),
    "reload": ((str,), "'restart' or a signal name"),
    "restart": ((str,), "one of " + ", ".join(RESTART_POLICIES)),
    "ready": ((str,), "an http://, https:// or tcp:// URL"),
    "ready_timeout": _NUMBER,
    "start_seconds": _NUMBER,
    "watch": ((list,), "a list of absolute paths"),
    "check": ((list,), "a list of strings (a command)"),
    "check_timeout": _NUMBER,
    "log_file": ((str,), "an absolute path"),
    "log_max_bytes": ((int,), "a number of bytes"),
    "log_backups": ((int,), "a count"),
    "events_file": ((str,), "an absolute path"),
    "preset": ((str,), "one of " + ", ".join(PRESETS)),
    "min_uptime": _NUMBER,
    "backoff_initial": _NUMBER,
    "backoff_max": _NUMBER,
    "give_up_after": ((int,), "a count"),
    "give_up_window": _NUMBER,
    "give_up_cooldown": _NUMBER,
}


def service_path(name: str, directory: str) -> str:
    return os.path.join(directory, validate_name(name) + ".toml")


def load(name: str, directory: str, state: dict | None = None) -> ServiceConfig:
    """Read and validate ``DIRECTORY/NAME.toml``.

    STATE is a running supervisor's trusted state.json: when the file is unchanged since the
    supervisor recorded it (same inode, size, mtime and ctime), its recorded content is used and
    the TOML parser is not even imported; that is most of what keeps `svctl status` fast.
    """
    path = service_path(name, directory)
    record = (state or {}).get("config") or {}
    if record.get("path") == path and record.get("signature") == signature(path):
        return from_mapping(name, path, record["data"], validated=True)
    return from_mapping(name, path, read_mapping(path))


def signature(path: str) -> list[int] | None:
    """What changes whenever the file's content may have: inode, size, mtime and ctime."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def read_mapping(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such service definition (create it, or run 'svctl init')") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_toml(path, raw)


def parse_toml(path: str, raw: bytes) -> dict:
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def parse(name: str, path: str, raw: bytes) -> ServiceConfig:
    return from_mapping(name, path, parse_toml(path, raw))


def record(config: ServiceConfig) -> dict | None:
    """What a supervisor puts in state.json so that `load` can skip parsing an unchanged file."""
    before = signature(config.path)
    try:
        data = read_mapping(config.path)
    except ConfigError:
        return None
    if before is None or before != signature(config.path):
        return None  # changed while we read it: no cache rather than a wrong one
    return {"path": config.path, "signature": before, "data": data}


def from_mapping(name: str, path: str, data: dict, validated: bool = False) -> ServiceConfig:
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {reason}")

    for key, value in data.items():
        if key not in KEYS:
            raise fail(key, "unknown key (see etc/example.toml for the keys svctl knows)")
        types, description = KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise fail(key, f"expected {description}, got {type(value).__name__} {value!r}")
    values: dict = {}
    if "command" not in data:
        raise fail("command", "missing: the service needs a command to run")
    values["command"] = _string_list(data["command"], lambda r: fail("command", r), allow_empty=False)
    if not os.path.isabs(values["command"][0]):
        raise fail("command", f"{values['command'][0]!r} must be an absolute path (init scripts run with a bare PATH)")
    for key in ("working_directory", "pidfile", "log_file", "events_file"):
        if key in data:
            if not os.path.isabs(data[key]):
                raise fail(key, f"{data[key]!r} must be an absolute path")
            values[key] = os.path.normpath(data[key])
    for key in ("description", "user", "preset"):
        if key in data:
            values[key] = data[key]
    if values.get("preset") not in (None, *PRESETS):
        raise fail("preset", f"unknown preset {values['preset']!r}; known: {', '.join(PRESETS)}")
    if "environment" in data:
        env = data["environment"]
        for key, value in env.items():
            if not isinstance(value, str) or "=" in key or not key:
                raise fail("environment", f"{key!r} must map a name without '=' to a string")
        values["environment"] = tuple(sorted(env.items()))
    if "stop" in data:
        try:
            values["stop"] = parse_schedule(str(data["stop"]))
        except ScheduleError as exc:
            raise fail("stop", f"{data['stop']!r}: {exc}") from None
    if "reload" in data:
        values["reload"], values["reload_signal"] = _reload(data["reload"], lambda r: fail("reload", r))
    if "restart" in data:
        if data["restart"] not in RESTART_POLICIES:
            raise fail("restart", f"{data['restart']!r} is not one of {', '.join(RESTART_POLICIES)}")
        values["restart"] = data["restart"]
    if "ready" in data:
        # content a supervisor already accepted needs no URL parsing (urllib) again
        values["ready"] = data["ready"] if validated else _ready_url(data["ready"], lambda r: fail("ready", r))
    for key in ("ready_timeout", "start_seconds", "check_timeout", "min_uptime", "backoff_initial",
                "backoff_max", "give_up_window", "give_up_cooldown"):
        if key in data:
            if data[key] < 0:
                raise fail(key, f"{data[key]!r} must not be negative")
            values[key] = float(data[key])
    for key in ("log_max_bytes", "log_backups", "give_up_after"):
        if key in data:
            if data[key] < 0:
                raise fail(key, f"{data[key]!r} must not be negative")
            values[key] = data[key]
    if "watch" in data:
        values["watch"] = _string_list(data["watch"], lambda r: fail("watch", r), allow_empty=True)
        for item in values["watch"]:
            if not os.path.isabs(item):
                raise fail("watch", f"{item!r} must be an absolute path")
    if "check" in data:
        values["check"] = _string_list(data["check"], lambda r: fail("check", r), allow_empty=True)
    values.setdefault("pidfile", f"/run/{name}.pid")
    values.setdefault("log_file", f"/var/log/{name}.log")
    values.setdefault("events_file", f"/var/log/svctl/{name}.json")
    return ServiceConfig(name=name, path=path, **values)


def _string_list(value: list, fail, *, allow_empty: bool) -> tuple[str, ...]:
    if not allow_empty and not value:
        raise fail("must not be empty")
    for item in value:
        if not isinstance(item, str) or not item:
            raise fail(f"every item must be a non-empty string, got {item!r}")
    return tuple(value)


def _reload(value: str, fail) -> tuple[str, int | None]:
    if value == "restart":
        return value, None
    try:
        number = parse_signal(value)
    except ValueError as exc:
        raise fail(f"{value!r}: {exc}; or use 'restart'") from None
    return value, number


def _ready_url(value: str, fail) -> str:
    if not value.startswith(READY_SCHEMES):
        raise fail(f"{value!r} must start with {', '.join(READY_SCHEMES)}")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise fail(f"{value!r}: {exc} (IPv6 literals go in brackets: tcp://[::1]:9443)") from None
    if not parts.hostname or (value.startswith("tcp://") and port is None):
        raise fail(f"{value!r} needs a host and, for tcp://, a port")
    return value


def ensure_paths_exist(config: ServiceConfig) -> None:
    """Checks done before anything is forked: program installed (5), working directory present (6)."""
    program = config.command[0]
    if not os.path.isfile(program) or not os.access(program, os.X_OK):
        raise SvctlError(f"{config.path}: command: {program} is not installed (not an executable file)",
                         Exit.NOT_INSTALLED)
    if not os.path.isdir(config.working_directory):
        raise ConfigError(f"{config.path}: working_directory: {config.working_directory} does not exist")
