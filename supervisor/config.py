"""Service definitions: ``/etc/svctl/NAME.toml`` -> a frozen ServiceConfig.

Every key is validated once, here; an unknown key, a wrong type, a bad or out-of-bounds value is a
ConfigError naming the file and the key (exit 6). Defaults live in FIELDS and in etc/example.toml,
which documents every key and its bounds.

The file tells root what to run, so it is used only if nobody but root could have written it: the
file and every directory on its path (supervisor/unix/trustchain.py). It is read through one fd,
non-blocking (a FIFO must not hang `svctl`), and judged by fstat of that fd.
"""

from __future__ import annotations

import os

from supervisor.core.record import Record
from supervisor.core.schedule import MAX_SECONDS, ScheduleError, format_schedule, parse_schedule
from supervisor.core.signals import parse_signal
from supervisor import config_values as v
from supervisor import settings
from supervisor.errors import ConfigError, Exit, SvctlError
from supervisor.names import validate_name
from supervisor.presets import NAMES
from supervisor.unix.trustchain import TooLarge, Untrusted, check_chain, file_problem, read_regular_file, walk

RESTART_POLICIES = ("always", "on-failure", "never")
PRESETS = NAMES  # supervisor/presets: the registry (importing it loads no preset)

# Bounds (documented in etc/example.toml). Seconds: MAX_SECONDS (24 days) is the longest the
# supervisor's event loop can wait in one call; anything sane is far below.
MAX_FILE_BYTES = 1 << 20  # a service file is a screenful of TOML
MAX_LOG_BYTES = 1 << 40
MAX_LOG_BACKUPS = 1000  # every rotation renames each backup
MAX_DESCRIPTION = 4096  # characters


DEFAULT_STOP = parse_schedule("TERM/30/KILL/5")


# field name -> default; `name`, `path` and `command` have none. A record (core/record.py), not a
# namedtuple or a dataclass: `svctl status` must not pay for importing collections or dataclasses.
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
    **settings.FIELDS,  # requires, health, environment_file, process settings, on_failure
}


class ServiceConfig(Record):
    """One validated service definition (immutable)."""

    __slots__ = tuple(FIELDS)
    defaults = dict(list(FIELDS.items())[3:])

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
    **settings.KEYS,
}


def service_path(name: str, directory: str) -> str:
    return os.path.join(directory, validate_name(name) + ".toml")


def load(name: str, directory: str, state: dict | None = None, for_display: bool = False) -> ServiceConfig:
    """Read and validate ``DIRECTORY/NAME.toml``, if it can be trusted.

    STATE is a running supervisor's trusted state.json: when the file is unchanged since the
    supervisor recorded it (same inode, size, mtime and ctime) and still trusted (its path walked
    again: a few lstat calls), its recorded content is used and the TOML parser is not even
    imported; that is most of what keeps `svctl status` fast. A record published without its
    `environment` values (state.json is world-readable: docs/security.md S1) is "redacted" and
    serves only FOR_DISPLAY (status); anything that may start the service parses the file.
    """
    path = service_path(name, directory)
    reason, info, resolved = walk(path)
    if reason:
        raise untrusted(path, reason)
    record = state.get("config") if isinstance(state, dict) else None
    if (info is not None and isinstance(record, dict) and record.get("path") == path
            and isinstance(record.get("data"), dict) and record.get("signature") == _signature(info)
            and (for_display or not record.get("redacted")) and file_problem(info, resolved) is None):
        if not record.get("redacted"):
            _READ[path] = {"path": path, "signature": record["signature"], "data": record["data"]}
        return from_mapping(name, path, record["data"], validated=True)
    data = _read_trusted(path)
    if info is not None and _signature(info) == signature(path):  # unchanged while we read it
        _READ[path] = {"path": path, "signature": _signature(info), "data": data}
    return from_mapping(name, path, data)


# What `load` last read at each path, as `record` gives it: the supervisor that `svctl start`
# forks inherits it and publishes it without parsing the file a second time (tomllib: 10 ms).
_READ: dict[str, dict] = {}


def untrusted(path: str, reason: str) -> ConfigError:
    return ConfigError(f"{path}: refusing this service definition, root would run what it says: {reason}")


def _signature(info: os.stat_result) -> list[int]:
    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def signature(path: str) -> list[int] | None:
    """What changes whenever the file's content may have: inode, size, mtime and ctime."""
    try:
        return _signature(os.stat(path))
    except OSError:
        return None


def read_mapping(path: str) -> dict:
    """The parsed content of a service file, after the trust checks of its path."""
    reason = walk(path)[0]
    if reason:
        raise untrusted(path, reason)
    return _read_trusted(path)


def _read_trusted(path: str) -> dict:
    """Read PATH (its directories already checked) through one fd, judged by fstat of that fd."""
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such service definition (create it, or run 'svctl init')") from None
    except Untrusted as exc:
        raise untrusted(path, str(exc)) from None
    except TooLarge:
        raise ConfigError(f"{path}: larger than 1 MiB, the most a service definition may be") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_toml(path, raw)


# Set by the verbs that fork supervisors (commands/lifecycle.py): a supervisor lives for months
# and keeps every module its process ever imported. tomllib (with typing, datetime, string) is
# 1.1 MB of it, needed for one parse at start: so the parse runs in a child that exits.
PARSE_APART = False


def parse_toml(path: str, raw: bytes) -> dict:
    if PARSE_APART:
        from supervisor.unix.apart import ApartFailed, run_apart

        try:  # a TOML date, which JSON does not carry, fails there: parsed here then
            data = run_apart(_parse, path, raw, passes=(ConfigError,))
            if isinstance(data, dict):
                return data
        except ApartFailed:
            pass
    return _parse(path, raw)


def _parse(path: str, raw: bytes) -> dict:
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per level: `a = [[[[...` a few thousand deep
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def parse(name: str, path: str, raw: bytes) -> ServiceConfig:
    return from_mapping(name, path, parse_toml(path, raw))


def record(config: ServiceConfig) -> dict | None:
    """What a supervisor puts in state.json so that `load` can skip parsing an unchanged file."""
    before = signature(config.path)
    known = _READ.get(config.path)
    if known is not None and before is not None and known["signature"] == before:
        return dict(known)
    try:
        data = read_mapping(config.path)
    except ConfigError:
        return None
    if before is None or before != signature(config.path):
        return None  # changed while we read it: no cache rather than a wrong one
    return {"path": config.path, "signature": before, "data": data}


def from_mapping(name: str, path: str, data: dict, validated: bool = False) -> ServiceConfig:
    """VALIDATED: content a supervisor already accepted (state.json): no URL parsing, no user lookup."""
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {reason}")

    for key, value in data.items():
        if key not in KEYS:
            shown = key if len(key) <= 64 and key.isprintable() else v.shown(key)
            raise fail(shown, "unknown key (see etc/example.toml for the keys svctl knows)")
        types, description = KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise fail(key, f"expected {description}, got {type(value).__name__} {v.shown(value)}")
        v.check_strings(value, lambda reason, key=key: fail(key, reason))
    values: dict = {}
    if "command" not in data:
        raise fail("command", "missing: the service needs a command to run")
    values["command"] = v.string_list(data["command"], lambda r: fail("command", r), allow_empty=False)
    v.path(values["command"][0], lambda r: fail("command", r + " (init scripts run with a bare PATH)"))
    for key in ("working_directory", "pidfile", "log_file", "events_file"):
        if key in data:
            values[key] = os.path.normpath(v.path(data[key], lambda r, key=key: fail(key, r)))
    for key in ("description", "user", "preset"):
        if key in data:
            values[key] = data[key]
    if len(values.get("description", "")) > MAX_DESCRIPTION:
        raise fail("description", f"{len(values['description'])} characters; at most {MAX_DESCRIPTION}")
    if "user" in data:
        values["user"] = v.user(data["user"], lambda r: fail("user", r), look_up=not validated)
    if values.get("preset") not in (None, *PRESETS):
        raise fail("preset", f"unknown preset {v.shown(values['preset'])}; known: {', '.join(PRESETS)}")
    if "environment" in data:
        env = data["environment"]
        if len(env) > v.MAX_ITEMS:
            raise fail("environment", f"{len(env)} variables; at most {v.MAX_ITEMS}")
        for key, value in env.items():
            if not isinstance(value, str) or "=" in key or not key:
                raise fail("environment", f"{v.shown(key)} must map a name without '=' to a string")
        values["environment"] = tuple(sorted(env.items()))
    if "stop" in data:
        try:
            values["stop"] = parse_schedule(str(data["stop"]))
        except ScheduleError as exc:
            raise fail("stop", f"{v.shown(data['stop'])}: {exc}") from None
    if "reload" in data:
        values["reload"], values["reload_signal"] = _reload(data["reload"], lambda r: fail("reload", r))
    if "restart" in data:
        if data["restart"] not in RESTART_POLICIES:
            raise fail("restart", f"{v.shown(data['restart'])} is not one of {', '.join(RESTART_POLICIES)}")
        values["restart"] = data["restart"]
    if "ready" in data:
        # content a supervisor already accepted needs no URL parsing (urllib) again
        values["ready"] = data["ready"] if validated else v.ready_url(data["ready"], lambda r: fail("ready", r))
    for key in ("ready_timeout", "start_seconds", "check_timeout", "min_uptime", "backoff_initial",
                "backoff_max", "give_up_window", "give_up_cooldown"):
        if key in data:
            values[key] = float(v.bounded(data[key], MAX_SECONDS, "s, 24 days", lambda r, key=key: fail(key, r)))
    for key, most in (("log_max_bytes", MAX_LOG_BYTES), ("log_backups", MAX_LOG_BACKUPS),
                      ("give_up_after", v.MAX_COUNT)):
        if key in data:
            values[key] = v.bounded(data[key], most, "", lambda r, key=key: fail(key, r))
    if "watch" in data:
        values["watch"] = v.string_list(data["watch"], lambda r: fail("watch", r), allow_empty=True)
        for item in values["watch"]:
            v.path(item, lambda r: fail("watch", r))
    if "check" in data:
        values["check"] = v.string_list(data["check"], lambda r: fail("check", r), allow_empty=True)
        if values["check"]:  # absolute like command: a PATH lookup as root could not be checked
            v.path(values["check"][0], lambda r: fail("check", r))
    settings.validate(name, data, values, fail, validated)
    values.setdefault("pidfile", f"/run/{name}.pid")
    values.setdefault("log_file", f"/var/log/{name}.log")
    values.setdefault("events_file", f"/var/log/svctl/{name}.json")
    return ServiceConfig(name=name, path=path, **values)


def _reload(value: str, fail) -> tuple[str, int | None]:
    if value == "restart":
        return value, None
    try:
        number = parse_signal(value)
    except ValueError as exc:
        raise fail(f"{value!r}: {exc}; or use 'restart'") from None
    return value, number


def ensure_paths_exist(config: ServiceConfig) -> None:
    """Checks done before anything is forked: program and on_failure hook installed (5), working
    directory present (6), for a root service, programs nobody else could have changed (6); the
    environment file readable, trusted and valid, and the process settings applicable (6): a start
    refused here is one line before detaching, instead of a crash loop in the background."""
    # on_failure too: a missing hook would otherwise be found only when the service fails
    for key, argv in (("command", config.command), ("on_failure", config.on_failure)):
        if argv and (not os.path.isfile(argv[0]) or not os.access(argv[0], os.X_OK)):
            raise SvctlError(f"{config.path}: {key}: {argv[0]} is not installed (not an executable file)",
                             Exit.NOT_INSTALLED)
    if not os.path.isdir(config.working_directory):
        raise ConfigError(f"{config.path}: working_directory: {config.working_directory} does not exist")
    ensure_programs_trusted(config)
    from supervisor.unix import envfile, spawn

    try:
        from_file = envfile.read(config)
    except envfile.EnvFileUnusable as exc:
        raise ConfigError(f"{config.path}: {exc}") from None
    spawn.user_environment(config, from_file)  # groups, limits, nice: SvctlError (6) naming the key


def runs_as_root(config: ServiceConfig) -> bool:
    """Whether the service (and its check) run with uid 0: user unset means the supervisor's user."""
    return user_is_root(config.user)


def user_is_root(service_user: str | None) -> bool:
    """Whether SERVICE_USER has uid 0 (None: the supervisor's user, as the service then runs)."""
    if service_user is None:
        return os.geteuid() == 0
    import pwd

    try:
        return pwd.getpwnam(service_user).pw_uid == 0
    except KeyError:
        return service_user == "root"


def ensure_programs_trusted(config: ServiceConfig) -> None:
    """A root service runs command[0], check[0] and on_failure[0] as root: whoever could replace one,
    or a directory on its path, would run code as root. Refused (exit 6), naming the key and fix.
    A program that does not exist is left to the caller (exit 5, or the check's own failure)."""
    if not runs_as_root(config):
        return
    for key, argv in (("command", config.command), ("check", config.check), ("on_failure", config.on_failure)):
        if argv:
            reason = check_chain(argv[0])
            if reason:
                raise ConfigError(f"{config.path}: {key}: refusing to run {argv[0]} as root: {reason}")
