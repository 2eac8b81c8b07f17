"""umask, nice, groups and limits (issue 13 item 5), as the kernel reports them for the running
service (/proc/PID/status, /proc/PID/stat, /proc/PID/limits), for a root service and for one
running as nobody (limits and niceness are set before the drop to the user), and as `svctl check`
shows them. What this supervisor cannot apply is exit 6 at start, one line naming the key."""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path

import pytest
from conftest import IS_ROOT

from supervisor.unix.spawn import CAP_SYS_RESOURCE, has_capability

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

SLEEP = ["/bin/sleep", "300"]  # runnable by nobody (the venv's python lives under /root)
NOBODY = pwd.getpwnam("nobody")
ADM, USERS = grp.getgrnam("adm").gr_gid, grp.getgrnam("users").gr_gid
SETTINGS = dict(umask="0027", nice=7, groups=["adm", "users"],
                limits={"nofile": [1024, 4096], "core": [0, "infinity"], "nproc": 5000})


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def nice_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5); fields[0] is field 3 (the state)


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
        rows[name] = (soft, hard)
    return rows


def start(sandbox, **keys) -> int:
    sandbox.service("demo", command=SLEEP, **keys)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    return sandbox.service_pid()


def test_a_root_service_gets_umask_nice_extra_groups_and_limits(sandbox):
    pid = start(sandbox, **SETTINGS)
    try:
        assert status_field(pid, "Umask") == "0027"
        assert nice_of(pid) == 7
        groups = {int(gid) for gid in status_field(pid, "Groups").split()}
        assert {ADM, USERS} <= groups  # root with extra groups (and root's own, if it has any)
        assert status_field(pid, "Uid").split()[0] == "0"
        limits = limits_of(pid)
        assert limits["Max open files"] == ("1024", "4096")
        assert limits["Max core file size"] == ("0", "unlimited")  # (the usual hard limit: no raise)
        assert limits["Max processes"] == ("5000", "5000")
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


def test_a_nobody_service_gets_them_too_with_its_own_groups(sandbox):
    """Niceness below 0 and limits are set while the child is still root, then it drops."""
    pid = start(sandbox, user="nobody", umask="0077", nice=-3, groups=["adm"], limits={"nofile": [512, 1024]})
    try:
        assert status_field(pid, "Uid").split() == [str(NOBODY.pw_uid)] * 4
        assert status_field(pid, "Gid").split() == [str(NOBODY.pw_gid)] * 4
        groups = {int(gid) for gid in status_field(pid, "Groups").split()}
        assert groups == set(os.getgrouplist("nobody", NOBODY.pw_gid)) | {ADM}
        assert status_field(pid, "Umask") == "0077"
        assert nice_of(pid) == -3
        assert limits_of(pid)["Max open files"] == ("512", "1024")
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


def test_groups_alone_for_nobody_keep_the_c_path(sandbox):
    """Without nice or limits, subprocess drops the user in C (extra_groups=, umask=)."""
    pid = start(sandbox, user="nobody", umask="0002", groups=["users"])
    try:
        assert status_field(pid, "Uid").split()[0] == str(NOBODY.pw_uid)
        assert USERS in {int(gid) for gid in status_field(pid, "Groups").split()}
        assert status_field(pid, "Umask") == "0002"
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


def test_raising_a_hard_limit_without_cap_sys_resource_is_exit_6_not_a_traceback(sandbox):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = hard + 1000 if hard != resource.RLIM_INFINITY else 1 << 40
    path = sandbox.service("demo", command=SLEEP, limits={"nofile": wanted})
    result = sandbox.cli("start", "demo")
    if has_capability(CAP_SYS_RESOURCE) and wanted <= int(Path("/proc/sys/fs/nr_open").read_text()):
        assert result.returncode == 0, result.stderr
        assert limits_of(sandbox.service_pid())["Max open files"] == (str(wanted), str(wanted))
        assert sandbox.cli("stop", "demo").returncode == 0
        return
    assert result.returncode == 6, (result.returncode, result.stderr)
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(path) in line and "limits: nofile" in line
    assert not (sandbox.run / "demo.pid").exists()
    check = sandbox.cli("check", "demo", "--json")
    assert check.returncode == 6
    codes = [finding["code"] for finding in json.loads(check.stdout)["findings"]]
    assert "process-settings-invalid" in codes


def test_nofile_above_the_kernels_maximum_is_exit_6(sandbox):
    most = int(Path("/proc/sys/fs/nr_open").read_text())
    sandbox.service("demo", command=SLEEP, limits={"nofile": [1024, most + 1]})
    result = sandbox.cli("start", "demo")
    assert result.returncode == 6 and "limits: nofile" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_check_shows_the_process_settings(sandbox):
    sandbox.service("demo", command=SLEEP, **SETTINGS)
    text = sandbox.cli("check", "demo")
    assert text.returncode == 0, text.stdout + text.stderr
    assert ("info: process settings: umask 0027; nice 7; groups adm,users (besides the user's own); "
            "limit core 0:infinity; limit nofile 1024:4096; limit nproc 5000") in text.stdout
    as_json = json.loads(sandbox.cli("check", "demo", "--json").stdout)
    assert as_json["process"] == {"umask": "0027", "nice": 7, "groups": ["adm", "users"],
                                  "limits": {"core": [0, "infinity"], "nofile": [1024, 4096],
                                             "nproc": [5000, 5000]}}
    assert "process-settings" in [finding["code"] for finding in as_json["findings"]]


def test_check_without_process_settings_says_nothing_about_them(sandbox):
    sandbox.service("demo", command=SLEEP)
    as_json = json.loads(sandbox.cli("check", "demo", "--json").stdout)
    assert as_json["process"] == {}
    assert "process settings" not in sandbox.cli("check", "demo").stdout


# --- the review's findings (items 2 to 4) ---------------------------------------------------------

def cli_with_umask(sandbox, umask: int, *args: str, wait: bool = True):
    """`svctl ARGS` started from a shell whose umask is UMASK (as an admin's `umask 077` would)."""
    import subprocess
    import sys

    from conftest import REPO

    command = [sys.executable, "-m", "supervisor", "--config-dir", str(sandbox.etc),
               "--run-dir", str(sandbox.run / "svctl"), *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO, umask=umask, check=False)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, umask=umask)


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_svctl_run_from_a_umask_077_shell_gives_the_service_0022_and_a_0755_run_dir(sandbox):
    """Item 2: the supervisor's umask is its own (0022), not the caller's: a service with no
    `umask` gets what `svctl start` gives it, and nobody's `svctl status` can read the run dir."""
    from conftest import poll_until

    sandbox.service("demo", command=SLEEP)
    run = cli_with_umask(sandbox, 0o077, "run", "demo", wait=False)
    try:
        poll_until(lambda: sandbox.service_pid() is not None, timeout=10, what="the service running")
        pid = sandbox.service_pid()
        assert status_field(pid, "Umask") == "0022"
        assert status_field(run.pid, "Umask") == "0022"
        assert mode_of(sandbox.run / "svctl" / "demo") == 0o755
        status = sandbox.cli("status", "demo", user="nobody")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0
        run.wait(timeout=20)


def test_svctl_start_from_a_umask_077_shell_creates_run_dirs_0755(sandbox):
    """Item 2: `svctl start` creates RUN_DIR and RUN_DIR/NAME before it detaches, still under the
    caller's umask: safefs gives what it creates the intended mode, so status works for nobody."""
    sandbox.service("demo", command=SLEEP)
    result = cli_with_umask(sandbox, 0o077, "start", "demo")
    assert result.returncode == 0, result.stderr
    try:
        assert mode_of(sandbox.run / "svctl") == 0o755
        assert mode_of(sandbox.run / "svctl" / "demo") == 0o755
        assert status_field(sandbox.service_pid(), "Umask") == "0022"
        status = sandbox.cli("status", "demo", user="nobody")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0


def refused_line(result, code: int = 6) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("number", [22, 777, 0])
def test_a_umask_given_as_a_toml_number_is_refused_with_a_hint(sandbox, number):
    """Item 3: umask = 22 used to be read as decimal (0026) without a word."""
    path = sandbox.service("demo", command=SLEEP)
    path.write_text(path.read_text() + f"umask = {number}\n")
    line = refused_line(sandbox.cli("start", "demo"))
    assert f"{path}: umask:" in line and 'umask = "0022"' in line and "decimal" in line, line
    assert not (sandbox.run / "demo.pid").exists()


def test_a_group_listed_twice_is_refused(sandbox):
    """Item 4: as requires does."""
    path = sandbox.service("demo", command=SLEEP, groups=["adm", "users", "adm"])
    line = refused_line(sandbox.cli("start", "demo"))
    assert f"{path}: groups:" in line and "'adm' is listed twice" in line, line


def test_unlimited_is_the_same_as_infinity(sandbox):
    """Item 4: both words are accepted (and documented)."""
    pid = start(sandbox, limits={"core": [0, "unlimited"]})
    try:
        assert limits_of(pid)["Max core file size"] == ("0", "unlimited")
    finally:
        assert sandbox.cli("stop", "demo").returncode == 0
