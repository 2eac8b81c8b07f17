"""state.json is world-readable (0644, so `svctl status` works for everyone); a service file that is
not (0600, or 0644 in a 0700 directory: its admin meant it private) must not be disclosed through
it: the published record has no on_failure, no check and no health/ready query string
(?token=...), and says it is redacted. `svctl status` still works for a non-root caller."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import IS_ROOT

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

SECRETS = ("q-s3cret-token", "hook-s3cret-arg", "check-s3cret-arg")


def private_service(sandbox, mode: int):
    path = sandbox.service("demo", command=["/bin/sleep", "1000"],
                           health="http://[::1]:9/health?token=q-s3cret-token", health_interval=600,
                           on_failure=["/bin/echo", "hook-s3cret-arg"],
                           check=["/bin/echo", "--token=check-s3cret-arg"])
    path.chmod(mode)
    return path


def as_nobody(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command],
                          capture_output=True, text=True, timeout=30)


def test_a_private_service_files_secrets_are_not_in_state_json(sandbox):
    private_service(sandbox, 0o600)
    assert sandbox.cli("start", "demo").returncode == 0
    state_path = sandbox.run / "svctl" / "demo" / "state.json"
    seen = as_nobody("/bin/cat", str(state_path))
    assert seen.returncode == 0, seen.stderr  # readable by everyone: that is why it must hold no secret
    for secret in SECRETS:
        assert secret not in seen.stdout
    record = json.loads(seen.stdout)["config"]
    assert record["redacted"] is True and "on_failure" not in record["data"] and "check" not in record["data"]
    assert record["data"]["health"].startswith("http://[::1]:9/health?")
    status = sandbox.cli("status", "demo", user="nobody")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "is running" in status.stdout
    for secret in SECRETS:
        assert secret not in status.stdout + status.stderr
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_world_readable_service_file_is_published_whole(sandbox):
    private_service(sandbox, 0o644)
    assert sandbox.cli("start", "demo").returncode == 0
    record = sandbox.state()["config"]
    assert "redacted" not in record and record["data"]["on_failure"] == ["/bin/echo", "hook-s3cret-arg"]
    assert record["data"]["check"] == ["/bin/echo", "--token=check-s3cret-arg"]
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_readable_file_in_a_private_directory_is_private_too(sandbox):
    """0644, but in a 0700 config directory: nobody could read it, so state.json must not tell."""
    private_service(sandbox, 0o644)
    sandbox.etc.chmod(0o700)
    try:
        assert sandbox.cli("start", "demo").returncode == 0
        seen = as_nobody("/bin/cat", str(sandbox.run / "svctl" / "demo" / "state.json"))
        assert seen.returncode == 0, seen.stderr
        for secret in SECRETS:
            assert secret not in seen.stdout
        assert json.loads(seen.stdout)["config"]["redacted"] is True
        assert sandbox.cli("stop", "demo").returncode == 0
    finally:
        sandbox.etc.chmod(0o755)
