"""state.json as the supervisor publishes it: what goes in (nothing secret), and a write that
survives a full disk or a full descriptor table.

state.json is world-readable (0644: `svctl status` works for everyone), so the published config
record leaves out the ``environment`` table (its values are often secrets), for a service file
that is not world-readable also on_failure and the health/ready query strings, and says it is
``redacted``, and every environment value is masked in the machine's status (a rejected check's
summary may quote one).

StateFile writes through rundir.write_state (atomic, never a half-written file). When that fails
for want of space or descriptors, the state goes into space reserved ahead for the purpose: a
preallocated file, kept open, whose blocks are overwritten (no new space needed), cut to size and
renamed over state.json, then reserved anew from what the old state.json freed. So a full disk
does not leave `status` naming a dead PID. When even that fails, the last good state.json stays
and the caller retries.
"""

from __future__ import annotations

import os

from supervisor import jsontext
from supervisor.faults import describe
from supervisor.log import redact
from supervisor.unix import rundir

TIMES = ("started_at", "ready_at", "last_exit_at", "next_retry_at", "degraded_at")


def public_record(config) -> dict | None:
    """The config record for state.json (lets `status` skip the TOML parser), minus the
    environment's values, and, for a service file not readable by everyone (0600, or in a 0700
    directory: its admin meant it private), minus on_failure and check (their arguments may hold a
    token) and the query strings of health and ready (?token=...). Incomplete then, so it says so
    ("redacted"): config.load uses such a record only for display (status), anything that may
    start the service parses the file. Judged once, when the supervisor starts (docs/security.md S1)."""
    from supervisor.config import record

    entry = record(config)
    if entry is None:
        return entry
    data, private = dict(entry["data"]), not world_readable(config.path)
    data.pop("environment", None)
    if private:
        data.pop("on_failure", None)
        data.pop("check", None)
        for key in ("health", "ready"):
            if isinstance(data.get(key), str) and "?" in data[key]:
                data[key] = data[key].partition("?")[0] + "?" + REDACTED_QUERY
    if data == entry["data"]:
        return entry
    return {**entry, "data": data, "redacted": True}


REDACTED_QUERY = "(redacted)"  # what `svctl status` shows of a private file's ?token=...


def world_readable(path: str) -> bool:
    """Can any user read PATH: the file readable by others, and every directory above it (on the
    path as written and, if that holds a symlink, on the resolved one) searchable by others? A
    0644 file in a 0700 directory is as private as a 0600 one. ACLs are not looked at."""
    import stat

    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        for each in {os.path.abspath(path), os.path.realpath(path)}:
            directory = os.path.dirname(each)
            while True:
                if not os.stat(directory).st_mode & stat.S_IXOTH:
                    return False
                if directory == os.path.dirname(directory):
                    break
                directory = os.path.dirname(directory)
    except OSError:
        return False  # unknown: the safe answer
    return True


def public_status(status: dict, now_wall: float, now_mono: float, secrets: tuple[str, ...]) -> dict:
    """The machine's status with wall-clock times and no secret in it."""
    for key in TIMES:
        if status[key] is not None:
            status[key] = now_wall - (now_mono - status[key])
    if status["rejected"] is not None:
        status["rejected"] = [status["rejected"][0], now_wall - (now_mono - status["rejected"][1])]
    health = status.get("health")
    if health is not None and health.get("last_failure_at") is not None:
        status["health"] = {**health, "last_failure_at": now_wall - (now_mono - health["last_failure_at"])}
    if secrets:
        status = redact(status, secrets)
    return status


class StateFile:
    """state.json: written by rundir.write_state, or into the reserved space when that fails."""

    RESERVE = 16 * 1024  # a state.json is 1-3 KiB; a large config record adds a few

    def __init__(self, directory: str, name: str = "state.json") -> None:
        self.directory, self.name = directory, name
        self.reserve_name = f".{name}.reserve"
        self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.reserve_fd = -1
        self.make_reserve()

    def make_reserve(self) -> bool:
        """Preallocate the reserve file (once more after each use); False when there is no room."""
        try:
            os.unlink(self.reserve_name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        try:
            fd = os.open(self.reserve_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644, dir_fd=self.dir_fd)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.RESERVE)
        except OSError:
            os.close(fd)
            self._unlink_reserve()
            return False
        self.reserve_fd = fd
        return True

    def write(self, state: dict) -> str | None:
        """None when written as usual; the reason when it went into the reserve. Raises OSError when
        neither worked (the previous state.json is then untouched)."""
        try:
            rundir.write_state(self.directory, state)
        except OSError as exc:
            if self.reserve_fd < 0 or not self._write_reserve(jsontext.dumps(state, compact=True).encode()):
                raise
            self.make_reserve()
            return describe(exc)
        if self.reserve_fd < 0:
            self.make_reserve()
        return None

    def _write_reserve(self, data: bytes) -> bool:
        """Overwrite the reserve's preallocated blocks (no new space needed), cut it to size and
        rename it over state.json: as atomic for readers as the usual write."""
        if len(data) > self.RESERVE:
            return False
        fd = self.reserve_fd
        try:
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], done)
            os.ftruncate(fd, len(data))
            os.rename(self.reserve_name, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError:
            try:
                os.posix_fallocate(fd, 0, self.RESERVE)  # whole again for the next try, if there is room
            except OSError:
                pass
            return False
        self.reserve_fd = -1
        os.close(fd)  # it is state.json now
        return True

    def _unlink_reserve(self) -> None:
        try:
            os.unlink(self.reserve_name, dir_fd=self.dir_fd)
        except OSError:
            pass

    def close(self) -> None:
        if self.reserve_fd >= 0:
            os.close(self.reserve_fd)
            self.reserve_fd = -1
            self._unlink_reserve()
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


class PrivateReasons:
    """A rejected check's reason quotes the config (`nginx -t` prints the offending line), and a
    config that is not world-readable may hold secrets that are not `environment` values: then
    state.json (world-readable) gets HIDDEN_REASON, and the reason goes to the root-only
    private.json, which `svctl status` shows to root (docs/security.md S2)."""

    def __init__(self, config, directory: str) -> None:
        self.config, self.directory = config, directory
        self.written: str | None = None

    def is_private(self) -> bool:
        import stat

        for path in (self.config.path, *self.config.watch):
            try:
                if not os.stat(path).st_mode & stat.S_IROTH:
                    return True
            except OSError:
                return True  # unknown: the safe answer
        return False

    def publish(self, rejected: list | None) -> list | None:
        """REJECTED as state.json may show it; writes private.json when the reason changed."""
        if not rejected or not self.is_private():
            return rejected
        if rejected[0] != self.written:
            rundir.write_private(self.directory, {"rejected": rejected})
            self.written = rejected[0]
        return [rundir.HIDDEN_REASON, rejected[1]]
