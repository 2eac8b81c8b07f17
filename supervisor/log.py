"""The supervisor's own lifecycle events: structlog JSON lines in events_file.

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

import structlog

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


class _Sink:
    """What structlog writes rendered lines to: the EventLog's current descriptor."""

    def __init__(self, owner: EventLog) -> None:
        self.owner = owner

    def msg(self, message: str) -> None:
        self.owner.write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


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
        self._json = structlog.wrap_logger(
            _Sink(self),
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        structlog.processors.JSONRenderer(sort_keys=False)],
        )
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
            getattr(self._json, level)(name, service=self.service, **fields)
        except Exception as exc:  # a value JSON can't render: say so rather than lose the event
            self.faults.fallback(f"{name} {fields!r} (not rendered: {exc})")
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
