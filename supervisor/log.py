"""The supervisor's own lifecycle events: JSON lines in events_file, in structlog's format.

Each line is what structlog's ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)`` and
``JSONRenderer`` make of ``logger.LEVEL(event, service=NAME, **fields)``: the fields, then
``event``, ``level`` and ``timestamp``. It is written here with one ``jsontext.dumps`` (json's C encoder): importing
structlog costs the supervisor 12 MB of PSS and 40-90 ms at every start (its package imports
asyncio), four times the interpreter itself. tests/unit/test_event_format.py holds the two formats equal.

In the foreground on a terminal they are also rendered for humans on stderr. Configured only inside
the supervisor (after daemonizing, so no file descriptor is lost), never on the status path.

The file is opened through userfiles (it may sit in a directory the service user controls: then
it is opened with that user's rights, and no planted symlink can make root append elsewhere),
created 0600 because events quote check output, and written with plain ``os.write`` on a
descriptor: a failed write (full disk) costs that line, never the supervisor, and the line goes to
stderr and syslog instead (faults.Faults.fallback). Every value of the service's ``environment``
table (4 characters or more) is replaced by ``***`` in every event, once, here.
"""

from __future__ import annotations

import os
import time

from supervisor import jsontext
from supervisor.faults import RETRY_SECONDS, Faults, problem_text
from supervisor.unix import userfiles

EVENTS_MODE = 0o600
SECRET_MIN_LENGTH = 4  # shorter values ("1", "yes") would blank out half of every line


def redact(value, secrets: tuple[str, ...]):
    """VALUE with every secret in its strings (also inside lists and dicts) replaced by ***."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {key: redact(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets) for item in value]
    return value


def secrets_of(environment) -> tuple[str, ...]:
    """The values to redact, longest first (a secret that contains another goes as a whole)."""
    values = {value for _name, value in environment if len(value) >= SECRET_MIN_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def json_line(name: str, level: str, fields: dict, now: float) -> str:
    """One event as structlog's JSONRenderer writes it; a value JSON can't render is its repr."""
    seconds = int(now)
    microseconds = round((now - seconds) * 1_000_000)  # as datetime.fromtimestamp rounds
    if microseconds == 1_000_000:
        seconds, microseconds = seconds + 1, 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if microseconds:  # datetime.isoformat() leaves out a zero fraction, and so does structlog
        stamp += f".{microseconds:06d}"
    return jsontext.dumps({**fields, "event": name, "level": level, "timestamp": stamp + "Z"}, default=repr)


def console_line(level: str, name: str, fields: dict) -> None:
    """`12:00:01 info     spawned attempt=initial pid=42 service=web` on stderr. Plain formatting,
    not structlog's ConsoleRenderer: under `svctl up` every event of every service is one, and
    the renderer cost 2-3 ms per crash-restart, before the respawn. Control characters are shown
    escaped: values quote what a service user controls (a check's output, an exit reason)."""
    from supervisor.errors import printable

    if "output" in fields:  # a check's output may print secrets (--show-config): the 0600 events file has it
        fields = {**fields, "output": f"({len(fields['output'] or ())} lines, in the events file)"}
    words = " ".join(f"{key}={shown!r}" if " " in (shown := printable(str(value))) or not shown else f"{key}={shown}"
                     for key, value in fields.items())  # printable: a check's output may hold escapes
    try:
        os.write(2, f"{time.strftime('%H:%M:%S')} {level:<8} {name:<24} {words}".rstrip().encode("utf-8", "replace")
                 + b"\n")
    except OSError:
        pass  # the terminal went away; the events file has it


class EventLog:
    def __init__(self, path: str, service: str, console: bool, secrets: tuple[str, ...] = (),
                 faults: Faults | None = None, name_on_console: bool = False) -> None:
        """NAME_ON_CONSOLE: each console line says which service (`svctl up` shows many)."""
        self.path, self.service, self.secrets = path, service, secrets
        self.console_fields = {"service": service} if name_on_console else {}
        self.faults = faults if faults is not None else Faults(service)
        self.faults.log = self
        self.fd = -1
        self.retry_at = 0.0
        self.writing = False
        self.console = console  # one plain line per event on stderr, for a human watching
        self.reopen()

    def reopen(self) -> str | None:
        """Open the file again (logrotate); None, or the problem (the old descriptor then stays)."""
        try:
            fd = userfiles.open_append(self.path, EVENTS_MODE, tighten=True)
        except OSError as exc:
            self.retry_at = time.monotonic() + RETRY_SECONDS
            problem = problem_text("events file", self.path, exc)
            if self.fd >= 0:
                problem += "; still writing to the file opened before"
                self.faults.report("events reopen", problem)
            else:
                self.faults.report("events", problem)
            return problem
        old, self.fd = self.fd, fd
        if old >= 0:
            os.close(old)
        self.faults.report("events reopen", None)
        if not self.writing:  # else write_line clears it once the line is out
            self.faults.report("events", None)
        return None

    def event(self, name: str, level: str = "info", **fields) -> None:
        """Never raises: an event that can't be written goes to stderr and syslog instead."""
        if self.secrets:
            fields = redact(fields, self.secrets)
        try:
            line = json_line(name, level, {"service": self.service, **fields}, time.time())
        except Exception as exc:  # a value JSON can't render: say so rather than lose the event
            self.faults.fallback(f"{name} {fields!r} (not rendered: {exc})")
        else:
            self.write_line(line)
        if self.console:
            console_line(level, name, {**self.console_fields, **fields})

    def write_line(self, line: str) -> None:
        if self.writing:  # an event about a problem met while writing this very line
            return self.faults.fallback(line)
        self.writing = True
        try:
            written = self._write(line)
        finally:
            self.writing = False
        if not written:
            self.faults.fallback(line)
        elif "events" in self.faults.current:
            self.faults.report("events", None)  # the file works again (an event, so after `writing`)

    def _write(self, line: str) -> bool:
        if self.fd < 0 and time.monotonic() >= self.retry_at:
            self.reopen()
        if self.fd < 0:
            return False
        data = (line + "\n").encode("utf-8", "replace")
        try:
            done = os.write(self.fd, data)
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError as exc:
            self.faults.report("events", problem_text("events file", self.path, exc) + "; events go to syslog")
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
