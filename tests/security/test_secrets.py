"""No secret from a 0600 service file reaches a file a non-root user can read, or an argument list.

A canary in the service's `environment` goes through everything that records the service:
start, status (text and JSON), a rejected reload whose check prints the environment, logs,
stop. Then every file under the sandbox that others could read (or that a non-root user owns)
and every process's command line is searched for it (docs/security.md, S1-S3).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import IS_ROOT, poll_until

CANARY = "canary-5f0c1e8a9b7d4c2e"
pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: a 0600 root service file, root-owned state")


def readable_by_others(path: Path) -> bool:
    info = path.lstat()
    return stat.S_ISREG(info.st_mode) and (info.st_uid != 0 or info.st_mode & stat.S_IROTH or info.st_mode & stat.S_IRGRP)


def command_lines_with(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry}: {cmdline}")
    return found


def test_canary_secret_leaks_nowhere(sandbox, tmp_path):
    conf = sandbox.base / "app.conf"
    conf.write_text("good\n")
    path = sandbox.service(
        environment={"API_TOKEN": CANARY},
        watch=[str(conf)],
        # prints the environment, as `jupyterhub --show-config` does, and names the secret in its error
        check=["/bin/sh", "-c", 'env; if grep -q bad "$0"; then echo "error: token $API_TOKEN rejected"; exit 1; fi',
               str(conf)],
    )
    path.chmod(0o600)
    assert sandbox.cli("start", "demo").returncode == 0
    assert sandbox.cli("status", "demo").returncode == 0
    conf.write_text("bad\n")
    reload = sandbox.cli("reload", "demo")
    assert reload.returncode == 6, reload.stderr
    poll_until(lambda: (sandbox.state().get("machine") or {}).get("rejected"), what="the rejection in state")
    outputs = [sandbox.cli("status", "demo"), sandbox.cli("status", "demo", "--json"), reload]
    assert command_lines_with(CANARY) == []
    assert sandbox.cli("stop", "demo").returncode == 0
    for result in outputs:  # status is shown to anyone who may run it
        assert CANARY not in result.stdout + result.stderr
    leaks = [str(file) for file in sandbox.base.rglob("*")
             if readable_by_others(file) and CANARY.encode() in file.read_bytes()]
    assert leaks == []
    # and the proof that the canary went where it should: the service's own environment, the
    # root-only events file (redacted) and the 0600 service file
    assert CANARY in path.read_text()
