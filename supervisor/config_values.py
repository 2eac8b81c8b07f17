"""Validators for service-file values, shared by config.py (the core keys) and settings.py.

Each takes the value and FAIL, a function turning a reason into the ConfigError that names the
file and the key; each returns the value (normalised) or raises what FAIL returns.
"""

from __future__ import annotations

import os

MAX_PATH = 4095  # bytes: PATH_MAX less the NUL
MAX_STRING = 128 * 1024 - 1  # bytes: the kernel's limit for one argument or environment string
MAX_COUNT = 10**6  # give_up_after, health_failures
MAX_ITEMS = 4096  # command, check, watch and environment entries
READY_SCHEMES = ("http://", "https://", "tcp://")


def shown(value: object) -> str:
    """A value for an error message: repr, clipped (a 1 MiB string makes no useful line)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_strings(value: object, fail) -> None:
    """No NUL anywhere (the kernel would cut the string there, or Python raise), none too long."""
    if isinstance(value, str):
        if "\0" in value:
            raise fail(f"{shown(value)} contains a NUL character")
        if len(value) > MAX_STRING // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING:
            raise fail(f"a string of {len(value)} characters; at most {MAX_STRING} bytes")
    elif isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise fail(f"{len(value)} items; at most {MAX_ITEMS}")
        for item in value:
            check_strings(item, fail)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_strings(key, fail)
            check_strings(item, fail)


def path(value: str, fail) -> str:
    if not os.path.isabs(value):
        raise fail(f"{shown(value)} must be an absolute path")
    if len(value) > MAX_PATH // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise fail(f"a path of {len(value)} characters; at most {MAX_PATH} bytes")
    return value


def bounded(value: int | float, most: int, unit: str, fail) -> int | float:
    """0 <= VALUE <= MOST; also refuses nan and inf (a comparison with nan is always False)."""
    if not 0 <= value <= most:
        if value != value or value in (float("inf"), float("-inf")):
            raise fail(f"{value!r} is not a finite number")
        if value < 0:
            raise fail(f"{shown(value)} must not be negative")
        raise fail(f"{shown(value)} is too large (at most {most}{' ' + unit if unit else ''})")
    return value


def user(value: str, fail, look_up: bool) -> str:
    if not value:
        raise fail("must not be empty (leave it out to run as the supervisor's user)")
    if look_up:
        import pwd

        try:
            pwd.getpwnam(value)
        except KeyError:
            raise fail(f"no such user {shown(value)}") from None
    return value


def string_list(value: list, fail, *, allow_empty: bool) -> tuple[str, ...]:
    if not allow_empty and not value:
        raise fail("must not be empty")
    for item in value:
        if not isinstance(item, str) or not item:
            raise fail(f"every item must be a non-empty string, got {shown(item)}")
    return tuple(value)


def ready_url(value: str, fail) -> str:
    if not value.startswith(READY_SCHEMES):
        raise fail(f"{value!r} must start with {', '.join(READY_SCHEMES)}")
    # the probe sends the URL as written: a space, a control character or a non-ASCII one makes a
    # request line no server accepts (a healthy service failing every probe, restarted forever)
    bad = next((index for index, char in enumerate(value) if not "!" <= char <= "~"), None)
    if bad is not None:
        raise fail(f"character {bad + 1} ({ascii(value[bad])}): whitespace, control characters and non-ASCII "
                   "can't be sent in a URL; percent-encode them (a space is %20, a letter its UTF-8 bytes: "
                   "%C3%A9; a host name in punycode)")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise fail(f"{value!r}: {exc} (IPv6 literals go in brackets: tcp://[::1]:9443)") from None
    if not parts.hostname or (value.startswith("tcp://") and port is None):
        raise fail(f"{value!r} needs a host and, for tcp://, a port")
    if "]" in parts.netloc and parts.netloc.partition("]")[2][:1] not in ("", ":"):
        raise fail(f"{shown(value)}: nothing may follow the bracketed address but :PORT")
    if "@" in parts.netloc:  # the probe sends no credentials: a user:password@ would be silently dropped
        raise fail("user information (user:password@) is not supported (no auth: the probe sends no "
                   "credentials); a token in the query string is sent (?token=...)")
    if "#" in value:  # never sent to a server: a probe of it would check something else than written
        raise fail(f"{shown(value)}: a fragment (#...) is not supported (it is never sent to the server)")
    return value
