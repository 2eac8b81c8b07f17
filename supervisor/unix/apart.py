"""Work whose imports a supervisor must not keep: done in a forked child that exits.

A supervisor lives for months, and a Python process never gives back a module it imported.
Parsing a service file (tomllib, with typing, datetime and string: 1.1 MB) or a JupyterHub
clean-up before each start (psutil, ast: several MB) happens once in a while, so it runs in a
child: the child imports what the work needs, sends the result back as JSON, and exits. It costs
a fork (about a millisecond) each time. docs/architecture.md, "Import budgets", has the figures.

The child keeps no way back into the parent's loop: its signal wake-up descriptor is detached
(a signal to the child must not look like one to the supervisor) and the signals the supervisor
handles get their default action. It leaves with os._exit: no atexit handler, no flush of the
parent's buffers, twice.
"""

from __future__ import annotations

import os
import select
import signal
import time

from supervisor import jsontext

TIMEOUT = 120.0  # the longest a piece of work may take; the JupyterHub clean-up waits up to ~10 s
_RESET = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGCHLD", "SIGPIPE")


class ApartFailed(Exception):
    """The child could not do the work or send its result (an exception, a non-JSON result)."""


def run_apart(function, *args, passes: tuple[type[Exception], ...] = ()):
    """FUNCTION(*ARGS) in a forked child; its result, through JSON (tuples come back as lists).
    An exception of a class in PASSES is raised here again, with its message; any other failure
    is ApartFailed."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side; the tests see its answers
        _child(read_end, write_end, function, args, passes)
    os.close(write_end)
    try:
        data = _read_all(read_end, child)
    finally:
        os.close(read_end)
        _reap(child)
    try:
        answer = jsontext.loads(data)
    except (ValueError, RecursionError):  # none, or cut short (the child was killed mid-write)
        raise ApartFailed("the child sent no answer") from None
    if not isinstance(answer, dict):
        raise ApartFailed("the child's answer is not an object")
    if "result" in answer:
        return answer["result"]
    kind, message = answer.get("kind"), str(answer.get("error"))
    for error in passes:
        if error.__name__ == kind:
            raise error(message)
    raise ApartFailed(f"{kind}: {message}")


def _child(read_end: int, write_end: int, function, args, passes) -> None:
    status = 1
    try:
        os.close(read_end)
        signal.set_wakeup_fd(-1)
        for name in _RESET:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        try:
            text = jsontext.dumps({"result": function(*args)})
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as a message
            text = jsontext.dumps({"kind": type(exc).__name__ if isinstance(exc, passes) else "error",
                                   "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, passes)
                                   else str(exc)})
        view = memoryview(text.encode())
        while view:
            view = view[os.write(write_end, view):]
        status = 0
    finally:
        os._exit(status)


def _read_all(fd: int, child: int) -> bytes:
    chunks, deadline = [], time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            try:
                os.kill(child, signal.SIGKILL)  # our own un-reaped child: its PID can't be reused yet
            except ProcessLookupError:
                pass
            raise ApartFailed(f"the work took more than {TIMEOUT:g}s")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(child: int) -> None:
    while True:
        try:
            os.waitpid(child, 0)
            return
        except ChildProcessError:
            return  # reaped already (a loop that reaps every child)
        except InterruptedError:
            continue
