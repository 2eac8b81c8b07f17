"""The service's stdout/stderr: read from a pipe, written to log_file with size-based rotation.

The child also keeps a copy of the pipe's read end, so if the supervisor is killed the service does
not die of SIGPIPE on its next write (it blocks once the 64 KiB pipe buffer is full instead).
Reopen (logrotate's postrotate, SIGUSR1) opens the path anew.

log_file may sit in a directory the service user controls, so it is opened and rotated through
userfiles (as that user when it is theirs: no planted symlink or directory makes root act on
anything the user could not). Nothing here may stop the supervisor: a reopen that fails keeps the
old descriptor, a rotation step that can't be done is skipped, and output that can't be written
(a full disk) is dropped and counted, so the pipe is always drained and the service never blocks
on it. Each of those is a problem reported to faults.Faults, shown by `svctl status`.
"""

from __future__ import annotations

import os
import time

from supervisor.unix import safefs

LOG_MODE = 0o640
TAIL_BYTES = 65536
RETRY_SECONDS = 5.0  # no new open or rotation attempt sooner than this after one failed


def _userfiles():
    """Imported when first needed: `svctl status` imports this module for tail() alone and must
    not pay for what userfiles needs (sockets, signals, the asuser helper)."""
    from supervisor.unix import userfiles

    return userfiles


def problem_text(what: str, path: str, exc: BaseException) -> str:
    from supervisor.faults import problem_text as text

    return text(what, path, exc)


class LogCapture:
    def __init__(self, path: str, max_bytes: int, backups: int, faults) -> None:
        self.path, self.max_bytes, self.backups, self.faults = path, max_bytes, backups, faults
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self.file_fd = -1
        self.size = 0
        self.failure: str | None = None  # why output is being dropped, while it is
        self.dropped = 0
        self.retry_at = 0.0  # no new open or rotation attempt before this (after one failed)
        self.reopen()

    def reopen(self) -> str | None:
        """Open log_file anew; None, or the problem (the descriptor open before, if any, stays)."""
        try:
            fd = _userfiles().open_append(self.path, LOG_MODE)
        except OSError as exc:
            self.retry_at = time.monotonic() + RETRY_SECONDS
            problem = problem_text("log file", self.path, exc)
            if self.file_fd >= 0:
                problem += "; still writing to the file opened before"
                self.faults.report("log reopen", problem)
            elif self.failure is None:
                self.failure = problem
                self.faults.report("log", problem)
            return problem
        old, self.file_fd = self.file_fd, fd
        if old >= 0:
            os.close(old)
        try:
            self.size = os.fstat(fd).st_size
        except OSError:
            self.size = 0
        self.faults.report("log reopen", None)
        return None

    def drain(self, most: int | None = None) -> None:
        """Move what is in the pipe to the file: everything, or at most MOST reads of 64 KiB (the
        loop's handler: a service writing without pause must not keep the loop from everything
        else, under `svctl up` from every other service; the rest waits in the pipe, whose
        writer blocks when it is full)."""
        while most is None or most > 0:
            most = None if most is None else most - 1
            try:
                data = os.read(self.read_fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self.write(data)

    def write(self, data: bytes) -> None:
        if self.file_fd < 0 and (time.monotonic() < self.retry_at or self.reopen() is not None):
            return self.drop(len(data), None)
        if self.max_bytes and self.size + len(data) > self.max_bytes and self.size > 0:
            self.refresh_size()  # logrotate's copytruncate may have emptied it behind our back
            if self.size + len(data) > self.max_bytes and self.size > 0:
                self.rotate()
        done = 0
        try:
            done = os.write(self.file_fd, data)
            while done < len(data):  # a short write: the disk is filling up
                done += os.write(self.file_fd, data[done:])
        except OSError as exc:
            self.size += done
            return self.drop(len(data) - done, exc)
        self.size += done
        if self.failure is not None:
            self.recovered()

    def refresh_size(self) -> None:
        try:
            self.size = os.fstat(self.file_fd).st_size
        except OSError:
            pass

    def drop(self, count: int, exc: OSError | None) -> None:
        """Output that can't be written is dropped, counted, and shown; the first time, logged."""
        self.dropped += count
        reason = problem_text("log file", self.path, exc) if exc is not None else self.failure
        new = reason != self.failure
        self.failure = reason
        self.faults.report("log", f"{reason}; {self.dropped} bytes of output dropped", quiet=not new)

    def recovered(self) -> None:
        self.failure, self.dropped = None, 0
        self.faults.report("log", None)

    def rotate(self) -> None:
        """PATH -> PATH.1 -> ... (steps that can't be done are skipped); then a new PATH."""
        now = time.monotonic()
        if now < self.retry_at:
            return  # it failed a moment ago: go on writing to the current file
        if self.backups <= 0:
            try:
                os.ftruncate(self.file_fd, 0)
                self.size = 0
            except OSError as exc:
                self.retry_at = now + RETRY_SECONDS
                self.faults.report("rotation", problem_text("log rotation", self.path, exc))
            return
        try:
            skipped = _userfiles().rotate(self.path, self.backups)
        except OSError as exc:  # PATH itself could not be renamed: try again later
            self.retry_at = now + RETRY_SECONDS
            self.faults.report("rotation", problem_text("log rotation", self.path, exc))
            if not os.path.lexists(self.path):  # moved away (logrotate) or its directory lost: start anew
                self.reopen()
            return
        self.faults.report("rotation", f"log rotation skipped {skipped}" if skipped else None)
        self.reopen()

    def close(self) -> None:
        self.drain()
        for fd in (self.read_fd, self.write_fd, self.file_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = self.file_fd = -1


def tail(path: str, lines: int = 10) -> list[str]:
    """The last LINES lines of a log (at most its last 64 KiB), safe to show as root.

    Read in-process through safefs, never through a symbolic link, and only a single-link regular
    file of its directory's owner: a log path the service user controls can't make `status`
    print a file that user could not read. Anything unreadable is simply no lines.
    """
    try:
        with safefs.locate(path) as place:
            fd = safefs.open_regular(place, os.O_RDONLY)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        offset, chunks = max(0, size - TAIL_BYTES), []
        while offset < size and (chunk := os.pread(fd, min(TAIL_BYTES, size - offset), offset)):
            chunks.append(chunk)
            offset += len(chunk)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [line.decode("utf-8", "replace") for line in b"".join(chunks).splitlines()[-lines:]]
