"""Start the service: its own session, the configured user, directory and environment, output to us.

subprocess.Popen does the fork/exec in C (safe with the watcher's threads) and reports exec failures
to the parent as exceptions, so "program missing" is an error at start, never a silent dead PID
(start-stop-daemon --background's flaw). The supervisor reaps children itself (waitpid(-1)) and
writes the status back into the Popen object, so subprocess never reaps behind its back.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from supervisor.config import ServiceConfig
from supervisor.errors import SvctlError


@dataclass
class Child:
    popen: subprocess.Popen
    pid: int
    pidfd: int | None


def user_environment(config: ServiceConfig) -> tuple[dict[str, str], dict]:
    """The environment and Popen identity arguments for the configured user."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    kwargs: dict = {}
    if config.user and os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam(config.user)
        except KeyError:
            raise SvctlError(f"{config.path}: user: no such user {config.user!r}", 6) from None
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name, SHELL=entry.pw_shell)
        if entry.pw_uid != 0:
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid,
                      "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}
    else:
        env["HOME"] = os.environ.get("HOME", "/root")
    env.update(config.env)
    return env, kwargs


def spawn(config: ServiceConfig, output_fd: int, keep_fds: tuple[int, ...] = ()) -> Child:
    """Fork and exec the service. Raises OSError (exec failed) or SvctlError (bad user)."""
    env, identity = user_environment(config)
    popen = subprocess.Popen(
        list(config.command),
        cwd=config.working_directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        start_new_session=True,
        pass_fds=keep_fds,
        restore_signals=True,
        **identity,
    )
    from supervisor.unix.proc import pidfd_open

    return Child(popen, popen.pid, pidfd_open(popen.pid))


def decode_wait_status(status: int) -> tuple[str, bool]:
    """("exit status 1" | "killed by SIGKILL (core dumped)", clean?) from a waitpid status."""
    import signal

    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return f"exit status {code}", code == 0
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"killed by {name}{core}", False
    return f"wait status {status}", False
