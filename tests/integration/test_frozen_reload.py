"""A reload signal (reload = "HUP") is only that signal: no SIGCONT after it, so a service the
admin froze (SIGSTOP) stays frozen; the stop schedule's signals still wake it (escapees.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import IS_ROOT, alive, poll_until
from supervisor.unix.identity import read_stat

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

TRAPPING = "trap 'echo hup >> {0}' HUP; trap 'exit 0' TERM; echo ready >> {0}; while :; do sleep 0.05; done"


def test_a_frozen_service_stays_frozen_after_a_signal_reload(sandbox):
    seen = sandbox.base / "seen"
    sandbox.service("demo", command=["/bin/sh", "-c", TRAPPING.format(seen)], reload="HUP",
                    stop="TERM/2/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: seen.exists() and "ready" in seen.read_text(), what="the traps set")
    pid = sandbox.service_pid()
    os.kill(pid, signal.SIGSTOP)
    poll_until(lambda: read_stat(pid)[0] == "T", what="the service stopped")
    result = sandbox.cli("reload", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(0.5)
    assert read_stat(pid)[0] == "T", "the reload woke a frozen service"
    assert "hup" not in seen.read_text()  # pending until the admin continues it
    # the stop still wakes it (SIGCONT after TERM), and the pending HUP runs first
    assert sandbox.cli("stop", "demo").returncode == 0
    assert not alive(pid)
    assert "hup" in seen.read_text()
