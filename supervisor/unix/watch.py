"""Watch the service's config files and say which ones really changed.

Design (docs/reload.md):

* ONE watchdog Observer for the whole supervisor (inotify instances are a scarce per-user resource).
* Files are never watched directly: a watch on a file follows its inode and goes deaf after the first
  atomic replace on watchdog 6 (tmp + rename, ``sed -i``, vim). Instead each file's *directory* is
  watched, plus every directory a symlink on the way points into, so a Kubernetes ConfigMap
  ``..data`` swap (which produces no event naming the file at all) is still noticed.
* The observer thread does nothing but call ``wake()``; deciding is the loop's job: it debounces
  (core/debounce.py), then calls ``changed()``, which re-reads every file and compares a sha256 with
  the accepted baseline. So a ``touch``, a ``chmod`` or rewriting identical bytes reloads nothing,
  and unrelated files in the same directory cost one hash per debounce window, nothing more.
* Files are read the way snapshots and the check read them (``read_watched``: through userfiles,
  as the user who controls the directory, ``O_NONBLOCK``, regular files only): what the service's
  user plants at the path (a FIFO, a symlink to a root file) is "unreadable", never a hang.

watchdog is imported only in ``start()``: it costs ~20 ms and three threads, and ``svctl status``
must never pay for it. Works with watchdog 2.2.1 (Debian 12) through 7.x: the handler is duck-typed
(observers only call ``handler.dispatch(event)``) and filters on ``event.event_type`` strings.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterable

from supervisor.errors import SvctlError
from supervisor.unix import safefs, userfiles

# Events that can mean new content. Not "opened"/"closed_no_write" (6.x+): reading the file (our own
# changed(), the check command, sed's first pass) would otherwise wake us forever.
RELEVANT_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed", "attrib"})
_MAX_SYMLINK_HOPS = 40  # same limit as the kernel's ELOOP
WATCHED_LIMIT = 16 << 20  # a config file bigger than this is refused, never silently truncated


class WatchError(SvctlError):
    """A watched directory could not be watched (e.g. the inotify instance/watch limit)."""


@dataclass(frozen=True)
class FileChange:
    """One watched path whose content differs from the accepted baseline."""

    path: str
    kind: str  # "modified" | "created" | "deleted" | "unreadable"
    detail: str = ""  # for "unreadable": the OS error text


def watched_target(path: str) -> str:
    """The file PATH stands for: PATH itself, or where a root-owned symlink at its end points.

    A root-owned link is followed only while root alone controls the directory holding it (a
    Kubernetes ConfigMap's ``app.conf -> ..data/app.conf``, ``..data -> ..2024_01``: resolved to
    ``/etc/cfg/..2024_01/app.conf``). Any other link is left in place: ``userfiles`` then refuses
    to read through it and replaces or removes the link itself, with the rights of the user who
    controls the directory. Never opens the file (a FIFO costs nothing here).
    """
    current = path
    for _ in range(_MAX_SYMLINK_HOPS):
        try:
            place = safefs.locate(current)
        except OSError:  # a user's directory, an unsafe or missing one: userfiles says why, if it matters
            return current
        with place:
            if place.owner is not None:
                return current
            try:
                info = os.stat(place.name, dir_fd=place.fd, follow_symlinks=False)
            except OSError:
                return place.path
            if not stat.S_ISLNK(info.st_mode) or info.st_uid != 0:
                return place.path
            current = os.path.normpath(os.path.join(place.directory, os.readlink(place.name, dir_fd=place.fd)))
    raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")


def read_watched(path: str) -> bytes | None:
    """The content of a watched file, None when it does not exist; raises OSError with one line.

    Read through ``userfiles`` (docs/security.md F2): as the user who controls the directory when
    a user does, never through a link someone else planted, ``O_NONBLOCK`` and regular files only,
    so a FIFO or a device at the path is an error at once, never a supervisor blocked in open().
    """
    try:
        data = userfiles.read_bytes(watched_target(path), WATCHED_LIMIT + 1)
    except (FileNotFoundError, NotADirectoryError):  # a directory on the way is gone: so is the file
        return None
    except OSError as exc:
        raise OSError(exc.errno, _unreadable(path, exc)) from None
    if data is not None and len(data) > WATCHED_LIMIT:
        raise OSError(errno.EFBIG, f"{path}: larger than {WATCHED_LIMIT >> 20} MiB")
    return data


def _unreadable(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{path} is a symbolic link svctl does not follow (only root's links in root's directories)"
    text = userfiles.describe(exc)
    return text if path in text or watched_target(path) in text else f"{path}: {text}"


def file_digest(path: str) -> str | None:
    """sha256 of the watched file's content (see ``read_watched``), None when it does not exist.

    Other errors (EACCES, a FIFO, a directory, a planted symlink) raise OSError with one line.
    """
    data = read_watched(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def watch_directories(path: str) -> list[str]:
    """The directories whose entries decide what ``path`` reads as.

    The path's own directory (where a rename or a symlink swap lands), then, hop by hop through the
    symlink chain, the directory of each link target, and finally the directory of the resolved
    file. ``/etc/cfg/app.conf -> ..data/app.conf`` with ``..data -> ..2024_01`` gives
    ``/etc/cfg`` and ``/etc/cfg/..2024_01``.
    """
    seen: list[str] = []

    def add(directory: str) -> None:
        directory = os.path.normpath(directory)
        if directory not in seen:
            seen.append(directory)

    current = os.path.abspath(path)
    add(os.path.dirname(current))
    for _ in range(_MAX_SYMLINK_HOPS):
        try:
            target = os.readlink(current)
        except OSError:  # not a symlink (EINVAL), or missing: the chain ends here
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        add(os.path.dirname(current))
    add(os.path.dirname(os.path.realpath(path)))
    return seen


class _Handler:
    """Runs in the observer thread (with the observer's lock held): filter, then wake. Nothing else."""

    def __init__(self, directory: str, wake: Callable[[], None], counter: Callable[[], None]) -> None:
        self.directory = directory
        self.wake = wake
        self.counter = counter

    def dispatch(self, event: Any) -> None:
        if event.event_type not in RELEVANT_EVENTS:
            return
        if event.event_type == "modified" and event.is_directory:
            # The directory's own mtime change is always paired with an event for the entry itself.
            if os.path.normpath(os.fsdecode(event.src_path)) == self.directory:
                return
        self.counter()
        try:
            self.wake()
        except OSError:
            # A full wake-up pipe already guarantees the loop will wake; an exception here would
            # kill the observer thread and with it every future notification.
            pass


class ConfigWatcher:
    """Watch ``paths`` (absolute) and call ``wake()`` from the observer thread on any relevant event.

    Thread model: ``wake`` runs in watchdog's dispatcher thread and must be cheap and thread-safe
    (writing one byte to a self-pipe is ideal). ``changed()``, ``scan()`` and ``accept()`` are called
    from the supervisor loop only.
    """

    def __init__(self, paths: Iterable[str], wake: Callable[[], None]) -> None:
        self.paths: tuple[str, ...] = tuple(paths)
        self._wake = wake
        self._observer: Any = None
        self._watches: dict[str, Any] = {}  # directory -> watchdog ObservedWatch
        self._baseline: dict[str, str | None] = {}  # path -> digest accepted (None = absent)
        self._last_scan: dict[str, str | None] = {}
        self._events = 0
        self._events_lock = threading.Lock()
        self.skipped: tuple[str, ...] = ()  # directories that do not exist (yet); retried on scan

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Record the current contents as the baseline and start the observer thread.

        Start it after daemonizing: threads do not survive python-daemon's fork (packaging §1.5).
        Raises WatchError when a directory cannot be watched for a reason other than not existing.
        """
        from watchdog.observers import Observer  # heavy: only here (see module docstring)

        self._baseline = {path: self._digest_or_none(path) for path in self.paths}
        self._last_scan = dict(self._baseline)
        if not self.paths:
            return
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        try:
            self._refresh_watches()
        except WatchError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the observer and wait for its threads (bounded by watchdog's 1 s poll timeout)."""
        observer, self._observer = self._observer, None
        self._watches.clear()
        if observer is None:
            return
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    @property
    def events_seen(self) -> int:
        """How many relevant events woke us (diagnostics and tests)."""
        return self._events

    def directories(self) -> tuple[str, ...]:
        """The directories currently being watched."""
        return tuple(self._watches)

    # -- content comparison (loop thread) --------------------------------------------------------

    def scan(self) -> list[FileChange]:
        """Re-read every watched file; return those whose content differs from the baseline.

        Also re-resolves symlinks and adjusts the watched directories, so a symlink that now points
        somewhere else is followed there for the next edit.
        """
        changes: list[FileChange] = []
        scanned: dict[str, str | None] = {}
        for path in self.paths:
            before = self._baseline.get(path)
            try:
                now = file_digest(path)
            except OSError as exc:
                scanned[path] = before  # keep the baseline: nothing was read that could be accepted
                changes.append(FileChange(path, "unreadable", exc.strerror or str(exc)))
                continue
            scanned[path] = now
            if now == before:
                continue
            kind = "deleted" if now is None else "created" if before is None else "modified"
            changes.append(FileChange(path, kind))
        self._last_scan = scanned
        if self._observer is not None:
            self._refresh_watches()
        return changes

    def changed(self) -> list[str]:
        """The paths whose content really changed since the last ``accept()`` (deleted ones included)."""
        return [change.path for change in self.scan()]

    def accept(self, rescan: bool = False) -> None:
        """Make the contents seen by the last ``changed()``/``scan()`` the new baseline.

        Call it once a reload was applied *or* rejected, so the same content does not trigger
        again. The default uses what the last scan read, not what is on disk now: an edit that
        landed while the check was running must still count as a change. Pass ``rescan=True``
        after restoring files yourself (snapshots.restore_good), so the restored content is the
        baseline and the rollback does not trigger a reload of its own.
        """
        if rescan:
            self._baseline = {path: self._digest_or_none(path) for path in self.paths}
        else:
            self._baseline.update(self._last_scan)

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _digest_or_none(path: str) -> str | None:
        try:
            return file_digest(path)
        except OSError:
            return None

    def _count(self) -> None:
        with self._events_lock:
            self._events += 1

    def _refresh_watches(self) -> None:
        wanted: list[str] = []
        for path in self.paths:
            for directory in watch_directories(path):
                if directory not in wanted:
                    wanted.append(directory)
        skipped = []
        for directory in wanted:
            if directory in self._watches:
                continue
            if not os.path.isdir(directory):
                skipped.append(directory)  # e.g. a ConfigMap generation not created yet
                continue
            self._schedule(directory)
        for directory in list(self._watches):
            if directory not in wanted or not os.path.isdir(directory):
                # An old ..2024_01 generation directory is deleted by the kubelet; drop its watch.
                watch = self._watches.pop(directory)
                try:
                    self._observer.unschedule(watch)
                except (KeyError, OSError):
                    pass
        self.skipped = tuple(skipped)

    def _schedule(self, directory: str) -> None:
        handler = _Handler(directory, self._wake, self._count)
        try:
            self._watches[directory] = self._observer.schedule(handler, directory, recursive=False)
        except OSError as exc:
            raise WatchError(
                f"cannot watch {directory}: {exc.strerror or exc}"
                " (inotify limits: sysctl fs.inotify.max_user_instances / max_user_watches)"
            ) from exc
