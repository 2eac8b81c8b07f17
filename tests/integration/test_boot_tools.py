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


# --- requires: insserv orders the rc links (in the same kind of private namespace) ---

INSSERV_PATHS = ("/usr/lib/insserv/insserv", "/sbin/insserv")
# Run inside `unshare` like boot_scenario.py (whose privatize() it reuses): private /etc, /run,
# /var/log; an insserv from an unpacked package (`dpkg -x insserv_*.deb DIR`) is put in a private
# copy of /usr/sbin, so the host's update-rc.d keeps its own behaviour.
REQUIRES_SCENARIO = r"""
import json, os, shutil, subprocess, sys
sys.path.insert(0, sys.argv[1])
from boot_scenario import privatize, run, sh
svctl, result_path, mounts, unpacked = sys.argv[2:6]
privatize(mounts)
if unpacked:
    if not os.path.ismount("/usr/sbin"):
        sh("cp", "-a", "/usr/sbin", f"{mounts}/sbin")
        sh("mount", "--bind", f"{mounts}/sbin", "/usr/sbin")
    shutil.copy2(f"{unpacked}/sbin/insserv", "/usr/sbin/insserv")
    shutil.copy2(f"{unpacked}/etc/insserv.conf", "/etc/insserv.conf")
os.makedirs("/etc/svctl", exist_ok=True)
for name, requires in (("svctl-dep-a", []), ("svctl-dep-b", ["svctl-dep-a"])):
    with open(f"/etc/svctl/{name}.toml", "w") as handle:
        handle.write(f'command = ["/bin/sleep", "1000"]\nrequires = {json.dumps(requires)}\n')
result = {"early_b": run([svctl, "install", "svctl-dep-b", "--no-systemd"])}
result["installs"] = [run([svctl, "install", name, "--no-systemd"]) for name in ("svctl-dep-a", "svctl-dep-b")]
links = {}
for level in "0123456":
    directory = f"/etc/rc{level}.d"
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if entry[3:].startswith("svctl-dep-"):
            links.setdefault(level, []).append(entry)
result["links"] = links
result["uninstall"] = [run([svctl, "uninstall", name]) for name in ("svctl-dep-b", "svctl-dep-a")]
with open(result_path, "w") as handle:
    json.dump(result, handle, indent=1)
"""


def insserv_source() -> str | None:
    """'' when the system has insserv, the unpacked package's directory from SVCTL_INSSERV_ROOT, or None."""
    if any(os.access(path, os.X_OK) for path in INSSERV_PATHS) and os.path.exists("/etc/insserv.conf"):
        return ""
    unpacked = os.environ.get("SVCTL_INSSERV_ROOT", "")
    if unpacked and os.access(f"{unpacked}/sbin/insserv", os.X_OK):
        return unpacked
    return None


def test_insserv_orders_a_dependent_after_its_requirement(tmp_path):
    """B requires A: update-rc.d (through insserv) gives B a later S number than A in rc2-5, and
    an earlier K number in rc0, rc1, rc6; B before A is refused while A is not installed."""
    skip_without_boot_tools(("update-rc.d", "unshare"))
    unpacked = insserv_source()
    if unpacked is None:
        pytest.skip("insserv not installed (Debian: insserv; or SVCTL_INSSERV_ROOT=DIR with `dpkg -x "
                    "insserv_*.deb DIR`): plain update-rc.d gives every script S01/K01, no order")
    result_path = tmp_path / "result.json"
    command = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
               "bash", "-c", '"$@"; exit $?', "scenario", sys.executable, "-c", REQUIRES_SCENARIO,
               str(HERE), str(svctl_command()), str(result_path), str(tmp_path / "mnt"), unpacked]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(result_path.read_text())
    early = result["early_b"]
    assert early["code"] == 1 and "svctl install svctl-dep-a` first" in early["stderr"], explain([early])
    assert codes(result["installs"]) == [0, 0], explain(result["installs"])
    links = result["links"]
    for level in "2345":
        a, b = sorted(links[level], key=lambda entry: entry[3:])
        assert a.startswith("S") and b.startswith("S") and a[1:3] < b[1:3], links
    for level in "016":
        a, b = sorted(links[level], key=lambda entry: entry[3:])
        assert a.startswith("K") and b.startswith("K") and b[1:3] < a[1:3], links
    assert codes(result["uninstall"]) == [0, 0], explain(result["uninstall"])


def test_systemd_analyze_verify_accepts_requires_and_process_settings(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed (Debian: systemd)")
    svctl = svctl_command()
    configs = {
        "svctl-dep-a": b'command = ["/bin/sleep", "1000"]\n',
        "svctl-dep-b": (b'command = ["/bin/sleep", "1000"]\nrequires = ["svctl-dep-a"]\numask = "0027"\n'
                        b'nice = 5\ngroups = ["root"]\nlimits = { nofile = [1024, 4096], core = "infinity" }\n'),
    }
    for name, text in configs.items():
        unit = boot.render_systemd_unit(parse(name, f"/etc/svctl/{name}.toml", text), str(svctl), "/etc/svctl",
                                        "/run/svctl")
        (tmp_path / f"{name}.service").write_text(unit.text)
    text = (tmp_path / "svctl-dep-b.service").read_text()
    assert "\nRequires=svctl-dep-a.service\n" in text and " svctl-dep-a.service\n" in text
    assert "\nUMask=0027\nNice=5\nSupplementaryGroups=root\nLimitCORE=infinity\nLimitNOFILE=1024:4096\n" in text
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "svctl-dep-b.service")],
                          capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
                          env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:"))
    if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "svctl-dep" not in done.stderr, done.stderr


def test_install_print_and_root_check_the_dependencies(tmp_path):
    """Follow-up item 3: `install NAME --print` (and --root) checks the graph as the real install
    does: a cycle or an unknown requirement is exit 6 with nothing shown or written; a requirement
    whose boot file is missing is the same note (on stderr with --print, the files on stdout)."""
    svctl = str(svctl_command())
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "dep-a.toml").write_text('command = ["/bin/sleep", "1000"]\nrequires = ["dep-c"]\n')
    (etc / "dep-b.toml").write_text('command = ["/bin/sleep", "1000"]\nrequires = ["dep-a"]\n')
    (etc / "dep-c.toml").write_text('command = ["/bin/sleep", "1000"]\nrequires = ["dep-b"]\n')
    (etc / "dep-u.toml").write_text('command = ["/bin/sleep", "1000"]\nrequires = ["nosuch"]\n')
    (etc / "dep-ok.toml").write_text('command = ["/bin/sleep", "1000"]\nrequires = ["dep-base"]\n')
    (etc / "dep-base.toml").write_text('command = ["/bin/sleep", "1000"]\n')

    def install(name, *options):
        return subprocess.run([svctl, "--config-dir", str(etc), "--run-dir", str(tmp_path / "run"), "install",
                               name, "--no-systemd", *options], capture_output=True, text=True, timeout=60,
                              check=False)

    root = tmp_path / "root"
    for options in (("--print",), ("--root", str(root)), ("--print", "--root", str(root))):
        cycle = install("dep-b", *options)
        assert cycle.returncode == 6 and "a dependency cycle" in cycle.stderr, (options, cycle.stderr)
        unknown = install("dep-u", *options)
        assert unknown.returncode == 6 and "unknown service 'nosuch'" in unknown.stderr, (options, unknown.stderr)
        assert cycle.stdout == unknown.stdout == "" and not root.exists(), options
    shown = install("dep-ok", "--print", "--root", str(root))
    assert shown.returncode == 0 and shown.stdout.startswith("==> /etc/init.d/dep-ok"), shown.stdout + shown.stderr
    assert f"dep-ok: requires dep-base, whose boot file {root}/etc/init.d/dep-base is not installed (yet)" \
        in shown.stderr
    written = install("dep-ok", "--root", str(root))
    assert written.returncode == 0 and "is not installed (yet)" in written.stdout, written.stdout + written.stderr
