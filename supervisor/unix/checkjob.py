"""A config validation (the service file's ``check`` command) running beside the supervisor's loop.

The loop must keep reaping, restarting and answering while a check runs (JupyterHub's takes ~5 s),
so the check is an ordinary child: the loop reaps it like any other and then asks ``finish`` for the
verdict; a timer kills its process group on timeout. It runs in a fresh scratch directory, so a
check that writes files (``jupyterhub --show-config`` writes a pid file, DB and cookie secret
unless told not to) can't touch the service's state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from supervisor.config import ServiceConfig
from supervisor.unix.spawn import decode_wait_status, user_environment


def summarize(reason: str, output: str) -> str:
    """'exit status 1: SyntaxError: invalid syntax': the reason plus the most telling output line."""
    from supervisor.unix.validate import summarize as telling_line

    line = telling_line(output)
    return f"{reason}: {line}" if line else reason


class CheckJob:
    def __init__(self, config: ServiceConfig) -> None:
        self.scratch = tempfile.mkdtemp(prefix=f"svctl-check-{config.name}-")
        self.output = tempfile.TemporaryFile()
        env, identity = user_environment(config)
        if identity:
            os.chown(self.scratch, identity["user"], identity["group"])
        self.popen = subprocess.Popen(
            list(config.check), cwd=self.scratch, env=env, stdin=subprocess.DEVNULL, stdout=self.output,
            stderr=subprocess.STDOUT, start_new_session=True, **identity)
        self.pid = self.popen.pid
        self.timed_out = False

    def kill(self) -> None:
        self.timed_out = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, status: int, timeout: float) -> tuple[bool, str, str]:
        """(ok, summary, full output) once the loop has reaped the check with wait status STATUS."""
        self.popen.returncode = status  # reaped by the loop: keep subprocess from waiting again
        self.output.seek(0)
        output = self.output.read(1 << 20).decode("utf-8", "replace")
        self.output.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.timed_out:
            return False, f"timed out after {timeout:g}s", output
        reason, clean = decode_wait_status(status)
        return clean, "valid" if clean else summarize(reason, output), output
