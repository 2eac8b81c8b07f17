"""Last-known-good copies of a service's watched files, and rolling back to them.

Decision: a rollback restores the files **to their own paths**. The service reads its config from
there (``jupyterhub -f /etc/jupyterhub/jupyterhub_config.py``), and pointing it at a snapshot instead
would mean rewriting its command line, which svctl cannot do generically. So after a rollback the
file on disk is the good version again, and what the operator sees is what runs.

What is saved is what was validated (docs/security.md P2): ``save_good`` is handed the bytes the
caller captured (``capture``) just before the check ran and found unchanged right after it (for
the first start: just before the service was spawned). Reading the files again once the service
is ready would bless whatever an editor or an automation tool wrote in between.

The rejected version is not lost: before a file is overwritten, its current content is kept as
``RUN_DIR/lkg/rejected-<name>`` (one per watched file, the latest rejection), so the operator can
diff it, fix it and copy it back. ``<name>`` is the watched path with ``%`` and ``/`` escaped, e.g.
``%2Fetc%2Fjupyterhub%2Fjupyterhub_config.py``: unique per path and still readable.

Layout of ``RUN_DIR/lkg/`` (root's, mode 0700: configs hold secrets):

* ``manifest.json``: the snapshot: saved_at (wall-clock, for status), and per path its copy's
  file name, sha256, and the mode and owner to restore it with, or ``absent`` when the file did
  not exist.
* ``<name>.<sha256[:16]>``: content-addressed copies (root's, 0600). The manifest is renamed into
  place last, so a crash mid-save leaves the previous snapshot whole; unreferenced copies are
  removed afterwards.

Who touches what (docs/security.md F2, F3): the store is root's own and is written only with
``safefs.write_trusted`` (temp + fsync + rename + directory fsync). The watched files may sit in
a directory the service's user controls, so they are read, replaced and removed only through
``userfiles``: with that user's rights, and a symlink, FIFO or anything else planted at the path
is replaced or removed itself, never followed and never opened blocking. A root-owned symlink in
a chain root alone controls (a Kubernetes ConfigMap) is restored at its resolved target
(``watch.watched_target``); a read-only mount cannot be restored and raises SnapshotError.
After restoring, call ``ConfigWatcher.accept(rescan=True)``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Mapping

from supervisor import jsontext
from supervisor.errors import SvctlError
from supervisor.unix import safefs, userfiles
from supervisor.unix.watch import WATCHED_LIMIT, read_watched, sha256_hex, watched_target  # sha256_hex: no OpenSSL

MANIFEST = "manifest.json"
REJECTED_PREFIX = "rejected-"
UNKNOWN_MODE = 0o600  # when the file's own mode cannot be known: private rather than readable
_UNREADABLE = object()  # what stands at the path is no regular file we may read (a FIFO, a planted link)


class SnapshotError(SvctlError, OSError):
    """No usable snapshot, or a file could not be saved or restored (message names the path).

    Also an OSError: a failed snapshot is an I/O failure, and callers that guard file work with
    ``except OSError`` must not crash the supervisor's loop over one.
    """


def snapshot_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "lkg")


def copy_name(path: str) -> str:
    return path.replace("%", "%25").replace("/", "%2F")


def format_time(saved_at: float) -> str:
    """Local wall-clock time for status lines: ``2026-11-26 08:43:12``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved_at))


def capture(paths: Iterable[str]) -> dict[str, bytes | None]:
    """The watched files' content now (None: absent), read safely (``watch.read_watched``).

    Raises SnapshotError ("watched file unreadable: ...", one line) for a file that exists but
    cannot be read: a FIFO, a device, a directory, a symlink planted in a user's directory.
    """
    contents: dict[str, bytes | None] = {}
    for path in paths:
        try:
            contents[path] = read_watched(path)
        except OSError as exc:
            raise SnapshotError(f"watched file unreadable: {exc.strerror or exc}") from None
    return contents


def changed_paths(before: Mapping[str, bytes | None], after: Mapping[str, bytes | None]) -> list[str]:
    """The paths whose content differs between two captures (in BEFORE's order, then new ones)."""
    missing = object()
    paths = list(before) + [path for path in after if path not in before]
    return [path for path in paths if before.get(path, missing) != after.get(path, missing)]


def save_good(contents: Mapping[str, bytes | None], run_dir: str) -> str:
    """Make CONTENTS (path -> validated bytes, None = absent) the known-good snapshot.

    Call it when the service became ready on exactly these bytes. Returns the snapshot's time
    (``format_time``). Raises SnapshotError on I/O failure; the previous snapshot then stays.
    """
    directory = _open_store(run_dir)
    saved_at = time.time()
    entries: dict[str, dict] = {}
    for path, content in contents.items():
        if content is None:
            entries[path] = {"absent": True}
            continue
        digest = sha256_hex(content)
        name = f"{copy_name(path)}.{digest[:16]}"
        if _stored(os.path.join(directory, name)) != digest:
            _write_store(os.path.join(directory, name), content)
        mode, uid, gid = _restore_metadata(path)
        entries[path] = {"copy": name, "sha256": digest, "mode": mode, "uid": uid, "gid": gid}
    manifest = {"saved_at": saved_at, "files": entries}
    _write_store(os.path.join(directory, MANIFEST), jsontext.dumps(manifest).encode())
    _collect_garbage(directory, entries)
    return format_time(saved_at)


def good_since(run_dir: str) -> float | None:
    """Wall-clock time of the last good snapshot, or None when there is none."""
    try:
        return float(_load_manifest(run_dir)["saved_at"])
    except SnapshotError:
        return None


def restore_good(paths: Iterable[str], run_dir: str) -> str:
    """Put the last good content back at ``paths``; returns the snapshot's time (``format_time``).

    Files already holding the good content are left alone (no event, no rejected copy). A file
    that did not exist when the snapshot was taken is moved aside to ``rejected-<name>``.
    Raises SnapshotError when there is no snapshot, a path is not in it, or writing fails.
    """
    manifest = _load_manifest(run_dir)
    directory = snapshot_dir(run_dir)
    files = manifest["files"]
    paths = list(paths)
    missing = [path for path in paths if path not in files]
    if missing:
        raise SnapshotError(f"no known-good copy of {', '.join(missing)} (it was not watched then)")
    for path in paths:
        _restore_one(path, files[path], directory)
    return format_time(float(manifest["saved_at"]))


def rejected_path(path: str, run_dir: str) -> str:
    """Where the rejected version of ``path`` is kept after a rollback."""
    return os.path.join(snapshot_dir(run_dir), REJECTED_PREFIX + copy_name(path))


def _restore_one(path: str, entry: dict, directory: str) -> None:
    try:
        target = watched_target(path)
    except OSError as exc:
        raise SnapshotError(f"cannot restore {path}: {exc.strerror or exc}") from None
    rejected = os.path.join(directory, REJECTED_PREFIX + copy_name(path))
    try:
        current = read_watched(path)
    except OSError:
        current = _UNREADABLE  # nothing we may read to keep aside; it is replaced (or removed) itself
    if entry.get("absent"):
        if current is None:
            return
        if isinstance(current, bytes):
            _keep_rejected(rejected, current)
        try:
            userfiles.remove(target)  # the entry itself: a planted symlink goes, its target stays
        except OSError as exc:
            reason = f"cannot remove {path} (absent in the good config): {userfiles.describe(exc)}"
            raise SnapshotError(reason) from None
        return
    good = _read_copy(directory, entry, path)
    if current == good:
        return
    if isinstance(current, bytes):
        _keep_rejected(rejected, current)
    try:
        userfiles.replace(target, good, entry["mode"], entry["uid"], entry["gid"])
    except OSError as exc:
        raise SnapshotError(f"cannot restore {path}: {userfiles.describe(exc)}") from None


def _read_copy(directory: str, entry: dict, path: str) -> bytes:
    name = entry.get("copy")
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise SnapshotError(f"known-good copy of {path}: bad entry in the snapshot manifest; not restoring it")
    try:
        good = safefs.read_bytes(os.path.join(directory, name), WATCHED_LIMIT + 1)
    except OSError as exc:
        raise SnapshotError(f"known-good copy of {path} is unreadable: {exc.strerror or exc}") from None
    if good is None:
        raise SnapshotError(f"known-good copy of {path} is missing from {directory}")
    if sha256_hex(good) != entry.get("sha256"):
        raise SnapshotError(f"known-good copy of {path} is corrupt (sha256 mismatch); not restoring it")
    return good


def _restore_metadata(path: str) -> tuple[int, int, int]:
    """Mode, uid and gid to restore PATH with: those of the file there now (looked at, not opened).

    Only where root alone controls the directory is the owner worth recording: in a user's
    directory the restore runs as that user, so the file is theirs anyway, and whatever they
    planted there says nothing about the owner or setuid bits root should ever apply.
    """
    try:
        with safefs.locate(watched_target(path)) as place:
            info = os.stat(place.name, dir_fd=place.fd, follow_symlinks=False)
            user_controlled = place.owner is not None
    except OSError:
        return UNKNOWN_MODE, -1, -1
    if not stat.S_ISREG(info.st_mode):
        return UNKNOWN_MODE, -1, -1
    if user_controlled:
        return stat.S_IMODE(info.st_mode) & 0o777, -1, -1
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def _keep_rejected(rejected: str, content: bytes) -> None:
    _write_store(rejected, content)


def _open_store(run_dir: str) -> str:
    """RUN_DIR/lkg, created if needed, root's alone and 0700 (configs hold secrets)."""
    directory = snapshot_dir(run_dir)
    try:
        with safefs.locate(os.path.join(directory, MANIFEST), create_dirs=True, dir_mode=0o700) as place:
            controlled_by = place.owner
            if controlled_by is None:
                os.fchmod(place.fd, 0o700)
    except OSError as exc:
        raise SnapshotError(f"cannot use {directory}: {exc.strerror or exc}") from None
    if controlled_by is not None:
        raise SnapshotError(f"refusing to keep snapshots in {directory}: uid {controlled_by} controls it; "
                            f"fix: chown root {directory}")
    return directory


def _write_store(path: str, content: bytes) -> None:
    try:
        safefs.write_trusted(path, content, 0o600)
    except OSError as exc:
        raise SnapshotError(f"cannot write {path}: {exc.strerror or exc}") from None


def _stored(path: str) -> str | None:
    """sha256 of a copy already in the store (None: not there or unreadable, so write it)."""
    try:
        data = safefs.read_bytes(path, WATCHED_LIMIT + 1)
    except OSError:
        return None
    return None if data is None else sha256_hex(data)


def _load_manifest(run_dir: str) -> dict:
    path = os.path.join(snapshot_dir(run_dir), MANIFEST)
    try:
        data = safefs.read_bytes(path)
    except OSError as exc:
        raise SnapshotError(f"{path}: unreadable snapshot manifest: {exc.strerror or exc}") from None
    if data is None:
        raise SnapshotError("no known-good config yet (the service never became ready)")
    try:
        manifest = jsontext.loads(data)
        float(manifest["saved_at"])
        if not isinstance(manifest["files"], dict):
            raise TypeError("files is not a table")
        return manifest
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot manifest: {exc}") from None


def _collect_garbage(directory: str, entries: dict[str, dict]) -> None:
    keep = {MANIFEST} | {entry["copy"] for entry in entries.values() if "copy" in entry}
    try:
        place = safefs.locate(os.path.join(directory, MANIFEST))
    except OSError:
        return  # stale copies only cost disk space
    with place:
        for name in os.listdir(place.fd):
            if name in keep or name.startswith(REJECTED_PREFIX):
                continue
            try:
                os.unlink(name, dir_fd=place.fd)
            except OSError:
                pass  # a directory someone made here, or already gone: only disk space
