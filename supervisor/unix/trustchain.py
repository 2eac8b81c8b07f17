"""Could anyone but root change a file that root is about to use? The file and its whole path.

A file is only as safe as every directory on the way to it: whoever can write a directory can
rename their own file, directory or symlink over the entry root is about to read or execute. So the
file and each directory that holds it, or holds a symlink leading to it, must be owned by root (or
by the caller, for private non-root setups) and not group- or world-writable. A sticky directory
owned by root (/tmp, /var/tmp) is fine: nobody can rename or delete entries they do not own there,
and the owner of the entry itself is checked next. Symlinks are followed here, one component at a
time, so each link is judged where it sits, and so are the directories of what it points to.

Cheap enough for `svctl status`: one lstat per path component, no imports beyond os and stat.
"""

from __future__ import annotations

import os
import stat

from supervisor.unix.trust import trusted_owner

MAX_SYMLINKS = 40  # the kernel's limit for one path lookup
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class Untrusted(ValueError):
    """The opened file is not one root may believe (the message says why and the fix)."""


class TooLarge(ValueError):
    pass


def check_chain(path: str) -> str | None:
    """Why PATH (followed through its symlinks) could be changed by someone else, or None.

    One line, ending with the fix. A path that does not exist is no trust problem (None): every
    directory up to the missing entry was checked, so nobody but root can create it; the caller
    reports the missing file its own way.
    """
    reason, info, resolved = walk(path)
    if reason or info is None:
        return reason
    return file_problem(info, resolved)


def walk(path: str) -> tuple[str | None, os.stat_result | None, str]:
    """(reason, lstat of the final file or None if it does not exist, the resolved path).

    Checks "/" and every directory entered on the way, and every symlink (its owner: a link in a
    sticky directory could otherwise be replaced by whoever owns it). Not the final file itself:
    see file_problem, which callers apply to an fstat of the file they opened.
    """
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    # not abspath(): it would fold "link/.." before the link is followed; the kernel does not
    pending = [part for part in reversed(path.split("/")) if part]
    current = "/"
    info = os.lstat("/")
    reason = directory_problem(info, "/")
    if reason:
        return reason, None, current
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":  # CURRENT has no symlinks left in it, so its parent is the real parent
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return None, None, candidate
        except OSError as exc:
            return f"cannot check {candidate}: {exc.strerror}", None, candidate
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                return f"{path}: too many levels of symbolic links", None, candidate
            if not trusted_owner(info.st_uid):
                return (f"the symlink {candidate} is owned by {owner_name(info.st_uid)}, not root; "
                        f"fix: chown -h root {candidate}"), None, candidate
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                return f"cannot read the symlink {candidate}: {exc.strerror}", None, candidate
            if target.startswith("/"):
                current = "/"  # already checked
            pending.extend(part for part in reversed(target.split("/")) if part)
            continue
        if pending:  # a directory we are about to enter
            if not stat.S_ISDIR(info.st_mode):
                return f"{candidate} is not a directory", None, candidate
            reason = directory_problem(info, candidate)
            if reason:
                return reason, None, candidate
        current = candidate
    return None, info, current


def directory_problem(info: os.stat_result, directory: str) -> str | None:
    """Why others could rename entries of DIRECTORY, or None (a root-owned sticky one is fine)."""
    if not trusted_owner(info.st_uid):
        return (f"the directory {directory} is owned by {owner_name(info.st_uid)}, not root, who can "
                f"replace anything in it; fix: chown root {directory}")
    writable = info.st_mode & WRITABLE_BY_OTHERS
    if writable and not (info.st_mode & stat.S_ISVTX and info.st_uid == 0):
        return (f"the directory {directory} is {_who(info.st_mode)} (mode {stat.S_IMODE(info.st_mode):04o}), "
                f"so others can replace anything in it; fix: chmod go-w {directory}")
    return None


def file_problem(info: os.stat_result, path: str) -> str | None:
    """Why the file with this (f)stat is not root's to believe or run, or None."""
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if not trusted_owner(info.st_uid):
        return f"{path} is owned by {owner_name(info.st_uid)}, not root; fix: chown root {path}"
    if info.st_mode & WRITABLE_BY_OTHERS:
        return (f"{path} is {_who(info.st_mode)} (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"fix: chmod go-w {path}")
    return None


def read_regular_file(path: str, limit: int) -> bytes:
    """The content of PATH, read through one fd and judged by fstat of that same fd (no race with
    a separate stat): a regular file, trusted owner and mode, at most LIMIT bytes. Opened
    non-blocking, so a FIFO or device put there fails at once instead of hanging the caller.
    Raises OSError (FileNotFoundError...), Untrusted or TooLarge. Check the directories first (walk).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        problem = file_problem(info, path)
        if problem:
            raise Untrusted(problem)
        if info.st_size > limit:
            raise TooLarge(path)
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:  # it grew while we read it
                raise TooLarge(path)
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _who(mode: int) -> str:
    return "world-writable" if mode & stat.S_IWOTH else "group-writable"


def owner_name(uid: int) -> str:
    """'nobody (uid 65534)': only on the refusal path, so the passwd lookup costs nothing normally."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def watched_file_refusal(path: str) -> str | None:
    """For a service that runs as root: a one-line refusal when someone other than root could
    change the watched file PATH (its reloads run code as root), by check_chain's rule: the file,
    after symlinks, and every directory holding it or a link to it. None when safe or missing
    (the watcher reports that separately). Only a few lstat() calls."""
    reason = check_chain(path)
    if reason is None:
        return None
    return f"refusing to watch {path}: {reason} (the service runs as root: whoever can change it runs code as root)"
