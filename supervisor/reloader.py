"""Config hot-reload for the runtime: watched files, the validation job, last-known-good snapshots.

It owns the adapters (watchdog observer, debouncer, check job, snapshots) and answers the runtime
in events; the decisions (when to check, restart or roll back) stay in the state machine.
Imported only for services with ``watch`` or ``check`` set, so others never load watchdog.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.core.debounce import Debouncer
from supervisor.errors import SvctlError
from supervisor.log import EventLog


class ConfigReloader:
    def __init__(self, config: ServiceConfig, directory: str, log: EventLog, wake: Callable[[], None]) -> None:
        self.config, self.directory, self.log, self.wake = config, directory, log, wake
        self.debouncer = Debouncer(0.2, 1.0)
        self.watcher = None
        self.job = None
        self.check_deadline: float | None = None

    # ---- watching ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.watch:
            return
        from supervisor.unix.watch import ConfigWatcher, WatchError

        self.watcher = ConfigWatcher(list(self.config.watch), self.wake)
        try:
            self.watcher.start()
        except WatchError as exc:  # e.g. the inotify instance limit: supervise anyway, say so
            self.log.event("watch_failed", level="error", error=str(exc))
            self.watcher = None

    def kick(self) -> float | None:
        """A watch wake-up arrived: returns when the debounced burst is due."""
        self.debouncer.kick(time.monotonic())
        return self.debouncer.deadline()

    def fire(self) -> tuple[ev.Reload | None, float | None]:
        """The debounce deadline passed: (a reload to request or None, a later deadline or None)."""
        if not self.debouncer.take(time.monotonic()):
            return None, self.debouncer.deadline()
        changed = self.watcher.changed() if self.watcher else []
        if not changed:
            return None, None  # touched or rewritten with identical content
        self.watcher.accept()  # the new content is being tried: don't trigger on it again
        self.log.event("config_changed", paths=changed)
        return ev.Reload(source="watch"), None

    # ---- validation -------------------------------------------------------------------------

    def begin_check(self) -> ev.CheckDone | None:
        """Start validating; returns the verdict at once when there is nothing to run."""
        from supervisor.unix.validate import CheckJob, check_watched_file_safety

        for path in self.config.watch:
            refusal = check_watched_file_safety(path, self.config.user)
            if refusal:
                return ev.CheckDone(False, refusal)
        if not self.config.check:
            return ev.CheckDone(True, "no check configured")
        try:
            self.job = CheckJob(self.config)
        except (OSError, SvctlError) as exc:
            return ev.CheckDone(False, f"cannot run the check: {exc}")
        self.check_deadline = time.monotonic() + self.config.check_timeout
        return None

    @property
    def check_pid(self) -> int | None:
        return self.job.pid if self.job else None

    def kill_check(self) -> None:
        self.check_deadline = None
        if self.job is not None:
            self.job.kill()

    def finish_check(self, status: int) -> ev.CheckDone:
        job, self.job, self.check_deadline = self.job, None, None
        result = job.finish(status, self.config.check_timeout)
        self.log.event("check_finished", ok=result.ok, summary=result.summary, output=result.output[-8192:])
        return ev.CheckDone(result.ok, result.summary)

    # ---- last known good --------------------------------------------------------------------

    def snapshot(self, action: str) -> None:
        if not self.config.watch:
            return
        from supervisor.unix import snapshots

        try:
            if action == "save":
                snapshots.save_good(list(self.config.watch), self.directory)
            else:
                good_since = snapshots.restore_good(list(self.config.watch), self.directory)
                self.log.event("rollback", restored_config_from=good_since)
                if self.watcher is not None:
                    self.watcher.accept(rescan=True)  # the restored files are no edit to react to
        except snapshots.SnapshotError as exc:
            self.log.event("snapshot_failed", level="error", action=action, error=str(exc))

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.job is not None:
            self.job.kill()
