"""The generated boot files with the real tools: update-rc.d, service, invoke-rc.d, the sysv
generator and ``systemd-analyze verify``.

Everything that touches /etc or /run runs in boot_scenario.py inside
``unshare --mount --pid --fork --mount-proc`` with private copies of /etc, /run and /var/log, so the
host is never touched, and every process it started dies with the namespace's PID 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_without_boot_tools, svctl_command

from supervisor import boot
from supervisor.config import parse

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "boot_scenario.py"
NAME = "svctl-boot-test"
EXPECTED = [0, 0, 0, 0, 0, 3, 3]  # start, status, reload, restart, stop, status, bogus
USAGE = f"Usage: /etc/init.d/{NAME} {{start|stop|status|restart|reload|force-reload}}"
TOOLS = ("update-rc.d", "service", "invoke-rc.d", "unshare")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    skip_without_boot_tools(TOOLS)
    work = tmp_path_factory.mktemp("boot")
    result_path = work / "result.json"
    # bash stays PID 1 of the namespace (no exec of the last command): it reaps the daemons that
    # svctl start orphans, and when it exits the kernel kills whatever is left.
    command = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--propagation",
        "private",
        "bash",
        "-c",
        '"$@"; exit $?',
        "scenario",
        sys.executable,
        str(SCENARIO),
        str(svctl_command()),
        str(result_path),
        str(work / "mnt"),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"scenario timed out; output:\n{output}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, f"scenario failed (exit {process.returncode}):\n{output}"
    return json.loads(result_path.read_text())


def codes(results: list[dict]) -> list:
    return [item["code"] for item in results]


def explain(results: list[dict]) -> str:
    return "\n".join(
        f"{r['argv']} -> {r['code']} ({r['seconds']}s) out={r['stdout']!r} err={r['stderr']!r}"
        for r in results
    )


def test_install_registers_rc_links(scenario):
    """update-rc.d defaults reads our header: S01 in rc2-5, K01 in rc0, rc1, rc6."""
    assert scenario["install"]["code"] == 0, explain([scenario["install"]])
    target = f"../init.d/{NAME}"
    expected = {f"rc{level}.d/S01{NAME}": target for level in "2345"}
    expected.update({f"rc{level}.d/K01{NAME}": target for level in "016"})
    assert scenario["links"] == expected


def test_svctl_itself_gives_the_lsb_codes(scenario):
    assert codes(scenario["svctl"]) == EXPECTED, explain(scenario["svctl"])


@pytest.mark.parametrize("tool", ["service", "invoke-rc.d", "init.d"])
def test_tool_gives_the_same_codes_as_svctl(scenario, tool):
    results = scenario[tool]
    assert codes(results) == codes(scenario["svctl"]) == EXPECTED, explain(results)


@pytest.mark.parametrize("tool", ["svctl", "service", "invoke-rc.d", "init.d"])
def test_tool_really_started_and_stopped_the_supervisor(scenario, tool):
    """A live PID file after start/reload/restart, none after stop: the verbs really ran."""
    results = scenario[tool]
    alive = [item["pid"] is not None for item in results]
    assert alive[:5] == [True, True, True, True, False], explain(results)
    start, _, reload, restart = (item["pid"] for item in results[:4])
    assert reload == start, "reload must not replace the supervisor\n" + explain(results)
    assert restart != start, "restart must start a new supervisor\n" + explain(results)


@pytest.mark.parametrize("tool", ["service", "invoke-rc.d", "init.d"])
def test_bogus_verb_prints_the_usage_line(scenario, tool):
    bogus = scenario[tool][-1]
    assert USAGE in bogus["stderr"], explain([bogus])


def test_invoke_rc_d_consulted_the_allowing_policy(scenario):
    """Not the container's deny-all policy-rc.d: ours was asked, and it allowed start."""
    # "(start)": invoke-rc.d found no runlevel (no utmp in a container) and asked the policy to override
    assert re.search(rf"^{re.escape(NAME)} \(?start\)?$", scenario["policy_log"], re.MULTILINE), scenario[
        "policy_log"
    ]


def test_uninstall_removes_script_and_links(scenario):
    assert scenario["uninstall"]["code"] == 0, explain([scenario["uninstall"]])
    assert scenario["links_after"] == {}
    assert scenario["shim_after"] is False


def test_sysv_generator_keeps_reload(scenario):
    generated = scenario["generator"]
    if "skipped" in generated:
        pytest.skip(generated["skipped"])
    assert generated["code"] == 0, generated["stderr"]
    unit = generated["unit"]
    assert unit is not None, generated["stderr"]
    assert f"\nExecReload=/run/boot-test/initd-only/{NAME} reload" in unit
    assert "\nAfter=remote-fs.target\n" in unit
    assert generated["wanted_by_multi_user"], "S01 links in rc2-4 should make it wanted by multi-user.target"


# --- outside any namespace: pure files in tmp_path ---


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed (Debian: systemd)")
    svctl = svctl_command()
    config = parse(
        NAME,
        f"/etc/svctl/{NAME}.toml",
        b'description = "100% test"\ncommand = ["/bin/sleep", "1000"]\nstop = "TERM/1/KILL/1"\n',
    )
    for config_dir in ("/etc/svctl", "/srv/svctl conf"):
        unit = boot.render_systemd_unit(config, str(svctl), config_dir, "/run/svctl")
        path = tmp_path / f"{NAME}.service"
        path.write_text(unit.text)
        done = subprocess.run(
            [analyze, "verify", "--man=no", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
            pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        assert NAME not in done.stderr, done.stderr  # no warning about our unit
