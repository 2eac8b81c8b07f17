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


def test_a_rejected_reason_quoting_a_private_config_is_shown_to_root_only(sandbox):
    """Validators quote the offending line (`nginx -t`, `sshd -t`): from a 0600 config, that line
    may hold a secret that is no `environment` value."""
    conf = sandbox.base / "app.conf"
    conf.write_text("good\n")
    conf.chmod(0o600)
    sandbox.service("demo", watch=[str(conf)],
                    check=["/bin/sh", "-c", 'if grep -q bad "$0"; then echo "error: bad line: $(cat "$0")"; exit 1; fi',
                           str(conf)])
    assert sandbox.cli("start", "demo").returncode == 0
    try:
        conf.write_text(f"bad token={CANARY}\n")
        assert sandbox.cli("reload", "demo").returncode == 6
        state = (sandbox.run / "svctl" / "demo" / "state.json").read_text()
        assert CANARY not in state
        as_root = sandbox.cli("status", "demo")
        assert CANARY in as_root.stdout, "root still sees the whole reason"
        as_nobody = sandbox.cli("status", "demo", user="nobody")
        assert CANARY not in as_nobody.stdout + as_nobody.stderr
        assert "not shown to everyone" in as_nobody.stdout
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0
