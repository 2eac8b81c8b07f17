"""A SIGSTOPped service still gets its stop schedule's TERM: SIGCONT follows every stop signal (as
systemd does after KillSignal=), so `svctl stop` does not wait for the KILL at the schedule's end."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import IS_ROOT, PYTHON, alive, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

HANDLES_TERM = """\
import signal, sys, time
def on_term(*_):
    open(sys.argv[1], "w").write("TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(sys.argv[2], "w").write("ready")
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("group", [False, True], ids=["the-process", "its-group"])
def test_stop_of_a_sigstopped_service_is_answered_by_its_term_handler(sandbox, group):
    script, marker, ready = sandbox.base / "web.py", sandbox.base / "got-term", sandbox.base / "ready"
    script.write_text(HANDLES_TERM)
    command = [PYTHON, str(script), str(marker), str(ready)]
    if group:  # a shell in front: the TERM reaches the python child through the group's signal
        command = ["/bin/sh", "-c", f"{' '.join(command)}; exit 0"]
    sandbox.service("demo", command=command, stop="TERM/5/KILL/1")
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(ready.exists, what="the TERM handler installed")
    service = sandbox.service_pid()
    os.killpg(service, signal.SIGSTOP)
    started = time.monotonic()
    result = sandbox.cli("stop", "demo")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 4, f"stop took {took:.1f}s: the stopped service never saw TERM"
    assert marker.read_text() == "TERM"
    assert not alive(service)
