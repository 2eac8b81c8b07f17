"""Linux inotify through libc (ctypes): one non-blocking descriptor, watches, and its event records.

Python has no inotify binding; watchdog's Observer costs three threads and ~7 MB PSS. This is the
minimum the config watcher needs: ``inotify_init1(IN_NONBLOCK | IN_CLOEXEC)``, add/remove a watch,
and a bounded drain of the queue that parses ``struct inotify_event`` records. The descriptor goes
into the caller's selector; nothing here blocks or starts a thread. ``Backend`` is the config
watcher's use of it (unix/watch.py): directories watched through one descriptor in the loop's selector.

``Unavailable`` (an OSError, ENOSYS) means this C library or kernel has no inotify: the caller
falls back to something else. Any other OSError is the kernel's answer (EMFILE: the per-user
instance limit, ENOSPC: the watch limit, ENOENT: the path is gone).
"""

from __future__ import annotations

import ctypes
import errno
import os
import selectors
import struct

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000  # events were lost (wd is -1): the reader must assume anything changed
IN_IGNORED = 0x00008000  # the watch is gone: removed, or its directory deleted or unmounted
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# What a config watcher watches a directory for: anything that can mean new content of an entry, or
# the directory itself gone. Not IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE: reading the file (our own
# re-read, the check command, sed's first pass) would otherwise wake us forever.
DIRECTORY_MASK = (IN_CREATE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE
                  | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_APPEARED = IN_CREATE | IN_MOVED_TO
_SELF = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT

_HEADER = struct.Struct("iIII")  # int wd; uint32_t mask, cookie, len; then len bytes of name, NUL-padded
READ_SIZE = 64 * 1024  # one read; the kernel never splits a record, and one is at most 16 + NAME_MAX + 1
_functions = None


class Unavailable(OSError):
    """No inotify here (the C library lacks it, or the kernel says ENOSYS)."""


class Event:
    """One ``struct inotify_event``: NAME is the entry in the watched directory ("" for the directory itself)."""

    __slots__ = ("wd", "mask", "cookie", "name")

    def __init__(self, wd: int, mask: int, cookie: int = 0, name: str = "") -> None:
        self.wd, self.mask, self.cookie, self.name = wd, mask, cookie, name

    def __eq__(self, other) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.wd, self.mask, self.cookie, self.name) == (other.wd, other.mask, other.cookie, other.name)

    def __repr__(self) -> str:
        return f"Event(wd={self.wd}, mask={self.mask:#x}, cookie={self.cookie}, name={self.name!r})"


def parse(buffer: bytes) -> list[Event]:
    """The records in BUFFER (what one read() returned); a truncated tail is dropped, never guessed."""
    events, offset, end = [], 0, len(buffer)
    while offset + _HEADER.size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
        start = offset + _HEADER.size
        if start + length > end:
            break
        name = os.fsdecode(buffer[start:start + length].split(b"\0", 1)[0])
        events.append(Event(wd, mask, cookie, name))
        offset = start + length
    return events


def _libc():
    global _functions
    if _functions is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init1, add, remove = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
        except (OSError, AttributeError) as exc:  # a C library without inotify (or no dlopen)
            raise Unavailable(errno.ENOSYS, f"no inotify in the C library: {exc}") from None
        init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
        add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
        remove.argtypes, remove.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _functions = (init1, add, remove)
    return _functions


def _error(what: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{what}: {os.strerror(number)}")


class Inotify:
    """One inotify instance. ``fileno()`` goes into a selector; ``read()`` when it is readable."""

    def __init__(self) -> None:
        init1, self._add, self._remove = _libc()
        fd = init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            exc = _error("inotify_init1")
            if exc.errno == errno.ENOSYS:
                raise Unavailable(exc.errno, exc.strerror)
            raise exc
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor; the same one again for a path on an inode already watched (its mask replaced)."""
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise _error(f"inotify_add_watch {path}")
        return wd

    def rm_watch(self, wd: int) -> None:
        """Remove a watch; one the kernel already dropped (EINVAL) is no error."""
        if self._remove(self.fd, wd) < 0:
            exc = _error("inotify_rm_watch")
            if exc.errno != errno.EINVAL:
                raise exc

    def read(self, most: int = 16) -> tuple[list[Event], bool]:
        """What is queued, in at most MOST reads: (events, whether the queue was drained to EAGAIN).

        A queue still holding records keeps the descriptor readable: the selector comes back to it
        after the others had their turn."""
        events: list[Event] = []
        for _ in range(most):
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return events, True
            if not data:
                return events, True
            events.extend(parse(data))
        return events, False

    def close(self) -> None:
        """Closing the instance removes all its watches."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class Backend:
    """Directories watched through one instance whose descriptor is in LOOP's selector; keys are wds.

    WATCHER (unix/watch.py's ConfigWatcher) provides ``owners`` (wd -> the directories it stands for:
    two paths to one inode share one wd), ``notice(directory, name, appeared)`` (does this event count?)
    and ``woken(count)``. Everything runs in the loop's thread.
    """

    name = "inotify"

    def __init__(self, watcher, loop, drain_reads: int = 16) -> None:
        self.watcher, self.loop, self.drain_reads = watcher, loop, drain_reads
        self.instance = Inotify()  # Unavailable: the caller falls back to something else
        try:
            loop.selector.register(self.instance.fd, selectors.EVENT_READ, self.on_readable)
        except BaseException:
            self.instance.close()
            raise

    @property
    def running(self) -> bool:
        return self.instance.fd >= 0

    def fileno(self) -> int:
        return self.instance.fd

    def add(self, directory: str) -> int:
        return self.instance.add_watch(directory, DIRECTORY_MASK)

    def remove(self, wd: int) -> None:
        self.instance.rm_watch(wd)

    def on_readable(self, _fd) -> None:
        """Called by the loop: drain the queue (bounded), then wake once for the batch if anything counted."""
        events, _ = self.instance.read(self.drain_reads)
        self.deliver(events)

    def deliver(self, events: list[Event]) -> None:
        watcher, relevant = self.watcher, 0
        for event in events:
            if event.mask & IN_Q_OVERFLOW:  # some were lost: the watcher's scan re-reads everything anyway
                relevant += 1
                continue
            directories = watcher.owners.get(event.wd)
            if not directories:  # a watch removed by us: its IN_IGNORED, or its events still queued
                continue
            if event.mask & IN_IGNORED:  # the directory is gone: the scan re-adds what is still wanted
                del watcher.owners[event.wd]
                relevant += 1
                continue
            if not event.mask & DIRECTORY_MASK:
                continue
            name = None if not event.name or event.mask & _SELF else event.name
            if any(watcher.notice(directory, name, bool(event.mask & _APPEARED)) for directory in directories):
                relevant += 1
        if relevant:
            watcher.woken(relevant)

    def close(self) -> None:
        if self.instance.fd >= 0:
            self.loop.forget(self.instance.fd)  # out of the selector before the number can be reused
            self.instance.close()  # and with it every watch
