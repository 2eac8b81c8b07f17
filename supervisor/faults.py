"""Keeping the supervisor alive when the machine around it fails (issue 10 item 8).

A full disk, the fd limit, a lost directory or a file the service user planted must never end
supervision. So the loop runs every handler under a guard (loop.py, driver.py), the adapters report what
is wrong here instead of raising, and what is wrong *now* is a short, bounded list of problems
that state.json publishes (``"problems"``) for `svctl status`. Each new problem is also an event;
when the events file itself can't be written, the line goes to stderr and syslog, rate-limited.

The loop (loop.py) runs handlers and timers under a guard, and a descriptor whose handler failed is
left alone for PAUSE_SECONDS, so that a failure that lasts (accept at the fd limit) can't spin the
loop at full speed; Guard.guarded does the same for a driver's adapters and effects.
"""

from __future__ import annotations

import os
import sys
import time

MAX_PROBLEMS = 8
MAX_TEXT = 240
FALLBACK_BURST = 10  # lines per FALLBACK_WINDOW on stderr and syslog when the events file fails
FALLBACK_WINDOW = 60.0
RETRY_SECONDS = 5.0  # how soon a failed open, reopen or rotation is tried again
PAUSE_SECONDS = 0.5  # a descriptor whose handler failed is watched again after this


def clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """One line for an error: an OSError's file and reason, anything else its type and message."""
    if isinstance(exc, OSError):
        from supervisor.unix.userfiles import describe as describe_os_error

        return describe_os_error(exc)
    return f"{type(exc).__name__}: {exc}"


def problem_text(what: str, path: str, exc: BaseException) -> str:
    """'log file /x: reason', without naming the path twice when the reason names it already."""
    reason = describe(exc)
    return f"{what}: {reason}" if path in reason else f"{what} {path}: {reason}"


class Faults:
    """The supervisor's current problems, by area ("log", "events", "state", ...)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.current: dict[str, str] = {}
        self.log = None  # the EventLog, which attaches itself once it exists
        self.changed = False  # the problems changed since state.json was last written
        self.urgent = False  # and a new one is among them (not only a counter that moved)
        self.errors = 0
        self._window_start = -FALLBACK_WINDOW
        self._window_lines = 0
        self._suppressed = 0
        self._syslog = None

    def report(self, area: str, problem: str | None, quiet: bool = False) -> None:
        """PROBLEM is what is wrong in AREA now (None: nothing any more). New problems are logged
        unless QUIET (a counter that moved, say)."""
        old = self.current.get(area)
        if problem is None:
            if old is not None:
                del self.current[area]
                self.changed = self.urgent = True
                self.tell("problem_resolved", "info", area=area, was=old)
            return
        problem = clip(problem)
        if problem == old:
            return
        if old is None and len(self.current) >= MAX_PROBLEMS:
            quiet = False  # not shown (the list is bounded), so at least in the events file
        else:
            self.current[area] = problem
            self.changed = True
            self.urgent = self.urgent or not quiet
        if not quiet:
            self.tell("problem", "error", area=area, problem=problem)

    def problems(self) -> list[str]:
        return list(self.current.values())

    def internal(self, during: str, exc: BaseException) -> None:
        """An unexpected error in a handler: logged with where it happened; supervision goes on."""
        self.errors += 1
        frames, tb = [], exc.__traceback__
        while tb is not None:  # by hand: no traceback/linecache import, no source read (the fd limit)
            code = tb.tb_frame.f_code
            frames.append(f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} {code.co_name}")
            tb = tb.tb_next
        where = " < ".join(reversed(frames[-4:]))
        self.report("internal", f"{self.errors} unexpected error(s), the last at {time.strftime('%H:%M:%S')} "
                                f"{during}: {describe(exc)}", quiet=True)
        self.tell("internal_error", "error", during=during, error=describe(exc), where=where)

    def tell(self, name: str, level: str, **fields) -> None:
        if self.log is not None:
            self.log.event(name, level=level, **fields)  # never raises; falls back here itself
        else:
            self.fallback(" ".join([name, *(f"{key}={value}" for key, value in fields.items())]))

    def fallback(self, line: str) -> None:
        """stderr and syslog, at most FALLBACK_BURST lines a minute: for when events can't be written."""
        now = time.monotonic()
        if now - self._window_start >= FALLBACK_WINDOW:
            if self._suppressed:
                line = f"({self._suppressed} earlier messages suppressed) {line}"
            self._window_start, self._window_lines, self._suppressed = now, 0, 0
        if self._window_lines >= FALLBACK_BURST:
            self._suppressed += 1
            return
        self._window_lines += 1
        text = clip(line, 2000)
        try:
            sys.stderr.write(f"svctl {self.service}: {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a daemon's stderr is /dev/null or gone: syslog is the one that counts
        try:
            if self._syslog is None:
                import syslog

                syslog.openlog(f"svctl-{self.service}", syslog.LOG_PID, syslog.LOG_DAEMON)
                self._syslog = syslog
            self._syslog.syslog(self._syslog.LOG_ERR, text)
        except Exception:  # even the import can fail at the fd limit: nothing else is left to tell
            pass


class Guard:
    """guarded(): a driver's protection against its own adapters; needs .faults."""

    def guarded(self, what: str, function, *args):
        """FUNCTION(*ARGS), or None when it raised (logged, and shown as a problem)."""
        try:
            return function(*args)
        except Exception as exc:
            self.faults.internal(what, exc)
            return None
