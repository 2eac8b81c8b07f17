"""Config hot-reload for the runtime: watched files, the validation job, last-known-good snapshots.

It owns the adapters (file watcher, debouncer, check job, snapshots) and answers the runtime
in events; the decisions (when to check, restart or roll back) stay in the state machine.
Imported only for services with ``watch`` or ``check`` set, so others never load the watcher.
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
    def __init__(self, config: ServiceConfig, directory: str, log: EventLog, wake: Callable[[], None],
                 loop=None) -> None:
        """WAKE: called on a watched-file event (thread-safe: in watchdog's thread in the fallback).
        LOOP: the process loop; the watcher's inotify descriptor joins its selector (``start``)."""
        self.config, self.directory, self.log, self.wake, self.loop = config, directory, log, wake, loop
        self.debouncer = Debouncer(0.2, 1.0)
        self.watcher = None
        self.job = None
        self.check_deadline: float | None = None
        self.judged: dict | None = None  # the watched files' bytes as the running check began
        # What the next SaveGood may promote, why it may not, and whether the service was spawned on it
        self.candidate: dict | None = None
        self.running: dict | None = None  # the watched files' bytes at the last initial/reload spawn
        self.candidate_problem: str | None = None
        self.candidate_spawned = False

    # ---- watching ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.watch:
            return
        from supervisor.unix.watch import ConfigWatcher, WatchError

        self.watcher = ConfigWatcher(list(self.config.watch), self.wake, self.loop)
        try:
            self.watcher.start()
        except WatchError as exc:  # e.g. the inotify instance limit: supervise anyway, say so
            self.log.event("watch_failed", level="error", error=str(exc))
            self.watcher = None

    def kick(self) -> float | None:
        """A watch wake-up arrived: returns when the debounced burst is due."""
        self.debouncer.kick(time.monotonic())
        return self.debouncer.deadline()

    def fire(self) -> tuple[bool, float | None]:
        """The debounce deadline passed: (whether to request a reload, a later deadline or None).
        The request goes through the runtime's request_reload, like `svctl reload` and SIGHUP,
        so that an environment file a start would refuse refuses it too."""
        if not self.debouncer.take(time.monotonic()):
            return False, self.debouncer.deadline()
        changed = self.watcher.changed() if self.watcher else []
        if not changed:
            return False, None  # touched or rewritten with identical content
        self.watcher.accept()  # the new content is being tried: don't trigger on it again
        self.log.event("config_changed", paths=changed)
        return True, None

    def unchanged(self) -> bool:
        """Do the watched files hold exactly the bytes the running service was started on?"""
        if not self.config.watch or self.running is None:
            return False
        from supervisor.unix import snapshots

        try:
            return not snapshots.changed_paths(self.running, snapshots.capture(self.config.watch))
        except OSError:
            return False

    # ---- validation -------------------------------------------------------------------------

    def begin_check(self) -> ev.CheckDone | None:
        """Start validating; returns the verdict at once when there is nothing to run.

        The watched files are read first: those bytes are what the verdict will be about, and
        what a later SaveGood may promote (see ``finish_check``).
        """
        from supervisor.config import user_is_root
        from supervisor.unix import snapshots
        from supervisor.unix.trustchain import watched_file_refusal

        for path in self.config.watch if user_is_root(self.config.user) else ():
            refusal = watched_file_refusal(path)
            if refusal:
                return ev.CheckDone(False, refusal)
        try:
            self.judged = snapshots.capture(self.config.watch)
        except OSError as exc:  # a FIFO, a planted symlink (SnapshotError): rejected, never a hang
            return ev.CheckDone(False, str(exc))
        if not self.config.check:
            self.promote_next(self.judged)
            return ev.CheckDone(True, "no check configured")
        from supervisor.unix.validate import CheckJob  # only with a check: it compiles regexes

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
        """The verdict on the bytes read when the check began, or a rejection if they moved.

        The check reads the files from disk itself, so its verdict is about the bytes on disk
        while it ran; the files are read again now, and if they differ from what was read before
        it started, nobody knows which bytes were judged: no verdict (the watcher will see the
        edit and check the new content). Environment values never reach the events file or
        status (docs/security.md S2): masked, and only the last lines of output are logged.
        """
        from supervisor.unix import snapshots
        from supervisor.unix.validate import last_lines, redact, secret_values

        job, self.job, self.check_deadline = self.job, None, None
        judged, self.judged = self.judged, None
        secrets = secret_values(self.config)
        result = job.finish(status, self.config.check_timeout, secrets)
        summary = redact(result.summary, secrets)
        self.log.event("check_finished", ok=result.ok, summary=summary, output=last_lines(result.output))
        if not result.ok:
            return ev.CheckDone(False, summary)
        try:
            after = snapshots.capture(self.config.watch)
        except OSError as exc:
            return ev.CheckDone(False, str(exc))
        moved = snapshots.changed_paths(judged or {}, after)
        if moved:
            self.log.event("changed_during_check", level="warning", paths=moved)
            return ev.CheckDone(False, f"{', '.join(moved)} changed while being checked; "
                                       "the new content will be checked")
        self.promote_next(judged)
        return ev.CheckDone(True, summary)

    # ---- last known good --------------------------------------------------------------------
    #
    # The bytes a SaveGood promotes are chosen before the service sees them: those that passed the
    # check (promote_next), or for the first start those read just before the spawn. Whether the
    # files still hold them is checked when the service is spawned (before_spawn) or, for a
    # signal reload that spawns nothing, when it is signalled (the SaveGood itself).

    def promote_next(self, contents: dict | None) -> None:
        self.candidate, self.candidate_problem, self.candidate_spawned = contents, None, False

    def before_spawn(self, attempt: str) -> None:
        """The service is about to be started (``attempt`` as in ev.Spawn). Never raises."""
        if not self.config.watch:
            return
        if attempt not in ("initial", "reload"):  # restarts and rollbacks are never promoted
            self.promote_next(None)
            if attempt == "rollback":
                self.running = None  # the restored files: not known here, so never "unchanged"
            return
        from supervisor.unix import snapshots

        try:
            on_disk = snapshots.capture(self.config.watch)
        except OSError as exc:  # SnapshotError: nothing we could read is promoted
            self.candidate, self.candidate_problem, self.running = None, str(exc), None
        else:
            self.running = on_disk
            if attempt == "initial":
                self.promote_next(on_disk)
            elif self.candidate_problem is None:
                self.candidate_problem = moved_since(self.candidate, on_disk)
        self.candidate_spawned = True

    def snapshot(self, action: str) -> None:
        if not self.config.watch:
            return
        from supervisor.unix import snapshots

        try:
            if action == "save":
                self.save()
            else:
                self.promote_next(None)
                good_since = snapshots.restore_good(list(self.config.watch), self.directory)
                self.log.event("rollback", restored_config_from=good_since)
                if self.watcher is not None:
                    self.watcher.accept(rescan=True)  # the restored files are no edit to react to
        except OSError as exc:  # SnapshotError, or the capture of a signal reload's files
            self.log.event("snapshot_failed", level="error", action=action, error=str(exc))

    def save(self) -> None:
        from supervisor.unix import snapshots

        candidate, problem, spawned = self.candidate, self.candidate_problem, self.candidate_spawned
        self.promote_next(None)
        if problem is None and not spawned:  # a signal reload: the service was signalled just now
            problem = moved_since(candidate, snapshots.capture(self.config.watch))
        if candidate is None or problem is not None:
            # Not an error: the previous snapshot stays, and the watcher reloads the newer edit.
            self.log.event("config_not_promoted", level="warning", reason=problem or "no validated config")
            return
        snapshots.save_good(candidate, self.directory)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.job is not None:
            self.job.kill()


def moved_since(candidate: dict | None, on_disk: dict) -> str | None:
    """None when the files still hold the candidate's bytes, else why it cannot be promoted."""
    from supervisor.unix import snapshots

    if candidate is None:
        return "no validated config to promote"
    moved = snapshots.changed_paths(candidate, on_disk)
    return f"config changed while starting; not promoted ({', '.join(moved)})" if moved else None
