"""Every file operation the root supervisor makes by path, in one place (docs/security.md, rules F1-F6).

The danger is the path, not the file: whoever can write a directory on the way can swap an entry
for a symlink, a hard link, a FIFO or a directory between our check and our use. So nothing here
resolves a path in one go. A path is walked component by component from ``/`` with ``O_NOFOLLOW``
(each step ``openat`` relative to the directory fd before it), and each directory is judged on
the fd we hold, not by a separate ``stat``:

* **trusted**: owned by root (or by us, for a non-root caller's private setup) and not writable
  by group or others, or a root-owned sticky directory (``/tmp``: nobody else can rename or delete
  root's entries there). A symlink met inside a trusted directory is followed only if root owns
  it (only root could have made it point anywhere).
* **owned by another user U** and writable only by U: from there on U controls the path, so the
  operation is done *with U's credentials* by a short-lived helper (supervisor/unix/asuser.py).
  Whatever U makes the path point at, the kernel checks U's rights, not root's.
* anything else (group- or world-writable without the sticky bit): refused with the fix to apply.

We walk ourselves rather than use ``openat2(RESOLVE_NO_SYMLINKS)``: the walk has to look at every
directory's owner and mode anyway, and ``openat`` with ``O_NOFOLLOW`` per component gives the same
no-symlink guarantee on every kernel.

Final components are opened with ``O_NOFOLLOW | O_NONBLOCK`` and must be regular files (a FIFO
would block the supervisor forever, a device is never ours to read or write); writes are
temporary file + fsync + ``renameat`` + directory fsync, all relative to the held directory fd.
"""

from __future__ import annotations

import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_HOPS = 40  # the kernel's own symlink limit


class UnsafePath(OSError):
    """A path root must not use as it is; the message is one line naming the path and the fix."""

    def __init__(self, message: str, code: int = errno.EPERM) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserControlled(UnsafePath):
    """Past this point of the path a non-root user decides what it names: act as that user."""

    def __init__(self, message: str, owner: int, group: int) -> None:
        super().__init__(message)
        self.owner, self.group = owner, group


def _trusted_owner(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def judge_directory(info: os.stat_result, path: str, last: bool = False) -> tuple[str, int | None]:
    """("trusted", None), ("user", uid) for a directory that user alone controls, ("shared", None)
    for a root-owned one where others may add entries, or raise UnsafePath.

    Shared is a sticky root directory (/tmp) or, as the LAST directory only, a root-owned
    group-writable one (Ubuntu's /var/log is root:syslog 0775). Root works in a shared directory
    only on entries that are its own and have one link (see open_regular); further down a path,
    a sticky directory is as good as trusted (nobody else can rename root's entries in it, and
    the next directory is judged on its own), a group-writable one is refused.
    """
    mode = info.st_mode
    others_write = mode & (stat.S_IWGRP | stat.S_IWOTH)
    if _trusted_owner(info.st_uid):
        if not others_write:
            return "trusted", None
        if mode & stat.S_ISVTX and info.st_uid == 0:
            return ("shared" if last else "trusted"), None
        if last and info.st_uid == 0 and not mode & stat.S_IWOTH:
            return "shared", None
        who = "world-writable" if mode & stat.S_IWOTH else "group-writable"
        raise UnsafePath(f"directory {path} is {who} (mode {stat.S_IMODE(mode):04o}); fix: chmod go-w {path}")
    if others_write:
        raise UnsafePath(f"directory {path} is writable by others than its owner uid {info.st_uid} "
                         f"(mode {stat.S_IMODE(mode):04o}); fix: chmod go-w {path}")
    return "user", info.st_uid


class Place:
    """Where a path's last component lives: an open directory fd, and who controls that directory.

    ``owner`` is None when root alone controls every directory on the way (root may work in it
    directly), else the uid/gid that controls it from ``controlled_from`` on (work as that user).
    """

    __slots__ = ("fd", "directory", "name", "owner", "group", "controlled_from", "shared")

    def __init__(self, fd: int, directory: str, name: str, owner: int | None, group: int | None,
                 controlled_from: str | None, shared: bool = False) -> None:
        self.fd, self.directory, self.name = fd, directory, name
        self.owner, self.group, self.controlled_from = owner, group, controlled_from
        self.shared = shared  # root's directory, but others may add entries (see judge_directory)

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _split(path: str) -> list[str]:
    if not os.path.isabs(path):
        raise UnsafePath(f"{path}: not an absolute path", errno.EINVAL)
    return [part for part in os.path.normpath(path).split("/") if part]


def locate(path: str, *, create_dirs: bool = False, dir_mode: int = 0o755) -> Place:
    """Walk to the directory holding PATH's last component; see the module docstring.

    With ``create_dirs``, missing directories under trusted ones are created (root-owned,
    exactly ``dir_mode`` whatever the caller's umask); a missing directory under a user's directory is left for the user's helper.
    Raises UnsafePath (refused), FileNotFoundError / NotADirectoryError (missing).
    """
    parts = _split(path)
    if not parts:
        raise UnsafePath("/: not a file path", errno.EISDIR)
    *directories, name = parts
    fd = os.open("/", _DIR_FLAGS)
    current, hops = "/", 0
    owner = group = controlled_from = None
    shared = False
    created: set[str] = set()  # directories made here: given DIR_MODE whatever the umask
    try:
        judge_directory(os.fstat(fd), "/")
        pending = list(directories)
        while pending:
            part = pending.pop(0)
            if part == "..":
                raise UnsafePath(f"{path}: '..' after a symlink is not followed", errno.EINVAL)
            next_path = os.path.join(current, part)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if owner is not None:
                    raise UserControlled(f"{next_path}: no such directory (in uid {owner}'s {controlled_from})",
                                         owner, group) from None
                if not create_dirs:
                    raise FileNotFoundError(errno.ENOENT, f"{next_path}: no such directory") from None
                try:
                    os.mkdir(part, dir_mode, dir_fd=fd)
                    created.add(next_path)
                except FileExistsError:
                    pass
                pending.insert(0, part)  # and now open it like any other
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"{next_path}: not a directory") from None
                if owner is not None:
                    raise UserControlled(f"{next_path} is a symbolic link in uid {owner}'s {controlled_from}",
                                         owner, group) from None
                if info.st_uid != 0:  # e.g. a user's link in /tmp: that user says where it points
                    raise UserControlled(f"{next_path} is a symbolic link owned by uid {info.st_uid}",
                                         info.st_uid, info.st_gid) from None
                hops += 1
                if hops > _MAX_HOPS:
                    raise UnsafePath(f"{path}: too many levels of symbolic links", errno.ELOOP) from None
                target = os.readlink(part, dir_fd=fd)
                # a root-owned link in a trusted directory: as trustworthy as the directory itself
                rest = _split(os.path.join(current, target)) + pending
                os.close(fd)
                fd = os.open("/", _DIR_FLAGS)
                current, pending = "/", rest
                continue
            os.close(fd)
            fd, current = next_fd, next_path
            if current in created:  # mkdir's mode went through the caller's umask (077: 0700)
                os.fchmod(fd, dir_mode)
            info = os.fstat(fd)
            if owner is None:
                verdict, uid = judge_directory(info, current, last=not pending)
                if verdict == "user":
                    owner, group, controlled_from = uid, info.st_gid, current
                shared = verdict == "shared"
            elif info.st_uid not in (0, owner) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise UnsafePath(f"directory {current} (under {controlled_from}, which uid {owner} controls) "
                                 f"is owned by uid {info.st_uid} or writable by others; refusing; "
                                 f"fix: chmod go-w {current}")
        return Place(fd, current, name, owner, group, controlled_from, shared and owner is None)
    except BaseException:
        os.close(fd)
        raise


def open_regular(place: Place, flags: int, mode: int = 0o600) -> int:
    """Open PLACE's last component, never through a symlink, never a FIFO or device (O_NONBLOCK)."""
    try:
        fd = os.open(place.name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=place.fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{place.path} is a symbolic link; refusing to follow it", errno.ELOOP) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{place.path} is not a regular file", errno.EINVAL)
        if place.owner is not None and (info.st_nlink > 1 or info.st_uid not in (0, place.owner)):
            # a hard link planted by the directory's owner to a file of someone else's
            raise UnsafePath(f"{place.path} has {info.st_nlink} links or a foreign owner (uid {info.st_uid}); "
                             "refusing it", errno.EPERM)
        if place.shared and (info.st_nlink > 1 or not _trusted_owner(info.st_uid)):
            # in /tmp or a group-writable /var/log, others may have put this entry there
            raise UnsafePath(f"{place.path} (in {place.directory}, where others may add entries) has "
                             f"{info.st_nlink} links or belongs to uid {info.st_uid}; refusing it", errno.EPERM)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str, limit: int = 1 << 20) -> bytes | None:
    """The content of a regular file (at most LIMIT bytes), None when it does not exist.

    Safe as root even in a user's directory: no component is followed through a symlink and the
    file must be a single-link regular file of its directory's owner, so nothing can make root
    read (and show) a file that the directory's owner could not read.
    """
    try:
        place = locate(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with place:
        try:
            fd = open_regular(place, os.O_RDONLY)
        except FileNotFoundError:
            return None
    try:
        return read_all(fd, limit)
    finally:
        os.close(fd)


def read_all(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(65536, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def write_in(place: Place, data: bytes, mode: int, uid: int = -1, gid: int = -1, prepare=None,
             durable: bool = True) -> None:
    """Atomically replace PLACE's last component: temp + fchown/fchmod + fsync + renameat + dir fsync.

    DURABLE=False skips both fsyncs: for the run directory's files (state, identity), which live
    in /run, a tmpfs that a power loss empties anyway; readers still see the old content or the
    new, never half (the rename is atomic). 100 services under `svctl up` publish their state
    ~700 times while they start and stop: 1.7 s of fsync on a disk, for nothing.

    PREPARE(fd), if given, runs on the finished temporary file just before the rename, and the
    descriptor is then left open for the caller (the PID file takes its lock there, so the file
    is locked from the instant it appears under its name); it returns the fd, else None.
    """
    temporary = f".{place.name}.svctl-{os.getpid()}.tmp"
    try:
        os.unlink(temporary, dir_fd=place.fd)
    except FileNotFoundError:
        pass
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=place.fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid/setgid bits
            if durable:
                os.fsync(fd)
            if prepare is not None:
                prepare(fd)
        except BaseException:
            os.close(fd)
            raise
        if prepare is None:
            os.close(fd)
        os.rename(temporary, place.name, src_dir_fd=place.fd, dst_dir_fd=place.fd)
    except BaseException:
        if prepare is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(temporary, dir_fd=place.fd)
        except OSError:
            pass
        raise
    if durable:
        try:
            os.fsync(place.fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the rename is atomic regardless
    return fd if prepare is not None else None


def write_trusted(path: str, data: bytes, mode: int = 0o644, uid: int = -1, gid: int = -1,
                  create_dirs: bool = False, dir_mode: int = 0o755, prepare=None,
                  durable: bool = True) -> int | None:
    """Atomically write a file that only root may control (PID file, state, boot files, secrets).

    Raises UnsafePath if any directory on the way is controlled by someone else.
    """
    with locate(path, create_dirs=create_dirs, dir_mode=dir_mode) as place:
        if place.owner is not None:
            raise UnsafePath(f"refusing to write {path}: directory {place.controlled_from} belongs to "
                             f"uid {place.owner}; fix: chown root {place.controlled_from}")
        if place.shared:
            raise UnsafePath(f"refusing to write {path}: others may add entries to {place.directory}; "
                             f"fix: chmod go-w {place.directory}, or use a directory of root's")
        return write_in(place, data, mode, uid, gid, prepare, durable)


def unlink_trusted(path: str, only_inode: int | None = None) -> bool:
    """Remove a file from a root-controlled directory (never through a symlink); False if absent.

    With ONLY_INODE, the entry is removed only while it is still that file (a supervisor removes
    only what it created, never a successor's file that took the name).
    """
    try:
        place = locate(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    with place:
        if place.owner is not None:
            raise UnsafePath(f"refusing to remove {path}: directory {place.controlled_from} belongs to "
                             f"uid {place.owner}")
        try:
            if only_inode is not None and os.stat(place.name, dir_fd=place.fd,
                                                   follow_symlinks=False).st_ino != only_inode:
                return False
            os.unlink(place.name, dir_fd=place.fd)
        except FileNotFoundError:
            return False
    return True


def read_trusted(path: str, what: str, limit: int = 1 << 20) -> bytes | None:
    """Content of a file root will act on (names a process, holds state): None if absent.

    Raises UnsafePath unless root alone controls its directories and the file itself is owned by
    root (or by a non-root caller itself) and writable by nobody else.
    """
    try:
        place = locate(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with place:
        if place.owner is not None:
            raise UnsafePath(f"{what} {path}: directory {place.controlled_from} belongs to uid {place.owner}")
        try:
            fd = open_regular(place, os.O_RDONLY)
        except FileNotFoundError:
            return None
    try:
        info = os.fstat(fd)
        if not _trusted_owner(info.st_uid):
            raise UnsafePath(f"{what} {path} is owned by uid {info.st_uid}, not root")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafePath(f"{what} {path} is writable by group or others; fix: chmod go-w {path}")
        return read_all(fd, limit)
    finally:
        os.close(fd)


def controller(path: str) -> tuple[int, int] | None:
    """None when root alone controls PATH's directory chain, else (uid, gid) of the user who does.

    Raises UnsafePath when nobody should be trusted with it (a group/world-writable directory).
    A directory that does not exist yet is judged by its nearest existing ancestor.
    """
    probe = path
    while True:
        try:
            with locate(probe) as place:
                return None if place.owner is None else (place.owner, place.group)
        except UserControlled as exc:
            return exc.owner, exc.group
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(probe)
            if parent == probe:
                return None
            probe = parent
