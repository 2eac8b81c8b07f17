"""Validate a service's config before anything changes: run its ``check`` command; vet watched files.

``run_check`` blocks for up to ``check_timeout`` (it serves ``svctl check`` and the start-failure
diagnosis); the supervisor's loop instead starts a ``CheckJob`` and reaps it like any child.
``check_watched_file_safety`` only makes a handful of ``stat`` calls.

The check runs:
* in a fresh scratch directory (tempfile.mkdtemp, removed afterwards), so a check that writes
  state (JupyterHub creates jupyterhub.sqlite and a cookie secret in its cwd) cannot touch the
  running service's working directory; TMPDIR points there too, for the same reason;
* with ``config.env`` merged over a minimal environment (not the supervisor's own environment,
  which under an init script is arbitrary, and under a shell leaks the operator's);
* as ``config.user`` when the supervisor is root, like the service itself;
* in a new session, so on timeout the whole process group is killed, not just the top process.

Its output can hold secrets (JupyterHub's ``--show-config`` prints the environment): for the events
file and status, ``secret_values``/``redact`` mask every ``environment`` value and ``last_lines``
keeps only the end (docs/security.md S2).
"""

from __future__ import annotations

import os
import pwd
import re
import select
import signal
import subprocess
import time

from supervisor.config import ServiceConfig
from supervisor.config import user_is_root as runs_as_root  # noqa: F401 - also imported from here
from supervisor.core.record import Record
from supervisor.errors import SvctlError
from supervisor.unix.spawn import decode_wait_status

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 256 * 1024  # keep the tail: the reason is usually at the end
SUMMARY_LIMIT = 200
EVENT_OUTPUT_LINES = 20  # the events file is for diagnosis, not a copy of --show-config
SECRET_MIN_LENGTH = 4
REDACTED = "***"
_ERRORISH = re.compile(r"\b(error|fatal|invalid|exception|failed|traceback)\b", re.IGNORECASE)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Warning|Interrupt)\b.*")


class CheckResult(Record):
    """ok; summary: one line, for status ("config rejected: <summary>"); output: stdout and stderr
    interleaved (tail, at most OUTPUT_LIMIT), for the JSON event; seconds."""

    __slots__ = ("ok", "summary", "output", "seconds")


class CheckRefused(SvctlError):
    """The check cannot be run at all (unknown user, no root to switch users)."""


class CheckJob:
    """One run of ``config.check``, as a child of the caller.

    Both callers start checks here, so `svctl check` and a reload validate identically: the
    supervisor's loop reaps the job like any other child and then calls ``finish``; ``run_check``
    waits for it on the spot. Output goes to an unlinked temporary file, not a pipe, so a helper
    the check leaves behind can never stall whoever collects it.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        account = _identity(config.user)
        import tempfile  # a check's scratch directory: only when a check runs

        self.scratch = tempfile.mkdtemp(prefix=f"svctl-check-{config.name}-")
        self.output = tempfile.TemporaryFile()
        self.timed_out = False
        user_args: dict = {}
        try:
            if account is not None:
                os.chown(self.scratch, account.pw_uid, account.pw_gid)  # the check may write its state there
                user_args = {"user": account.pw_uid, "group": account.pw_gid,
                             "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
            self.popen = subprocess.Popen(
                list(config.check), cwd=self.scratch, env=check_environment(config, account, self.scratch),
                stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, **user_args)
        except OSError:
            self.cleanup()
            raise
        self.pid = self.popen.pid

    def kill(self) -> None:
        """Out of time: kill the whole process group (call while the check is not yet reaped)."""
        self.timed_out = True
        _kill_group(self.pid)

    def finish(self, status: int, limit: float | None, secrets: tuple[str, ...] = ()) -> CheckResult:
        """The verdict, once the check was reaped with wait status STATUS.

        With SECRETS (``secret_values``), they are masked in the output before the summary is
        taken from it, so a clipped summary cannot show half a secret either.
        """
        self.popen.returncode = status  # reaped by our caller: keep subprocess from waiting again
        skipped = max(0, os.fstat(self.output.fileno()).st_size - OUTPUT_LIMIT)
        self.output.seek(skipped)
        text = self.output.read().decode("utf-8", errors="replace")
        if skipped:  # the first line is cut: it could hold the end of a secret no mask matches
            text = "[... output truncated ...]\n" + text.partition("\n")[2]
        output = redact(text, secrets)
        self.cleanup()
        seconds = time.monotonic() - self.started
        if self.timed_out:
            return CheckResult(False, f"timed out after {limit:g}s", output, seconds)
        reason, clean = decode_wait_status(status)
        if clean:
            return CheckResult(True, "valid", output, seconds)
        return CheckResult(False, f"{reason}: {summarize(output)}", output, seconds)

    def cleanup(self) -> None:
        self.output.close()
        import shutil

        shutil.rmtree(self.scratch, ignore_errors=True)


def run_check(config: ServiceConfig, timeout: float | None = None) -> CheckResult:
    """Run ``config.check`` and say whether the config it examines is valid. Blocks; never raises.

    ``timeout`` defaults to ``config.check_timeout``; 0 or less means no limit.
    """
    if not config.check:
        return CheckResult(True, "no check configured", "", 0.0)
    limit = config.check_timeout if timeout is None else timeout
    limit = limit if limit and limit > 0 else None
    try:
        job = CheckJob(config)
    except CheckRefused as exc:
        return CheckResult(False, str(exc), "", 0.0)
    except OSError as exc:
        return CheckResult(False, f"cannot run {config.check[0]}: {exc.strerror or exc}", "", 0.0)
    if not _wait_unreaped(job.pid, limit):
        job.kill()
    else:
        # Helpers it left in the background die with it. The leader is not reaped yet, so its PID
        # (= the group id) cannot have been reused.
        _kill_group(job.pid)
    _, status = os.waitpid(job.pid, 0)
    return job.finish(status, limit)


def _identity(user: str | None) -> pwd.struct_passwd | None:
    """The account to switch to, or None to run as ourselves."""
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CheckRefused(f"cannot run check: unknown user {user!r}") from None
    if os.geteuid() == entry.pw_uid:
        return None
    if os.geteuid() != 0:
        raise CheckRefused(f"cannot run check as {user}: svctl is not running as root")
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


def _wait_unreaped(pid: int, limit: float | None) -> bool:
    """Wait until the process exits, without reaping it (a pidfd); False on timeout."""
    fd = os.pidfd_open(pid)
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


def secret_values(config: ServiceConfig) -> tuple[str, ...]:
    """The service's ``environment`` values worth masking (longest first, so none shows in part).

    Every value counts, not just the ones named like secrets: JupyterHub's ``--show-config``
    prints them all, and nothing says which of them are tokens. Shorter than SECRET_MIN_LENGTH
    they are too common a string to mask without garbling the output.
    """
    values = {value for value in config.env.values() if len(value) >= SECRET_MIN_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """TEXT with every one of SECRETS replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def last_lines(text: str, count: int = EVENT_OUTPUT_LINES) -> str:
    """The last COUNT non-empty lines of TEXT (what the check_finished event keeps)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])


def summarize(output: str) -> str:
    """The first meaningful line of a failure's output.

    A Python traceback's meaning is in its *last* line (``SyntaxError: invalid syntax``), so after
    a traceback take the exception line; otherwise the first line that looks like an error;
    otherwise the first non-empty line.
    """
    lines = [line.strip() for line in output.splitlines()]  # JupyterHub indents its tracebacks
    text = [line for line in lines if line]
    if not text:
        return "(no output)"
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        for index in range(len(lines) - 1, -1, -1):
            if _EXCEPTION_LINE.match(lines[index]):
                where = _where(lines[:index]) if lines[index].startswith(_LOCATED) else ""
                return _clip(lines[index] + where)
    for line in text:
        if _ERRORISH.search(line):
            return _clip(line)
    return _clip(text[0])


_LOCATED = ("SyntaxError", "IndentationError", "TabError")  # where they are is what they mean
_FRAME = re.compile(r'^File "(?P<file>[^"]+)", line (?P<line>\d+)')


def _where(before: list[str]) -> str:
    """' (jupyterhub_config.py, line 50)' from the traceback's last frame, as str(SyntaxError) says."""
    for line in reversed(before):
        frame = _FRAME.match(line)
        if frame:
            return f" ({os.path.basename(frame['file'])}, line {frame['line']})"
    return ""


def _clip(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 3] + "..."


def check_watched_file_safety(path: str, service_user: str | None) -> str | None:
    """A one-line refusal when someone other than root could change code that runs as root.

    Checked when the service runs as root, with the same rule as service files (docs/security.md
    X2, supervisor/unix/trustchain.py): the file, after following symlinks, must be root's and not
    group/world-writable, and so must every directory that holds it or a symlink leading to it (a
    root-owned sticky directory like /tmp is fine). None when safe, or when the file does not
    exist (the watcher reports that separately). Only a few lstat() calls.
    """
    from supervisor.unix.trustchain import watched_file_refusal

    return watched_file_refusal(path) if runs_as_root(service_user) else None
