"""`svctl status NAME` is run by root at a terminal: the strings it shows from state.json (a
rejected check's output, read from a file the service user controls; the last output lines; exit
reasons, problems) must reach it without their escape sequences."""

from __future__ import annotations

import pytest

from conftest import IS_ROOT, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

TITLE, CLEAR = r"\033]0;pwned\007", r"\033[2J"


def test_status_shows_no_escape_sequence_from_the_check_or_the_output(sandbox):
    service = ["/bin/sh", "-c", f"printf '{TITLE}{CLEAR}hello\\n'; exec sleep 1000"]
    check = ["/bin/sh", "-c", f"printf 'bad line {TITLE}{CLEAR}here\\n'; exit 1"]
    sandbox.service("demo", command=service, check=check)
    assert sandbox.cli("start", "demo").returncode == 0
    sandbox.cli("reload", "demo")
    poll_until(lambda: (sandbox.state().get("machine") or {}).get("rejected"), what="the rejected check")
    status = sandbox.cli("status", "demo", "--lines", "5")
    assert "config rejected" in status.stdout and "hello" in status.stdout, status.stdout
    assert "\x1b" not in status.stdout and "\x07" not in status.stdout, repr(status.stdout)
    assert sandbox.cli("stop", "demo").returncode == 0
