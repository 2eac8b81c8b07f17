"""The watcher's fallback where there is no inotify: one watchdog Observer (threads).

Used only when ctypes finds no ``inotify_init1`` or the kernel says ENOSYS (supervisor/unix/watch.py
picks it); imported only then, since watchdog's observers cost about 5 MB and 25-40 ms and start
three threads. From watchdog 2.2.1 (Debian 12) to 7.x: observers only call ``handler.dispatch(event)``,
and the handler filters on ``event.event_type`` strings.
"""

from __future__ import annotations

import os

# Events that can mean new content. Not "opened"/"closed_no_write"/access: reading the file (our own
# changed(), the check command, sed's first pass) would otherwise wake us forever.
RELEVANT_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed", "attrib"})


class _Handler:
    """Runs in the observer thread (with the observer's lock held): filter, then wake. Nothing else."""
    def __init__(self, directory: str, watcher) -> None:
        self.directory, self.watcher = directory, watcher

    def dispatch(self, event) -> None:
        kind = event.event_type
        source = os.path.normpath(os.fsdecode(event.src_path))
        if kind not in RELEVANT_EVENTS or (kind == "modified" and source == self.directory):
            return  # (the directory's own mtime: always paired with an event for the entry itself)
        target = os.path.normpath(os.fsdecode(event.dest_path)) if kind == "moved" and event.dest_path else ""
        if target and os.path.dirname(target) == self.directory:
            name, appeared = os.path.basename(target), True
        else:
            name, appeared = (None if source == self.directory else os.path.basename(source)), kind == "created"
        if self.watcher.notice(self.directory, name, appeared):
            self.watcher.woken(1)


class WatchdogBackend:
    """The fallback without inotify: one watchdog Observer (threads); keys are the directories."""

    name = "watchdog"

    def __init__(self, watcher) -> None:
        from watchdog.observers import Observer  # heavy: only here (see the module docstring)

        self.watcher, self.scheduled, self.observer = watcher, {}, Observer()
        self.observer.daemon = True
        self.observer.start()

    running = property(lambda self: self.observer.is_alive())
    fileno = staticmethod(lambda: None)  # threads, no descriptor in the loop

    def add(self, directory: str) -> str:
        if directory not in self.scheduled:  # scheduling twice would add a second handler
            handler = _Handler(directory, self.watcher)
            self.scheduled[directory] = self.observer.schedule(handler, directory, recursive=False)
        return directory

    def remove(self, directory: str) -> None:
        watch = self.scheduled.pop(directory, None)
        try:
            self.observer.unschedule(watch)
        except (KeyError, OSError):
            pass

    def close(self) -> None:
        """Stop the observer and wait for its threads (bounded by watchdog's 1 s poll timeout)."""
        self.scheduled.clear()
        self.observer.stop()
        if self.observer.is_alive():
            self.observer.join(timeout=5)
