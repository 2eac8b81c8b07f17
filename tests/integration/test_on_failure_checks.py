"""A missing or non-executable on_failure program (review item 5) is refused by `svctl start` like a
missing command (exit 5, one line naming the key) and reported by `svctl check`, instead of being
found only when the hook fires, after the service has failed."""

from __future__ import annotations

import json
import os

import pytest
from conftest import IS_ROOT

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

SLEEP = ["/bin/sleep", "300"]


def hook_cases(sandbox):
    not_executable = sandbox.base / "notify"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(not_executable, 0o644)
    return {"missing": str(sandbox.base / "no-such-hook"), "not executable": str(not_executable)}


@pytest.mark.parametrize("case", ["missing", "not executable"])
def test_start_refuses_an_on_failure_program_that_cannot_run(sandbox, case):
    program = hook_cases(sandbox)[case]
    path = sandbox.service("demo", command=SLEEP, on_failure=[program, "--now"])
    result = sandbox.cli("start", "demo")
    assert result.returncode == 5, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: on_failure: {program} is not installed" in lines[0], lines[0]
    assert not (sandbox.run / "demo.pid").exists()


@pytest.mark.parametrize("case", ["missing", "not executable"])
def test_check_reports_an_on_failure_program_that_cannot_run(sandbox, case):
    program = hook_cases(sandbox)[case]
    sandbox.service("demo", command=SLEEP, on_failure=[program])
    result = sandbox.cli("check", "demo", "--json")
    assert result.returncode == 6, result.stdout + result.stderr
    findings = {finding["code"]: finding for finding in json.loads(result.stdout)["findings"]}
    assert program in findings["on-failure-missing"]["message"]
    assert program in findings["on-failure-missing"]["fix"]
    text = sandbox.cli("check", "demo").stdout
    assert f"error: on_failure: {program} is not installed" in text, text


def test_an_installed_hook_passes_start_and_check(sandbox):
    sandbox.service("demo", command=SLEEP, on_failure=["/bin/true"])
    result = sandbox.cli("check", "demo", "--json")
    assert "on-failure-missing" not in result.stdout
    assert result.returncode == 0, result.stdout
    assert sandbox.cli("start", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0
