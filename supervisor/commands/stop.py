"""``svctl stop NAME``, with a fast path for the common case: a verified supervisor is running.

It reads only the supervisor's identity file and asks over the control socket, so it loads no
TOML, no JSON and not the socket module: a stop is timed against start-stop-daemon. A service
that another one might require (some other file in the config dir mentions `requires` and its
name: a byte scan, no parsing) takes the general path, which stops the dependents first (and, if
the service's own file is broken or gone, stops it with the definition its supervisor recorded:
lifecycle.load_for_stop). Everything else (no supervisor, an orphaned service, stale PID files, non-root callers) goes through the
general path in lifecycle.py.
"""

from __future__ import annotations

import os
import sys

from supervisor.errors import SvctlError
from supervisor.names import validate_name


def stop(context, args: list[str]) -> int:
    if args and not args[0].startswith("-") and os.geteuid() == 0:
        name = validate_name(args[0])
        from supervisor.depgraph import mentions_requires

        if mentions_requires(context.config_dir, name):  # maybe required: dependents stop first
            from supervisor.commands.lifecycle import stop as stop_in_general

            return stop_in_general(context, args)
        command = "stop-all" if "--stop-user-servers" in args else "stop"
        answer = ask_running_supervisor(context.run_dir, name, command)
        if answer is not None:
            code, message = answer
            if code == 0:
                print(f"{name}: {message}")
            else:
                print(f"svctl: {name}: {message}", file=sys.stderr)
            return code
    from supervisor.commands.lifecycle import stop as stop_in_general

    return stop_in_general(context, args)


def ask_running_supervisor(run_dir: str, name: str, command: str) -> tuple[int, str] | None:
    """The supervisor's answer, or None when no verified supervisor is there to ask."""
    from supervisor.unix import control, rundir
    from supervisor.unix.identity import Identity, verify

    directory = rundir.service_dir(run_dir, name)
    fields = rundir.read_ident(directory)
    if fields is None:
        return None
    try:  # "PID START_TICKS BOOT_ID EXE": verify() checks the first three, the exe is for display only
        supervisor = Identity(int(fields[0]), int(fields[1]), fields[3].rstrip("\n"), fields[2])
    except ValueError:
        return None
    if supervisor.pid == os.getpid() or not verify(supervisor, allow_init=True):
        return None
    path = os.path.join(directory, rundir.SOCKET)
    try:
        code, message = control.request(path, command, supervisor.pid, None, name)
        if code == 0 and not os.path.islink(path):  # a link: `svctl up`'s socket, and up goes on
            from supervisor.unix.identity import wait_for_exit

            wait_for_exit(supervisor, 5.0)  # "stopped": nothing of it left, its supervisor too
        return code, message
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # not listening (yet, or any more): the general path knows what to do
    except control.SupervisorGone:  # it went while we asked: once it is gone, the general path decides
        import time

        from supervisor.commands.lifecycle import wait_until_gone

        wait_until_gone(supervisor, deadline=time.monotonic() + 10)
        return None
    except OSError as exc:
        raise SvctlError(f"no answer from the supervisor (pid {supervisor.pid}): {exc}") from None
