"""Turning ``svctl start`` into a detached supervisor whose outcome still reaches the caller.

The launcher holds the PID file lock, forks, and waits on a pipe; the child detaches with
python-daemon's DaemonContext (double fork, setsid, cwd /, fds closed except the lock and the pipe)
and becomes the supervisor: it writes its PID through the lock object (DaemonContext's ``pidfile=``
hook), names itself NAME, and answers on the pipe once the service is running (and ready) or has
failed. Nothing the daemon does after detaching can otherwise be seen by the caller.
"""

from __future__ import annotations

import os
import sys

from supervisor import jsontext
from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.unix.pidfile import SupervisorLock


def launch(config: ServiceConfig, run_dir: str, lock: SupervisorLock, adopt: tuple | None) -> tuple[int, str]:
    """Start a detached supervisor; returns its answer (code, message)."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        code = 1
        launcher = Launcher(write_fd)  # from here on the only owner of write_fd
        try:
            code = become_daemon(config, run_dir, lock, launcher, adopt)
        except BaseException as exc:  # the caller must hear about *any* failure, then we vanish
            launcher.answer(1, f"supervisor failed: {type(exc).__name__}: {exc}")
        finally:
            os._exit(code)
    os.close(write_fd)
    lock.release()  # our copy: the daemon holds the same open file description
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(child, 0)
    try:
        reply = jsontext.loads(data.splitlines()[0])
        return int(reply["code"]), str(reply["message"])
    except (IndexError, ValueError, KeyError):
        return 1, "the supervisor exited without reporting (see its events file)"


class Launcher:
    """The pipe back to the waiting ``svctl start``: answered once (as a start waiter), then closed.

    The one owner of the descriptor: once answered, its number is free and soon reused (by a
    control connection, say), so nothing may write to the bare number after that.
    """

    adds_problems = True  # "started; problems: ...": the caller should know what is wrong

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def answer(self, code: int, message: str) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            os.write(fd, (jsontext.dumps({"code": code, "message": message}) + "\n").encode())
        except OSError:
            pass  # the waiting `svctl start` is gone
        finally:
            os.close(fd)


def become_daemon(config: ServiceConfig, run_dir: str, lock: SupervisorLock, launcher: Launcher,
                  adopt: tuple | None) -> int:
    import daemon

    context = daemon.DaemonContext(
        detach_process=True, working_directory="/", umask=0o022, prevent_core=False,
        signal_map={},  # our own handlers, installed by the runtime (the default map kills on SIGTERM)
        files_preserve=[lock.fd, launcher.fd],  # no pidfile=: supervise() writes it once state.json is there
    )
    context.open()  # from here on we are the daemon
    return supervise(config, run_dir, lock, launcher_fd=launcher, adopt=adopt, console=False)


def supervise(config: ServiceConfig, run_dir: str, lock: SupervisorLock, *, launcher_fd: Launcher | int | None,
              adopt: tuple | None, console: bool, stop_at_once: bool = False) -> int:
    """Run the supervisor in this process until it exits; writes the PID file, removes it at the end.

    The PID file is written (by the runtime, once its first events are handled) only after
    state.json names this supervisor in its real state (starting, or running an adopted
    service), so a reader that finds our PID there can always verify it: never a "stale PID file"
    for a supervisor still starting, never "stopped" for a service being adopted.

    LAUNCHER_FD: the Launcher to answer (or a bare pipe descriptor, which then becomes one), or None.
    """
    from supervisor.runtime import Runtime
    from supervisor.unix.proc import set_process_name

    # `svctl run` (systemd's UMask=, a shell's umask 077) must not decide the modes of what the
    # supervisor creates (a 0700 run dir hides status from non-root callers) nor the umask of a
    # service that sets none: the same 0022 as the daemon `svctl start` detaches.
    os.umask(0o022)
    set_process_name(config.name)
    token = Launcher(launcher_fd) if isinstance(launcher_fd, int) else launcher_fd
    try:
        runtime = Runtime(config, run_dir, console=console, lock=lock)
        if adopt is not None:
            from supervisor.unix.identity import monotonic_start

            runtime.adopt(*adopt)  # its uptime counts from its real start, read from the kernel:
            first: list = [ev.Adopt(adopt[0], token, monotonic_start(runtime.service_identity))]
        else:
            first = [ev.Start(token)]
        if stop_at_once:
            first.append(ev.Stop())
        code = runtime.run(*first)
    except Exception as exc:
        if token is not None:
            from supervisor.faults import describe

            token.answer(1, f"supervisor failed: {describe(exc) if isinstance(exc, OSError) else exc}")
        lock.remove()
        raise
    if token is not None:
        token.answer(code, "supervisor exited")
    lock.remove()
    return code
