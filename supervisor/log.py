"""The supervisor's own lifecycle events: structlog JSON lines in events_file.

In the foreground on a terminal they are also rendered for humans on stderr. Configured only inside
the supervisor (after daemonizing, so no file descriptor is lost), never on the status path.
"""

from __future__ import annotations

import os
import sys

import structlog


class EventLog:
    def __init__(self, path: str, service: str, console: bool) -> None:
        self.path, self.service, self.console = path, service, console
        self.file = None
        self.reopen()
        self._json = structlog.wrap_logger(
            structlog.PrintLogger(self.file),
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        structlog.processors.JSONRenderer(sort_keys=False)],
        )
        self._human = structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
                        structlog.dev.ConsoleRenderer(colors=False)],
        ) if console else None

    def reopen(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        handle = open(self.path, "a", buffering=1, encoding="utf-8")
        if self.file is None:
            self.file = handle
        else:  # PrintLogger keeps its file object: swap the descriptor under it
            os.dup2(handle.fileno(), self.file.fileno())
            handle.close()

    def event(self, name: str, level: str = "info", **fields) -> None:
        getattr(self._json, level)(name, service=self.service, **fields)
        if self._human is not None:
            getattr(self._human, level)(name, **fields)
