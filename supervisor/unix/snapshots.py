"""Last-known-good copies of a service's watched files, and rolling back to them.

Decision: a rollback restores the files **to their own paths**. The service reads its config from
there (``jupyterhub -f /etc/jupyterhub/jupyterhub_config.py``), and pointing it at a snapshot instead
would mean rewriting its command line, which svctl cannot do generically. So after a rollback the
file on disk is the good version again, and what the operator sees is what runs.

The rejected version is not lost: before a file is overwritten, its current content is kept as
``RUN_DIR/lkg/rejected-<name>`` (one per watched file, the latest rejection), so the operator can
diff it, fix it and copy it back. ``<name>`` is the watched path with ``%`` and ``/`` escaped, e.g.
``%2Fetc%2Fjupyterhub%2Fjupyterhub_config.py``: unique per path and still readable.

Layout of ``RUN_DIR/lkg/`` (mode 0700: configs hold secrets):

* ``manifest.json``: the snapshot: saved_at (wall-clock, for status), and per path its copy's
  file name, sha256, mode, uid and gid, or ``absent`` when the file did not exist.
* ``<name>.<sha256[:16]>``: content-addressed copies. The manifest is renamed into place last, so a
  crash mid-save leaves the previous snapshot whole; unreferenced copies are removed afterwards.

Restoring writes a temporary file in the target's directory and renames it over the target
(readers never see half a file; the watcher sees one rename), with the saved mode and owner. A
symlinked path (Kubernetes ConfigMap) is restored at its resolved target; read-only mounts cannot
be restored and raise SnapshotError. After restoring, call ``ConfigWatcher.accept(rescan=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable

from supervisor.errors import SvctlError

MANIFEST = "manifest.json"
REJECTED_PREFIX = "rejected-"


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


def save_good(paths: Iterable[str], run_dir: str) -> str:
    """Snapshot the current content of ``paths`` as known good; returns its time (``format_time``).

    Call it when the service became ready on this config. Raises SnapshotError on I/O failure.
    """
    directory = _ensure_dir(run_dir)
    saved_at = time.time()
    entries: dict[str, dict] = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                content = handle.read()
                st = os.fstat(handle.fileno())
        except FileNotFoundError:
            entries[path] = {"absent": True}
            continue
        except OSError as exc:
            raise SnapshotError(f"cannot snapshot {path}: {exc.strerror}") from exc
        digest = hashlib.sha256(content).hexdigest()
        name = f"{copy_name(path)}.{digest[:16]}"
        target = os.path.join(directory, name)
        if not os.path.exists(target):
            _write_atomic(target, content, st.st_mode & 0o7777, st.st_uid, st.st_gid)
        entries[path] = {"copy": name, "sha256": digest, "mode": st.st_mode & 0o7777,
                         "uid": st.st_uid, "gid": st.st_gid}
    manifest = {"saved_at": saved_at, "files": entries}
    _write_atomic(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=1).encode(), 0o600,
                  os.geteuid(), os.getegid())
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
    files = manifest.get("files", {})
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
    target = os.path.realpath(path)
    rejected = os.path.join(directory, REJECTED_PREFIX + copy_name(path))
    current = _read_or_none(target)
    if entry.get("absent"):
        if current is not None:
            _keep_rejected(rejected, current)
            try:
                os.unlink(target)
            except FileNotFoundError:
                pass
            except OSError as exc:
                reason = f"cannot remove {path} (absent in the good config): {exc.strerror}"
                raise SnapshotError(reason) from exc
        return
    try:
        with open(os.path.join(directory, entry["copy"]), "rb") as handle:
            good = handle.read()
    except OSError as exc:
        raise SnapshotError(f"known-good copy of {path} is unreadable: {exc.strerror}") from exc
    if hashlib.sha256(good).hexdigest() != entry["sha256"]:
        raise SnapshotError(f"known-good copy of {path} is corrupt (sha256 mismatch); not restoring it")
    if current == good:
        return
    if current is not None:
        _keep_rejected(rejected, current)
    _write_atomic(target, good, entry["mode"], entry["uid"], entry["gid"], what=path)


def _keep_rejected(rejected: str, content: bytes) -> None:
    _write_atomic(rejected, content, 0o600, os.geteuid(), os.getegid())


def _read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror}") from exc


def _write_atomic(target: str, content: bytes, mode: int, uid: int, gid: int,
                  what: str | None = None) -> None:
    """Temp file in the same directory, mode/owner set, fsync, rename over ``target``."""
    directory = os.path.dirname(target) or "."
    try:
        fd, temp = tempfile.mkstemp(prefix=".svctl-", dir=directory)
    except OSError as exc:
        raise SnapshotError(f"cannot write {what or target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            if os.geteuid() == 0:
                os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)  # after chown: chown clears setuid/setgid bits
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise SnapshotError(f"cannot write {what or target}: {exc.strerror}") from exc
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _ensure_dir(run_dir: str) -> str:
    directory = snapshot_dir(run_dir)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise SnapshotError(f"cannot create {directory}: {exc.strerror}") from exc
    return directory


def _load_manifest(run_dir: str) -> dict:
    path = os.path.join(snapshot_dir(run_dir), MANIFEST)
    try:
        with open(path, "rb") as handle:
            manifest = json.loads(handle.read())
        float(manifest["saved_at"])
        return manifest
    except FileNotFoundError:
        raise SnapshotError("no known-good config yet (the service never became ready)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot manifest: {exc}") from exc


def _collect_garbage(directory: str, entries: dict[str, dict]) -> None:
    keep = {MANIFEST} | {entry["copy"] for entry in entries.values() if "copy" in entry}
    for name in os.listdir(directory):
        if name in keep or name.startswith(REJECTED_PREFIX):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # stale copies only cost disk space
