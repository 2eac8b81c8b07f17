"""Validate a service's config before anything changes: run its ``check`` command; vet watched files.

Both functions block. ``run_check`` blocks for up to ``check_timeout`` (plus ~2 s to collect output
after a kill), so the runtime must call it off the loop (a thread). ``check_watched_file_safety``
only makes a handful of ``stat`` calls (microseconds, unless the file lives on a hung NFS mount).

The check runs:
* in a fresh scratch directory (tempfile.mkdtemp, removed afterwards), so a check that writes
  state (JupyterHub creates jupyterhub.sqlite and a cookie secret in its cwd) cannot touch the
  running service's working directory; TMPDIR points there too, for the same reason;
* with ``config.env`` merged over a minimal environment (not the supervisor's own environment,
  which under an init script is arbitrary, and under a shell leaks the operator's);
* as ``config.user`` when the supervisor is root, like the service itself;
* in a new session, so on timeout the whole process group is killed, not just the top process.
"""

from __future__ import annotations

import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from supervisor.config import ServiceConfig

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 256 * 1024  # keep the tail: the reason is usually at the end
SUMMARY_LIMIT = 200
_DRAIN_SECONDS = 2.0  # after the check ended: a process that left its group may hold the pipe
_ERRORISH = re.compile(r"\b(error|fatal|invalid|exception|failed|traceback)\b", re.IGNORECASE)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Warning|Interrupt)\b.*")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    summary: str  # one line, for status ("config rejected: <summary>")
    output: str  # stdout and stderr interleaved (tail, at most OUTPUT_LIMIT), for the JSON event
    seconds: float


def run_check(config: ServiceConfig, timeout: float | None = None) -> CheckResult:
    """Run ``config.check`` and say whether the config it examines is valid. Blocks; never raises.

    ``timeout`` defaults to ``config.check_timeout``; 0 or less means no limit.
    """
    if not config.check:
        return CheckResult(True, "no check configured", "", 0.0)
    limit = config.check_timeout if timeout is None else timeout
    started = time.monotonic()
    try:
        identity = _identity(config.user)
    except _Refused as exc:
        return CheckResult(False, str(exc), "", 0.0)
    scratch = tempfile.mkdtemp(prefix=f"svctl-check-{config.name}-")
    try:
        if identity is not None:
            os.chown(scratch, identity.pw_uid, identity.pw_gid)  # the check may write its state there
        return _run(config, identity, scratch, limit if limit and limit > 0 else None, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Refused(Exception):
    pass


def _identity(user: str | None) -> pwd.struct_passwd | None:
    """The account to switch to, or None to run as ourselves."""
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise _Refused(f"cannot run check: unknown user {user!r}") from None
    if os.geteuid() == entry.pw_uid:
        return None
    if os.geteuid() != 0:
        raise _Refused(f"cannot run check as {user}: svctl is not running as root")
    return entry


def check_environment(config: ServiceConfig, identity: pwd.struct_passwd | None,
                      scratch: str) -> dict[str, str]:
    """A minimal environment with the service's own ``environment`` table on top."""
    account = identity or pwd.getpwuid(os.geteuid())
    env = {
        "PATH": BASE_PATH,
        "LANG": "C.UTF-8",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": account.pw_shell or "/bin/sh",
        "TMPDIR": scratch,
    }
    env.update(config.env)
    return env


def _run(config: ServiceConfig, identity: pwd.struct_passwd | None, scratch: str,
         limit: float | None, started: float) -> CheckResult:
    user_args: dict = {}
    if identity is not None:
        user_args = {"user": identity.pw_uid, "group": identity.pw_gid,
                     "extra_groups": os.getgrouplist(identity.pw_name, identity.pw_gid)}
    try:
        proc = subprocess.Popen(
            list(config.check), cwd=scratch, env=check_environment(config, identity, scratch),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, **user_args,
        )
    except OSError as exc:
        reason = f"cannot run {config.check[0]}: {exc.strerror or exc}"
        return CheckResult(False, reason, "", time.monotonic() - started)
    reader = _Reader(proc)
    try:
        timed_out = not _wait_unreaped(proc, limit)
    finally:
        # Kill the group as soon as the check itself is done (or out of time): helpers it left in
        # the background must not outlive it, nor hold the output pipe open and stall us. The
        # leader is not reaped yet, so its PID (= the group id) cannot have been reused.
        _kill_group(proc.pid)
        proc.wait()
    raw = reader.result(_DRAIN_SECONDS)
    seconds = time.monotonic() - started
    output = _tail(raw.decode("utf-8", errors="replace"))
    if timed_out:
        return CheckResult(False, f"timed out after {limit:g}s", output, seconds)
    if proc.returncode == 0:
        return CheckResult(True, "valid", output, seconds)
    return CheckResult(False, f"{_status_text(proc.returncode)}: {summarize(output)}", output, seconds)


def _wait_unreaped(proc: subprocess.Popen, limit: float | None) -> bool:
    """Wait until the process exits, without reaping it; False on timeout."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # kernel < 5.3: reaping is fine, only a tiny PID-reuse window remains
        try:
            proc.wait(timeout=limit)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], limit)
        return bool(ready)
    finally:
        os.close(fd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Reader:
    """Collects the check's output in a thread, so waiting is bounded by the process, not the pipe."""

    def __init__(self, proc: subprocess.Popen) -> None:
        # A BufferedReader (stdout=PIPE, bufsize=-1); the thread keeps a reference, so an abandoned
        # reader never ends up reading a recycled fd number.
        self._stream: Any = proc.stdout
        self._chunks: list[bytes] = []
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="svctl-check-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for chunk in iter(lambda: self._stream.read1(1 << 16), b""):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size > 2 * OUTPUT_LIMIT and len(self._chunks) > 1:  # keep memory bounded
                self._size -= len(self._chunks.pop(0))

    def result(self, grace: float) -> bytes:
        # A process outside the group (it called setsid) may still hold the pipe: stop waiting
        # after ``grace`` and leave the daemon thread to finish when that process exits.
        self._thread.join(grace)
        return b"".join(list(self._chunks))


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return "[... output truncated ...]\n" + text[-OUTPUT_LIMIT:]


def _status_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def summarize(output: str) -> str:
    """The first meaningful line of a failure's output.

    A Python traceback's meaning is in its *last* line (``SyntaxError: invalid syntax``), so after
    a traceback take the exception line; otherwise the first line that looks like an error;
    otherwise the first non-empty line.
    """
    lines = [line.rstrip() for line in output.splitlines()]
    text = [line.strip() for line in lines if line.strip()]
    if not text:
        return "(no output)"
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        for line in reversed(lines):
            if _EXCEPTION_LINE.match(line):
                return _clip(line)
    for line in text:
        if _ERRORISH.search(line):
            return _clip(line)
    return _clip(text[0])


def _clip(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 3] + "..."


def runs_as_root(service_user: str | None) -> bool:
    """Whether the service's processes have uid 0 (user unset means: as the supervisor)."""
    if service_user is None:
        return os.geteuid() == 0
    try:
        return pwd.getpwnam(service_user).pw_uid == 0
    except KeyError:
        return service_user == "root"


def check_watched_file_safety(path: str, service_user: str | None) -> str | None:
    """A one-line refusal when someone other than root could change code that runs as root.

    Checked when the service runs as root: the file (after following symlinks) must be owned by
    root and not group/world-writable, and so must every directory that holds it or a symlink
    leading to it (whoever can write a directory can rename a new file over the config; a sticky
    root-owned directory like /tmp is fine). Returns None when safe, or when the file does not
    exist (the watcher reports that separately). Blocks only for a few stat() calls.
    """
    if not runs_as_root(service_user):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot check watched file: {exc.strerror}"
    reason = _unsafe(path, st, is_dir=False)
    if reason:
        return reason
    from supervisor.unix.watch import watch_directories  # light: watchdog is imported lazily there

    for directory in _ancestors(watch_directories(path)):
        try:
            dst = os.stat(directory)
        except OSError:
            continue
        reason = _unsafe(directory, dst, is_dir=True, file=path)
        if reason:
            return reason
    return None


def _ancestors(directories: list[str]) -> list[str]:
    result: list[str] = []
    for directory in directories:
        current = os.path.realpath(directory)
        while True:
            if current not in result:
                result.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return result


def _unsafe(path: str, st: os.stat_result, *, is_dir: bool, file: str | None = None) -> str | None:
    what = f"directory {path} (holding {file})" if is_dir else path
    runs = "the service runs as root, so whoever can change it runs code as root"
    if st.st_uid != 0:
        owner = _user_name(st.st_uid)
        return f"refusing to watch {what}: owned by {owner}, {runs}; fix: chown root {path}"
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (is_dir and st.st_mode & stat.S_ISVTX):
        who = "world-writable" if st.st_mode & stat.S_IWOTH else "group-writable"
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        return f"refusing to watch {what}: {who} (mode {mode}), {runs}; fix: chmod go-w {path}"
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
