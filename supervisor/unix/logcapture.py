"""The service's stdout/stderr: read from a pipe, written to log_file with size-based rotation.

The child also keeps a copy of the pipe's read end, so if the supervisor is killed the service does
not die of SIGPIPE on its next write (it blocks once the 64 KiB pipe buffer is full instead).
Reopen (logrotate's postrotate, SIGUSR1) closes and reopens the path.
"""

from __future__ import annotations

import os


class LogCapture:
    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self.file_fd = -1
        self.size = 0
        self.reopen()

    def reopen(self) -> None:
        if self.file_fd >= 0:
            os.close(self.file_fd)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.file_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW,
                               0o640)
        self.size = os.fstat(self.file_fd).st_size

    def drain(self) -> None:
        """Move whatever is in the pipe to the file (called when the pipe is readable)."""
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self.write(data)

    def write(self, data: bytes) -> None:
        if self.max_bytes and self.size + len(data) > self.max_bytes and self.size > 0:
            self.rotate()
        os.write(self.file_fd, data)
        self.size += len(data)

    def rotate(self) -> None:
        if self.backups <= 0:
            os.ftruncate(self.file_fd, 0)
            self.size = 0
            return
        for index in range(self.backups - 1, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self.reopen()

    def close(self) -> None:
        self.drain()
        for fd in (self.read_fd, self.write_fd, self.file_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = self.file_fd = -1


def tail(path: str, lines: int = 10) -> list[str]:
    """The last LINES lines of a file (reads at most 64 KiB from the end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            data = handle.read()
    except OSError:
        return []
    return [line.decode("utf-8", "replace") for line in data.splitlines()[-lines:]]
