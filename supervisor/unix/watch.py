"""Watch the service's config files and say which ones really changed.

Design (docs/reload.md):

* ONE inotify instance (unix/inotify.py: libc through ctypes) and no thread: its descriptor is in the
  loop's selector; when readable, the queue is drained (bounded), the events filtered and counted,
  and ``wake()`` called once for the batch, in the loop's thread.
* Files are never watched directly: a watch on a file follows its inode and goes deaf after the first
  atomic replace (tmp + rename, ``sed -i``, vim). Each file's *directory* is watched instead, plus
  every directory a symlink on the way points into, so a Kubernetes ConfigMap ``..data`` swap (which
  produces no event naming the file at all) is still noticed.
* Every refresh (``_refresh_watches``: at start, and on each scan before the files are read) adds
  each wanted directory's watch again: the kernel answers with the watch of that inode, a new one
  when the path now leads elsewhere (a swapped ``..data``, a directory made again). Unwanted watches
  are removed. A missing directory is skipped and its nearest existing ancestor watched for its name,
  so one deleted and recreated (or created later) is noticed without a poll. IN_Q_OVERFLOW (events
  lost) and IN_IGNORED (a watched directory gone) wake like an edit: the scan re-reads everything.
* Deciding is the loop's job: it debounces (core/debounce.py), then calls ``changed()``, which
  re-reads every file and compares a sha256 with the accepted baseline: a ``touch``, a ``chmod`` or
  identical bytes reload nothing; an unrelated file in the directory costs a hash per debounce window.
* Files are read the way snapshots and the check read them (``read_watched``: through userfiles,
  as the user who controls the directory, ``O_NONBLOCK``, regular files only): what the service's
  user plants at the path (a FIFO, a symlink to a root file) is "unreadable", never a hang.

watchdog is only the fallback when there is no inotify (ctypes finds no ``inotify_init1``, or the
kernel says ENOSYS): supervisor/unix/watch_fallback.py, imported then in ``start()`` (~7 MB PSS,
~25 ms, three threads that call ``wake()``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable

from supervisor.core.record import Record
from supervisor.errors import SvctlError
from supervisor.unix import inotify, safefs, userfiles

try:  # the interpreter's own sha256: hashlib would load OpenSSL's libcrypto (+1.6 MB PSS) for it
    from _sha2 import sha256 as _sha256  # 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # 3.11
    except ImportError:  # a build without the built-in hashes
        from hashlib import sha256 as _sha256

_MAX_SYMLINK_HOPS = 40  # same limit as the kernel's ELOOP
WATCHED_LIMIT = 16 << 20  # a config file bigger than this is refused, never silently truncated
DRAIN_READS = 16  # reads of the inotify queue per wake-up (1 MiB): then the loop's other descriptors


class WatchError(SvctlError):
    """A watched directory could not be watched (e.g. the inotify instance/watch limit)."""


class FileChange(Record):
    """One watched path whose content differs from the accepted baseline.

    kind: "modified" | "created" | "deleted" | "unreadable"; detail: for "unreadable", the OS error."""

    __slots__ = ("path", "kind", "detail")
    defaults = {"detail": ""}


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()


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
    return None if data is None else sha256_hex(data)


def watch_directories(path: str) -> list[str]:
    """The directories whose entries decide what ``path`` reads as.

    The path's own directory (where a rename or a symlink swap lands), then, hop by hop through the
    symlink chain, the directory of each link target, and finally the directory of the resolved
    file. ``/etc/cfg/app.conf -> ..data/app.conf`` with ``..data -> ..2024_01`` gives
    ``/etc/cfg`` and ``/etc/cfg/..2024_01``. Last, the directory holding each symlinked directory
    on those paths: a deploy's ``ln -sfn releases/v2 current`` (or a user who turns a directory
    of theirs into a link) renames an entry there, and nowhere else.
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
    for directory in list(seen):
        for holder in _link_holders(directory):
            add(holder)
    return seen


def _link_holders(directory: str) -> list[str]:
    """The directories that hold a symlink met on the way to DIRECTORY (followed, hop by hop)."""
    holders: list[str] = []
    current = "/"
    for part in directory.strip("/").split("/"):
        if not part:
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            holders.append(current)
            candidate = os.path.realpath(candidate)
        current = candidate
    return holders


def nearest_existing(directory: str) -> tuple[str, str]:
    """(the nearest existing ancestor of DIRECTORY, the name on the way down to it that is missing)."""
    child, parent = os.path.basename(directory), os.path.dirname(directory)
    while parent != os.path.dirname(parent) and not os.path.isdir(parent):
        child, parent = os.path.basename(parent), os.path.dirname(parent)
    return parent, child


class ConfigWatcher:
    """Watch ``paths`` (absolute) and call ``wake()`` on relevant events.

    LOOP is the supervisor's process loop (its ``selector`` and ``forget``): the inotify descriptor
    is registered there, and ``wake`` runs in the loop's thread. Only in the watchdog fallback does
    it run in watchdog's dispatcher thread, so it must be cheap and thread-safe (``loop.call_soon``).
    ``changed()``, ``scan()`` and ``accept()`` are called from the supervisor loop only.
    """

    def __init__(self, paths: Iterable[str], wake: Callable[[], None], loop) -> None:
        self.paths: tuple[str, ...] = tuple(paths)
        self._wake, self._loop, self._backend = wake, loop, None
        self._watches: dict[str, object] = {}  # directory -> the backend's key (a wd, shared by one inode's paths)
        self.owners: dict[object, tuple[str, ...]] = {}  # key -> the directories it stands for
        self._full: frozenset[str] = frozenset()  # directories whose every relevant event counts
        self._awaited: dict[str, frozenset[str]] = {}  # ancestor -> names of missing directories in it
        self._baseline: dict[str, str | None] = {}  # path -> digest accepted (None = absent)
        self._last_scan: dict[str, str | None] = {}
        self._events = 0  # one writer: the loop's thread, or watchdog's dispatcher in the fallback
        self.skipped: tuple[str, ...] = ()  # directories that do not exist (yet); retried on scan
        self.problem: str | None = None  # why the last scan's refresh could not watch a directory

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Record the current contents as the baseline and start watching.

        Start it after daemonizing, in the loop that will run (its selector gets the descriptor).
        Raises WatchError when a directory cannot be watched for a reason other than not existing.
        """
        self._baseline = {path: self._digest_or_none(path) for path in self.paths}
        self._last_scan = dict(self._baseline)
        if not self.paths:
            return
        try:
            self._backend = inotify.Backend(self, self._loop, DRAIN_READS)
        except inotify.Unavailable:
            from supervisor.unix.watch_fallback import WatchdogBackend

            self._backend = WatchdogBackend(self)
        except OSError as exc:  # EMFILE: fs.inotify.max_user_instances
            raise _watch_error(os.path.dirname(self.paths[0]), exc) from exc
        try:
            self._refresh_watches()
        except WatchError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop watching: the descriptor leaves the loop's selector and is closed (or watchdog's threads joined)."""
        backend, self._backend = self._backend, None
        self._watches, self.owners = {}, {}
        if backend is not None:
            backend.close()

    @property
    def running(self) -> bool:
        return self._backend is not None and self._backend.running

    @property
    def backend(self) -> str | None:
        """"inotify", "watchdog" (the fallback) or None when not watching."""
        return self._backend.name if self._backend is not None else None

    def fileno(self) -> int | None:
        """The inotify descriptor in the loop's selector (None: not watching, or watchdog's threads)."""
        return self._backend.fileno() if self._backend is not None else None

    @property
    def events_seen(self) -> int:
        """How many relevant events woke us (diagnostics and tests)."""
        return self._events

    def directories(self) -> tuple[str, ...]:
        """The directories currently being watched (not the ancestors awaiting a missing one)."""
        return tuple(directory for directory in self._watches if directory in self._full)

    # -- content comparison (loop thread) --------------------------------------------------------

    def scan(self) -> list[FileChange]:
        """Re-read every watched file; return those whose content differs from the baseline.

        The watched directories are adjusted first (symlinks re-resolved, directories that appeared
        or went), then the files are read: an edit after a new watch is in place gets an event, one
        before it is in what is read now, so a directory recreated in between loses nothing. A
        directory that cannot be watched then (WatchError) is in ``problem``, and is retried next scan.
        """
        if self._backend is not None:
            try:
                self._refresh_watches()
                self.problem = None
            except WatchError as exc:  # e.g. the watch limit on a new directory: still compare the files
                self.problem = str(exc)
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

    # -- the backends' side ----------------------------------------------------------------------

    def notice(self, directory: str, name: str | None, appeared: bool) -> bool:
        """Does an event in DIRECTORY on entry NAME (None: the directory itself) count?"""
        if directory in self._full:
            return True
        names = self._awaited.get(directory)
        return names is not None and (name is None or (appeared and name in names))

    def woken(self, count: int) -> None:
        self._events += count
        try:
            self._wake()
        except OSError:
            # A full wake-up pipe already guarantees the loop will wake; in the fallback an exception
            # here would kill the observer thread and with it every future notification.
            pass

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _digest_or_none(path: str) -> str | None:
        try:
            return file_digest(path)
        except OSError:
            return None

    def _wanted(self) -> tuple[list[str], dict[str, set[str]], list[str]]:
        full: list[str] = []
        awaited: dict[str, set[str]] = {}  # ancestor -> the names in it of missing directories
        skipped: list[str] = []
        for path in self.paths:
            for directory in watch_directories(path):
                if directory in full or directory in skipped:
                    continue
                if os.path.isdir(directory):
                    full.append(directory)
                    continue
                skipped.append(directory)  # e.g. a ConfigMap generation not created yet, or deleted
                ancestor, name = nearest_existing(directory)
                awaited.setdefault(ancestor, set()).add(name)
        return full, awaited, skipped

    def _refresh_watches(self) -> None:
        full, awaited, skipped = self._wanted()
        watches: dict[str, object] = {}
        failure = None
        todo = full + [ancestor for ancestor in awaited if ancestor not in full]
        while todo:
            directory = todo.pop(0)
            try:
                watches[directory] = self._backend.add(directory)
            except (FileNotFoundError, NotADirectoryError):  # gone since isdir(): await it in its ancestor
                if directory in full:
                    full.remove(directory)
                    skipped.append(directory)
                    ancestor, name = nearest_existing(directory)
                    awaited.setdefault(ancestor, set()).add(name)
                    if ancestor not in watches and ancestor not in todo:
                        todo.append(ancestor)
            except OSError as exc:  # ENOSPC: fs.inotify.max_user_watches
                failure = failure or _watch_error(directory, exc)
        for key in set(self._watches.values()) - set(watches.values()):
            try:
                self._backend.remove(key)
            except OSError:
                pass
        owners: dict[object, tuple[str, ...]] = {}
        for directory, key in watches.items():
            owners[key] = (*owners.get(key, ()), directory)
        self._watches, self.owners = watches, owners
        self._full = frozenset(directory for directory in full if directory in watches)
        self._awaited = {ancestor: frozenset(names) for ancestor, names in awaited.items()}
        self.skipped = tuple(skipped)
        if failure is not None:
            raise failure


def _watch_error(directory: str, exc: OSError) -> WatchError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return WatchError(f"cannot watch {directory}: {reason}"
                      " (inotify limits: sysctl fs.inotify.max_user_instances / max_user_watches)")
