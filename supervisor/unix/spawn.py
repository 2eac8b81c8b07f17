"""Start the service: its own session, the configured user, directory and environment (the
environment file, then `environment`), process settings (umask, nice, groups, limits), output to us.

subprocess.Popen does the fork/exec in C (safe with the watcher's threads) and reports exec failures
to the parent as exceptions, so "program missing" is an error at start, never a silent dead PID
(start-stop-daemon --background's flaw). The supervisor reaps children itself (waitpid(-1)) and
writes the status back into the Popen object, so subprocess never reaps behind its back.
"""

from __future__ import annotations

import os
import subprocess

from supervisor import settings
from supervisor.config import ServiceConfig
from supervisor.errors import SvctlError


class Child:
    """The running service process (a plain class: dataclasses costs the supervisor ~2 MB)."""

    __slots__ = ("popen", "pid", "pidfd", "environment_file")

    def __init__(self, popen: subprocess.Popen | None, pid: int, pidfd: int | None,
                 environment_file: dict | None = None) -> None:
        self.popen, self.pid, self.pidfd = popen, pid, pidfd
        # what the environment file said when this child was spawned; None: not known (adopted)
        self.environment_file = environment_file

    def __repr__(self) -> str:
        return f"Child(pid={self.pid}, pidfd={self.pidfd})"


BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def user_environment(config: ServiceConfig,
                     from_file: dict[str, str] | None = None) -> tuple[dict[str, str], dict]:
    """The environment and the Popen arguments (identity, process settings) for the service.
    FROM_FILE: the environment file's variables, already read (else read here); the service
    file's `environment` overrides them. Raises SvctlError (exit 6) naming the key or file."""
    # SVCTL_SERVICE first: `svctl up` reads an escapee's claim from the start of its environment
    # (unix/escapees.py in_service), and a copy of the environment keeps its order
    env = {"SVCTL_SERVICE": config.name, "PATH": BASE_PATH, "LANG": "C.UTF-8"}
    uid = gid = groups = None  # None: what the supervisor has
    if config.user and os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam(config.user)
        except KeyError:
            raise SvctlError(f"{config.path}: user: no such user {config.user!r}", 6) from None
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name, SHELL=entry.pw_shell)
        if entry.pw_uid != 0:
            uid, gid = entry.pw_uid, entry.pw_gid
        if entry.pw_uid != 0 or config.groups:  # root with extra groups keeps root's own too
            groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    else:
        env["HOME"] = os.environ.get("HOME", "/root")
    if config.groups:
        groups = _with_extra_groups(config, os.getgroups() if groups is None else groups)
    if from_file is None:
        from supervisor.unix.envfile import read

        from_file = read(config)
    env.update(from_file)
    env.update(config.env)
    # as supervisord's SUPERVISOR_PROCESS_NAME, and `svctl up` knows whose an escapee is by it;
    # set again, so that the service can't name another one (its place stays the first)
    env["SVCTL_SERVICE"] = config.name
    kwargs: dict = {}
    if config.umask is not None:
        kwargs["umask"] = config.umask
    limits = resolved_limits(config)
    _check_nice(config)
    if limits or config.nice is not None:
        kwargs["preexec_fn"] = _before_exec(limits, config.nice, groups, uid, gid)
    else:  # all done by _posixsubprocess in C, as before
        if uid is not None:
            kwargs.update(user=uid, group=gid)
        if groups is not None:
            kwargs["extra_groups"] = groups
    return env, kwargs


def _with_extra_groups(config: ServiceConfig, own: list[int]) -> list[int]:
    import grp

    if os.geteuid() != 0:
        raise SvctlError(f"{config.path}: groups: setting supplementary groups needs root "
                         f"(the supervisor runs as uid {os.geteuid()})", 6)
    result = list(dict.fromkeys(own))
    for name in config.groups:
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            raise SvctlError(f"{config.path}: groups: no such group {name!r}", 6) from None
        if gid not in result:
            result.append(gid)
    return result


def resolved_limits(config: ServiceConfig) -> list[tuple[int, int, int]]:
    """(RLIMIT_*, soft, hard) to set, checked here so that what the child cannot do is a clear
    error now rather than a failed exec: only root may raise a hard limit, and RLIMIT_NOFILE
    cannot go above the kernel's fs.nr_open (nor be infinite), not even for root."""
    if not config.limits:
        return []
    import resource

    result = []
    for name, soft, hard in config.limits:
        number = getattr(resource, settings.LIMITS[name], None)
        if number is None:
            raise SvctlError(f"{config.path}: limits: {name} is not supported on this system", 6)
        soft, hard = (resource.RLIM_INFINITY if one == -1 else one for one in (soft, hard))
        current = resource.getrlimit(number)[1]
        if _above(hard, current, resource.RLIM_INFINITY) and not has_capability(CAP_SYS_RESOURCE):
            raise SvctlError(f"{config.path}: limits: {name}: raising the hard limit above the supervisor's "
                             f"own ({_shown(current, resource.RLIM_INFINITY)}) needs root with "
                             "CAP_SYS_RESOURCE, which this supervisor lacks (a container?)", 6)
        if number == resource.RLIMIT_NOFILE:
            most = _nr_open()
            if most is not None and _above(hard, most, resource.RLIM_INFINITY):
                raise SvctlError(f"{config.path}: limits: nofile: {_shown(hard, resource.RLIM_INFINITY)} is "
                                 f"above the kernel's maximum fs.nr_open ({most})", 6)
        result.append((number, soft, hard))
    return result


CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24


def has_capability(number: int) -> bool:
    """Whether the supervisor has this capability now (root in a container may lack some);
    what the child, forked before it drops to the user, has too."""
    try:
        with open("/proc/self/status", "rb") as file:
            for line in file:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _above(value: int, limit: int, infinity: int) -> bool:
    if limit == infinity:
        return False
    return value == infinity or value > limit


def _shown(value: int, infinity: int) -> str:
    return "infinity" if value == infinity else str(value)


def _nr_open() -> int | None:
    try:
        with open("/proc/sys/fs/nr_open", "rb") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


def _check_nice(config: ServiceConfig) -> None:
    """Only root (CAP_SYS_NICE) may lower the niceness: say so now, not as a failed exec."""
    if config.nice is None or has_capability(CAP_SYS_NICE):
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if config.nice < current:
        raise SvctlError(f"{config.path}: nice: {config.nice} is below the supervisor's own niceness "
                         f"({current}), which needs root with CAP_SYS_NICE", 6)


def _before_exec(limits, nice, groups, uid, gid):
    """The hook that sets limits and niceness in the child, then drops to the service's user.

    Why a preexec_fn, though subprocess warns against it with threads (the watcher's): the
    warning is about Python code in the forked child taking a lock some other thread held at the
    fork (imports, logging, a queue). This hook takes none: every function and number is bound
    here, in the parent, and each call is a single system call (setrlimit, setpriority,
    setgroups, setresgid, setresuid), the kind _posixsubprocess itself makes there in C.
    The alternatives are worse: resource.prlimit(pid) or setpriority(pid) after Popen returns
    come too late (the program is already running, and may have read its limits); changing the
    supervisor's own limits around the fork races with its threads and, without root, cannot be
    undone; a wrapper program between fork and the command (prlimit, nice, or a Python helper)
    depends on PATH or on an interpreter the user may not be able to run, and would be what
    identity.identify records as the service's executable.
    Why it also drops the user: Popen runs preexec_fn after its own setgroups/setgid/setuid, and
    raising a hard limit or lowering the niceness needs root, so they must come first.
    """
    import resource

    setrlimit, setpriority, prio_process = resource.setrlimit, os.setpriority, os.PRIO_PROCESS
    setgroups, setresgid, setresuid = os.setgroups, os.setresgid, os.setresuid

    def apply() -> None:
        for number, soft, hard in limits:
            setrlimit(number, (soft, hard))
        if nice is not None:
            setpriority(prio_process, 0, nice)
        if groups is not None:
            setgroups(groups)
        if gid is not None:
            setresgid(gid, gid, gid)
        if uid is not None:
            setresuid(uid, uid, uid)

    return apply


def spawn(config: ServiceConfig, output_fd: int, keep_fds: tuple[int, ...] = ()) -> Child:
    """Fork and exec the service, reading its environment file first. Raises OSError (exec
    failed) or SvctlError (bad user, environment file, process setting)."""
    from supervisor.unix.envfile import read

    from_file = read(config)
    env, settings_args = user_environment(config, from_file)
    try:
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
            **settings_args,
        )
    except subprocess.SubprocessError:  # the hook failed: subprocess keeps only "Exception occurred"
        raise SvctlError(f"{config.path}: the process settings (limits, nice, groups, user) could not be "
                         "applied in the service's process", 6) from None
    from supervisor.unix.proc import pidfd_open

    return Child(popen, popen.pid, pidfd_open(popen.pid), from_file)


def process_settings(config: ServiceConfig) -> dict:
    """What the child gets beyond its user (for `svctl check`): {} when nothing is set."""
    shown: dict = {}
    if config.umask is not None:
        shown["umask"] = f"{config.umask:04o}"
    if config.nice is not None:
        shown["nice"] = config.nice
    if config.groups:
        shown["groups"] = list(config.groups)
    if config.limits:
        shown["limits"] = {name: ["infinity" if one == -1 else one for one in (soft, hard)]
                           for name, soft, hard in config.limits}
    return shown


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
