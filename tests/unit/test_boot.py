"""supervisor.boot (pure renderers) and ``svctl install/uninstall`` under --root / --print.

Golden files live in tests/golden/; regenerate them after a deliberate change with
``SVCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_boot.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor import boot, cli
from supervisor.config import parse

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
HUB_TOML = b"""
description = "Multi-user server for Jupyter notebooks"
command = ["/usr/local/bin/jupyterhub", "--config=/etc/jupyterhub/jupyterhub_config.py"]
ready = "https://[::1]:9443/hub/health"
check = ["/usr/local/bin/jupyterhub", "--show-config"]
"""
SLEEPER_TOML = b"""
description = "Sleeper: 100% idle,\\n  costs $(nothing)"
command = ["/bin/sleep", "1000"]
stop = "TERM/1/forever/KILL/1"
start_seconds = 0.2
"""
USAGE = "Usage: /etc/init.d/{name} {{start|stop|status|restart|reload|force-reload}}"
FOREIGN_INITD = "#!/bin/sh\n# hand-written, like the seed's\nexit 0\n"


def hub():
    return parse("jupyterhub", "/etc/svctl/jupyterhub.toml", HUB_TOML)


def sleeper():
    return parse("sleeper", "/srv/svctl conf/sleeper.toml", SLEEPER_TOML)


CASES = {
    # golden name -> (config factory, svctl path, config dir, run dir)
    "jupyterhub": (hub, "/usr/bin/svctl", "/etc/svctl", "/run/svctl"),
    "sleeper-custom-dirs": (sleeper, "/opt/my svctl/bin/svctl", "/srv/svctl conf", "/run/svctl-test$1"),
}


def render(case: str) -> list[boot.File]:
    factory, svctl, config_dir, run_dir = CASES[case]
    return [
        boot.render_initd(factory(), svctl, config_dir, run_dir),
        boot.render_systemd_unit(factory(), svctl, config_dir, run_dir),
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden(case):
    """Rendering is deterministic and reviewed: any change shows up as a golden diff."""
    for file, suffix in zip(render(case), (".initd", ".service"), strict=True):
        golden = GOLDEN / f"{case}{suffix}"
        if os.environ.get("SVCTL_UPDATE_GOLDEN"):
            golden.write_text(file.text, encoding="utf-8")
        assert file.text == golden.read_text(encoding="utf-8"), f"{golden} differs from the rendering"


def test_file_names_and_modes():
    initd, unit = render("jupyterhub")
    assert (initd.name, initd.mode) == ("/etc/init.d/jupyterhub", 0o755)
    assert (unit.name, unit.mode) == ("/etc/systemd/system/jupyterhub.service", 0o644)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shim_is_valid_sh(case):
    shim = render(case)[0]
    result = subprocess.run(["sh", "-n"], input=shim.text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def lsb_header(text: str) -> dict[str, str]:
    lines = text.splitlines()
    begin, end = lines.index("### BEGIN INIT INFO"), lines.index("### END INIT INFO")
    fields = {}
    for line in lines[begin + 1 : end]:
        match = re.fullmatch(r"# ([A-Za-z-]+): +(\S.*)", line)  # '#', one space, 'Keyword: args'
        assert match, f"not LSB header syntax: {line!r}"
        fields[match.group(1)] = match.group(2)
    return fields


@pytest.mark.parametrize("case", sorted(CASES))
def test_lsb_header_is_exactly_lsb_semantics_8_item_8(case):
    shim = render(case)[0]
    name = CASES[case][0]().name
    fields = lsb_header(shim.text)
    assert fields.pop("Short-Description")
    assert fields.pop("Description").endswith("supervised by svctl")
    assert fields == {
        "Provides": name,
        "Required-Start": "$remote_fs $syslog",
        "Required-Stop": "$remote_fs $syslog",
        "Default-Start": "2 3 4 5",
        "Default-Stop": "0 1 6",
    }
    assert shim.text.startswith("#!/bin/sh\n")


def test_description_is_one_line_and_inert():
    """A newline or $(...) in the description cannot end the header or reach the shell."""
    shim, unit = render("sleeper-custom-dirs")
    assert lsb_header(shim.text)["Short-Description"] == "Sleeper: 100% idle, costs $(nothing)"
    assert "\nDescription=Sleeper: 100%% idle, costs $(nothing)\n" in unit.text


def test_shim_keeps_the_literal_usage_line_for_the_sysv_generator():
    shim = render("jupyterhub")[0]
    assert USAGE.format(name="jupyterhub") in shim.text
    assert "|reload|" in shim.text


def test_shim_sources_init_functions_and_guards_removal():
    text = render("jupyterhub")[0].text
    assert ". /lib/init/vars.sh\n. /lib/lsb/init-functions\n" in text
    guard = text.index('if [ ! -x "$SVCTL" ]; then')
    assert guard < text.index(". /lib/lsb/init-functions")


def test_shim_after_svctl_was_removed_does_nothing_and_says_status_unknown(tmp_path):
    """`apt-get remove svctl` leaves generated boot files: a boot runs them, monitoring asks status."""
    config = sleeper()
    shim = tmp_path / "sleeper"
    shim.write_text(boot.render_initd(config, str(tmp_path / "gone" / "svctl"), "/etc/svctl", "/run/svctl").text)

    def run(verb: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(shim), verb], capture_output=True, text=True, timeout=10)

    status = run("status")
    assert status.returncode == 4 and "not installed" in status.stderr
    for verb in ("start", "stop", "restart", "reload", "force-reload"):
        assert run(verb).returncode == 0


def test_unit_is_skipped_not_failed_once_svctl_is_gone():
    unit = render("jupyterhub")[1].text
    assert "\nConditionFileIsExecutable=/usr/bin/svctl\n" in unit.split("[Service]")[0]


def test_default_dirs_are_not_passed():
    shim, unit = render("jupyterhub")
    assert "--config-dir" not in shim.text and "--run-dir" not in shim.text
    assert "\nExecStart=/usr/bin/svctl run jupyterhub\n" in unit.text


def test_unit_quotes_execstart_words():
    unit = render("sleeper-custom-dirs")[1]
    assert (
        '\nExecStart="/opt/my svctl/bin/svctl" --config-dir "/srv/svctl conf" '
        "--run-dir /run/svctl-test$$1 run sleeper\n"
    ) in unit.text


@pytest.mark.parametrize(
    "stop, expected", [("TERM/30/KILL/5", "50"), ("10", "35"), ("TERM/1/forever/KILL/1", "infinity")]
)
def test_stop_timeout_is_longer_than_the_schedule(stop, expected):
    config = parse("x", "/etc/svctl/x.toml", f'command = ["/bin/true"]\nstop = "{stop}"\n'.encode())
    unit = boot.render_systemd_unit(config, "/usr/bin/svctl", "/etc/svctl", "/run/svctl")
    assert f"\nTimeoutStopSec={expected}\n" in unit.text


def test_unit_shape():
    text = render("jupyterhub")[1].text
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=process",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
        "Description=Multi-user server for Jupyter notebooks",
        "TimeoutStartSec=186",
    ):  # check 60 + stop 35 + start 0.5 + ready 60 + margin 30, rounded up
        assert f"\n{line}\n" in text
    assert "PIDFile=" not in text.replace("no PIDFile=", "")


# --- the shim, executed by a real sh against a stand-in svctl that records its argv ---


@pytest.fixture
def recorder(tmp_path):
    if not Path("/lib/lsb/init-functions").exists():
        pytest.skip("/lib/lsb/init-functions missing (not Debian): cannot source it")
    directory = tmp_path / "my svctl"
    directory.mkdir()
    fake = directory / "svctl"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\nexit 7\n')
    fake.chmod(0o755)
    return fake


def run_shim(tmp_path, svctl: Path, verb: str):
    config = sleeper()
    shim = boot.render_initd(config, str(svctl), "/srv/svctl conf", "/run/svctl-test$1")
    path = tmp_path / "sleeper"
    path.write_text(shim.text)
    path.chmod(shim.mode)
    # `service` runs scripts with env -i plus PATH/LANG/TERM: do the same.
    return subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", str(path), verb],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_shim_delegates_with_exit_code_and_exact_argv(tmp_path, recorder):
    result = run_shim(tmp_path, recorder, "reload")
    assert result.returncode == 7, result.stderr
    argv = (recorder.parent / "argv").read_text().splitlines()
    assert argv == ["--config-dir", "/srv/svctl conf", "--run-dir", "/run/svctl-test$1", "reload", "sleeper"]


def test_shim_bogus_verb_prints_usage_and_exits_3(tmp_path, recorder):
    result = run_shim(tmp_path, recorder, "bogus")
    assert result.returncode == 3
    assert result.stderr.strip() == USAGE.format(name="sleeper")
    assert not (recorder.parent / "argv").exists()


def test_shim_exits_0_when_svctl_was_removed(tmp_path):
    if not Path("/lib/lsb/init-functions").exists():
        pytest.skip("/lib/lsb/init-functions missing (not Debian)")
    result = run_shim(tmp_path, tmp_path / "gone" / "svctl", "start")
    assert result.returncode == 0


# --- svctl install / uninstall, writing under --root only ---


@pytest.fixture
def setup(tmp_path, monkeypatch):
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "sleeper.toml").write_bytes(SLEEPER_TOML)
    fake = tmp_path / "bin" / "svctl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setattr("sys.argv", [str(fake)])
    root = tmp_path / "root"
    return config_dir, root, fake


def svctl(config_dir, *args):
    return cli.main(["--config-dir", str(config_dir), *args])


def test_install_under_root_writes_both_files(setup, capsys):
    config_dir, root, fake = setup
    assert svctl(config_dir, "install", "sleeper", "--systemd", "--root", str(root)) == 0
    shim = root / "etc/init.d/sleeper"
    unit = root / "etc/systemd/system/sleeper.service"
    assert shim.stat().st_mode & 0o777 == 0o755 and unit.stat().st_mode & 0o777 == 0o644
    assert f"SVCTL={fake}\n" in shim.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/sleeper.service"
    assert os.readlink(wants) == "/etc/systemd/system/sleeper.service"
    assert not list((root / "etc/init.d").glob(".*")), "temporary file left behind"
    assert svctl(config_dir, "uninstall", "sleeper", "--root", str(root)) == 0
    assert not shim.exists() and not unit.exists() and not os.path.lexists(wants)


def test_install_no_systemd_writes_only_the_shim(setup):
    config_dir, root, _ = setup
    assert svctl(config_dir, "install", "sleeper", "--no-systemd", "--root", str(root)) == 0
    assert (root / "etc/init.d/sleeper").exists()
    assert not (root / "etc/systemd").exists()


def test_install_print_writes_nothing(setup, capsys):
    config_dir, root, _ = setup
    assert svctl(config_dir, "install", "sleeper", "--systemd", "--print", "--root", str(root)) == 0
    out = capsys.readouterr().out
    assert "==> /etc/init.d/sleeper (mode 0755) <==\n#!/bin/sh\n" in out
    assert "==> /etc/systemd/system/sleeper.service (mode 0644) <==" in out
    assert not root.exists()


def test_install_refuses_to_overwrite_a_hand_written_script(setup, capsys):
    config_dir, root, _ = setup
    foreign = root / "etc/init.d/sleeper"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(FOREIGN_INITD)
    assert svctl(config_dir, "install", "sleeper", "--no-systemd", "--root", str(root)) == 1
    assert "was not generated by svctl" in capsys.readouterr().err
    assert svctl(config_dir, "uninstall", "sleeper", "--root", str(root)) == 1
    assert foreign.read_text() == FOREIGN_INITD


def test_reinstall_replaces_its_own_files(setup):
    config_dir, root, _ = setup
    assert svctl(config_dir, "install", "sleeper", "--systemd", "--root", str(root)) == 0
    (config_dir / "sleeper.toml").write_bytes(SLEEPER_TOML.replace(b"Sleeper", b"Dozer"))
    assert svctl(config_dir, "install", "sleeper", "--systemd", "--root", str(root)) == 0
    assert "Short-Description: Dozer" in (root / "etc/init.d/sleeper").read_text()


@pytest.mark.parametrize(
    "args, code",
    [
        (["install"], 2),
        (["install", "sleeper", "--frobnicate"], 2),
        (["install", "a;b", "--print"], 2),
        (["install", "missing", "--print"], 6),
        (["install", "sleeper", "--no-initd", "--no-systemd", "--print"], 2),
        (["uninstall", "sleeper", "extra"], 2),
    ],
)
def test_install_errors_are_one_line_with_lsb_codes(setup, capsys, args, code):
    config_dir, _, _ = setup
    assert svctl(config_dir, *args) == code
    assert capsys.readouterr().err.startswith("svctl: ")


def test_install_as_non_root_exits_4(setup, capsys):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run svctl as nobody")
    from conftest import readable_code

    config_dir, _, _ = setup
    # Debian's python and a world-readable copy of the package: the checkout (and its venv) may
    # sit in a 0700 directory such as /root, which nobody cannot enter.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-m", "supervisor",
         "--config-dir", str(config_dir), "install", "sleeper", "--no-systemd"],
        capture_output=True, text=True, timeout=20, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": readable_code()},
    )
    assert result.returncode == 4, result.stderr
    assert "run it as root" in result.stderr
