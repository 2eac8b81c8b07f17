"""The service file's keys beyond the init.d script's: dependencies, liveness, an environment
file, process settings and failure hooks. config.py validates the core keys and calls `validate`.

Values are checked here for what a file alone can tell (types, bounds, names that exist);
whether the services named by `requires` exist and form no cycle needs the whole config dir, so
it is checked where services are loaded together (supervisor/depgraph.py).
"""

from __future__ import annotations

import os

from supervisor import config_values as v
from supervisor.core.schedule import MAX_SECONDS

MIN_HEALTH_INTERVAL = 0.1  # a probe loop must not spin
NICE_RANGE = (-20, 19)
INFINITY_WORDS = ("infinity", "unlimited")
MAX_LIMIT = (1 << 63) - 1

# setrlimit names as systemd spells them without "Limit" (LimitNOFILE= <-> nofile = ...), each
# with the resource module's constant name; the child looks the constant up just before exec.
LIMITS = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

# field name -> default (added to config.FIELDS)
FIELDS: dict = {
    "requires": (),  # tuple of service names
    "health": None, "health_interval": 30.0, "health_timeout": 5.0, "health_failures": 3,
    "environment_file": "", "environment_file_optional": False,  # the path, and whether "-" allowed it missing
    "umask": None, "nice": None,  # int or None (None: inherited)
    "groups": (),  # supplementary group names, added to the user's own
    "limits": (),  # tuple of (name, soft, hard); -1 means infinity
    "on_failure": (), "on_failure_timeout": 30.0,
}

_NUMBER = ((int, float), "a number of seconds")
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "requires": ((list,), "a list of service names"),
    "health": ((str,), "an http://, https:// or tcp:// URL"),
    "health_interval": _NUMBER,
    "health_timeout": _NUMBER,
    "health_failures": ((int,), "a count"),
    "environment_file": ((str,), "an absolute path (\"-/path\": may be missing)"),
    # a string only: TOML reads umask = 22 as decimal twenty-two (0026), never what was meant
    "umask": ((str,), "a string of octal digits (a TOML number is decimal): umask = \"0022\""),
    "nice": ((int,), "a niceness from -20 to 19"),
    "groups": ((list,), "a list of group names"),
    "limits": ((dict,), "a table of setrlimit names (nofile, core, nproc, ...)"),
    "on_failure": ((list,), "a command (a list of strings)"),
    "on_failure_timeout": _NUMBER,
}


def validate(name: str, data: dict, values: dict, fail, validated: bool) -> None:
    """Fill VALUES from DATA for this module's keys. FAIL(key, reason) -> ConfigError.
    VALIDATED: content a supervisor already accepted, so no URL parsing and no group lookups."""
    if "requires" in data:
        values["requires"] = _requires(name, data["requires"], lambda r: fail("requires", r))
    if "health" in data:
        values["health"] = data["health"] if validated else v.ready_url(data["health"], lambda r: fail("health", r))
    for key, least in (("health_interval", MIN_HEALTH_INTERVAL), ("health_timeout", MIN_HEALTH_INTERVAL),
                       ("on_failure_timeout", MIN_HEALTH_INTERVAL)):
        if key in data:
            seconds = float(v.bounded(data[key], MAX_SECONDS, "s, 24 days", lambda r, key=key: fail(key, r)))
            if seconds < least:
                raise fail(key, f"{v.shown(data[key])} is too short (at least {least} s)")
            values[key] = seconds
    if "health_failures" in data:
        count = v.bounded(data["health_failures"], v.MAX_COUNT, "", lambda r: fail("health_failures", r))
        if count < 1:
            raise fail("health_failures", "must be at least 1")
        values["health_failures"] = count
    if "environment_file" in data:
        given = data["environment_file"]
        optional = given.startswith("-")
        values["environment_file"] = os.path.normpath(
            v.path(given[1:] if optional else given, lambda r: fail("environment_file", r)))
        values["environment_file_optional"] = optional
    if "umask" in data:
        values["umask"] = _umask(data["umask"], lambda r: fail("umask", r))
    if "nice" in data:
        low, high = NICE_RANGE
        if not low <= data["nice"] <= high:
            raise fail("nice", f"{data['nice']} is not from {low} to {high}")
        values["nice"] = data["nice"]
    if "groups" in data:
        values["groups"] = _groups(data["groups"], lambda r: fail("groups", r), look_up=not validated)
    if "limits" in data:
        values["limits"] = _limits(data["limits"], lambda r: fail("limits", r))
    if "on_failure" in data:
        values["on_failure"] = v.string_list(data["on_failure"], lambda r: fail("on_failure", r), allow_empty=True)
        if values["on_failure"]:  # absolute like command's: run by root, so no PATH lookup
            v.path(values["on_failure"][0], lambda r: fail("on_failure", r))


def _requires(name: str, value: list, fail) -> tuple[str, ...]:
    from supervisor.errors import SvctlError
    from supervisor.names import validate_name

    seen: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise fail(f"every item must be a service name, got {v.shown(item)}")
        try:
            validate_name(item)
        except SvctlError:
            raise fail(f"{v.shown(item)} is not a service name (letters, digits, '_', '.', '-')") from None
        if item == name:
            raise fail(f"{item!r} requires itself")
        if item in seen:
            raise fail(f"{item!r} is listed twice")
        seen.append(item)
    return tuple(seen)


def _umask(value: str, fail) -> int:
    if not isinstance(value, str):  # (the type check refuses it first; content a supervisor kept too)
        raise fail(f"{v.shown(value)} is a number, read as decimal; write octal digits as a string: umask = \"0022\"")
    if not (1 <= len(value) <= 4 and all(c in "01234567" for c in value)):
        raise fail(f"{v.shown(value)} is not an octal umask such as \"0022\"")
    value = int(value, 8)
    if not 0 <= value <= 0o777:
        raise fail(f"{value:#o} is not a umask (0000 to 0777)")
    return value


def _groups(value: list, fail, look_up: bool) -> tuple[str, ...]:
    groups = v.string_list(value, fail, allow_empty=True)
    for index, group in enumerate(groups):
        if group in groups[:index]:  # as requires: a repeat is a typo for another name
            raise fail(f"{group!r} is listed twice")
    if look_up:
        import grp

        for group in groups:
            try:
                grp.getgrnam(group)
            except KeyError:
                raise fail(f"no such group {v.shown(group)}") from None
    return groups


def _limits(value: dict, fail) -> tuple[tuple[str, int, int], ...]:
    limits = []
    for key, item in sorted(value.items()):
        if key not in LIMITS:
            raise fail(f"unknown limit {v.shown(key)}; known: {', '.join(LIMITS)}")
        pair = item if isinstance(item, list) else [item, item]
        if len(pair) != 2:
            raise fail(f"{key}: {v.shown(item)}: one value, or [soft, hard]")
        soft, hard = (_limit_value(key, one, fail) for one in pair)
        if hard != -1 and (soft == -1 or soft > hard):
            raise fail(f"{key}: the soft limit {pair[0]!r} is above the hard limit {pair[1]!r}")
        limits.append((key, soft, hard))
    return tuple(limits)


def _limit_value(key: str, value: object, fail) -> int:
    if isinstance(value, str) and value in INFINITY_WORDS:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise fail(f"{key}: {v.shown(value)} is not a number from 0 to 2**63-1, \"infinity\" or \"unlimited\"")
    return value


# systemd applies a unit's Limit*=, UMask= and Nice= to ExecStart, i.e. to `svctl run` itself, not
# only to the service. These limits cannot hurt the supervisor (it dumps no core, locks no memory,
# queues no messages, takes no locks or real-time priority; root is exempt from nproc), so the unit
# carries them; the others would bound the supervisor (cpu: SIGXCPU kills it; fsize: its log and
# events writes; as/data/rss/stack: its own memory; a small nofile: it could not spawn), so the
# unit names them in a comment only and svctl applies them to the service alone (spawn.py).
HARMLESS_LIMITS = frozenset({"core", "locks", "memlock", "msgqueue", "nice", "nproc", "rtprio", "rttime",
                             "sigpending"})
SUPERVISOR_NOFILE = 1024  # at least this many open files: the supervisor's fds, the service's pipes


def unit_limit_is_harmless(key: str, soft: int) -> bool:
    """Whether LimitKEY= may bound `svctl run` itself as well as the service."""
    if key == "nofile":
        return soft == -1 or soft >= SUPERVISOR_NOFILE
    return key in HARMLESS_LIMITS


def systemd_directives(config) -> list[str]:
    """The unit lines that say the same as the process settings; lines starting with "#" are
    comments (settings the unit must not apply to svctl itself). The supervisor applies every
    setting to the service itself; the unit shows them to systemctl and to the reader.

    UMask= is kept: the supervisor sets its own umask to 0022 first thing (launch.supervise), so
    it bounds only what systemd creates for the unit. Nice= is kept: a supervisor as nice as its
    service competes for the CPU no more than the service does, and its hooks and checks (which
    inherit it) run at the service's niceness too."""
    lines = []
    if config.umask is not None:
        lines.append(f"UMask={config.umask:04o}")
    if config.nice is not None:
        lines.append(f"Nice={config.nice}")
    if config.groups:
        lines.append("SupplementaryGroups=" + " ".join(config.groups))
    for key, soft, hard in config.limits:
        shown = ["infinity" if one == -1 else str(one) for one in (soft, hard)]
        line = f"Limit{key.upper()}={shown[0] if soft == hard else ':'.join(shown)}"
        if unit_limit_is_harmless(key, soft):
            lines.append(line)
        else:
            lines.append(f"# {line}: not set here, systemd would apply it to svctl run itself; "
                         "svctl applies it to the service only")
    return lines
