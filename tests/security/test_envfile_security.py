"""environment_file as hostile input (issue 13 item 4).

A root service's environment file tells root what to run with (LD_PRELOAD, PATH...), so it must
pass the service file's own trust checks. Another user's service has its file opened with that
user's rights, so root never hands the user a file they could not read themselves (a symlink to a
root-only file). A FIFO must not hang `svctl start`; a huge file is refused.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from conftest import as_nobody, needs_root, poll_until

NOBODY = pwd.getpwnam("nobody")
SECRET = "ROOT_ONLY_SECRET=hunter2-do-not-leak"
SLEEP = ["/bin/sleep", "300"]  # the venv's python lives under /root: nobody cannot run it

pytestmark = needs_root()


def refused(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def nothing_started(sandbox) -> None:
    assert not (sandbox.run / "demo.pid").exists()


def test_a_world_writable_env_file_for_a_root_service_is_refused(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("LD_PRELOAD=/tmp/evil.so\n")
    os.chmod(envfile, 0o666)
    sandbox.service("demo", environment_file=str(envfile))
    refused(sandbox.cli("start", "demo"), str(envfile), "world-writable", f"chmod go-w {envfile}")
    nothing_started(sandbox)
    assert sandbox.cli("check", "demo").returncode == 6


def test_a_nobody_owned_env_file_for_a_root_service_is_refused(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("A=1\n")
    os.chown(envfile, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", environment_file=str(envfile))
    refused(sandbox.cli("start", "demo"), str(envfile), "nobody", f"chown root {envfile}")
    nothing_started(sandbox)


def test_an_env_file_in_a_nobody_owned_directory_is_refused_for_a_root_service(sandbox):
    directory = sandbox.base / "nobodys"
    directory.mkdir(mode=0o755)
    envfile = directory / "demo.env"
    envfile.write_text("A=1\n")  # root's own file, but nobody can rename another over it
    os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", environment_file=str(envfile))
    refused(sandbox.cli("start", "demo"), str(directory), "chown root")
    nothing_started(sandbox)


def test_a_missing_optional_file_below_a_nobody_directory_is_still_refused(sandbox):
    """Nobody could create it between the check and the next start: missing is not "fine" there."""
    directory = sandbox.base / "nobodys"
    directory.mkdir(mode=0o755)
    os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", environment_file=f"-{directory}/demo.env")
    refused(sandbox.cli("start", "demo"), str(directory))


def test_a_symlink_to_a_root_only_file_is_not_leaked_to_a_nobody_service(sandbox):
    secret = sandbox.base / "root-only"
    secret.write_text(SECRET + "\n")
    os.chmod(secret, 0o600)
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    link = home / "demo.env"
    as_nobody(os.symlink, str(secret), str(link))
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(link))
    line = refused(sandbox.cli("start", "demo"), str(link), "Permission denied", "nobody")
    assert "hunter2" not in line
    nothing_started(sandbox)
    check = sandbox.cli("check", "demo")
    assert check.returncode == 6 and "hunter2" not in check.stdout + check.stderr


def test_the_nobody_service_gets_a_root_readable_path_only_as_nobody_could(sandbox):
    """/etc/default/NAME (root's, 0644) is fine for a nobody service; the same file 0600 is too:
    every directory on its path is root's alone and so is the file, so nobody cannot have pointed
    it anywhere and root reads it for the service (review item 6: where secrets usually live, and
    what systemd's EnvironmentFile= reads as root). Before, a root 0600 file here was refused."""
    envfile = sandbox.base / "demo.env"
    envfile.write_text("SHARED=yes\n")
    os.chmod(envfile, 0o644)
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(envfile))
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    pid = sandbox.service_pid()
    assert Path(f"/proc/{pid}/environ").read_bytes().split(b"\0").count(b"SHARED=yes") == 1
    assert sandbox.cli("stop", "demo").returncode == 0
    envfile.write_text(SECRET + "\n")
    os.chmod(envfile, 0o600)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    pid = sandbox.service_pid()
    assert SECRET.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_root_0600_file_reached_through_a_root_symlink_into_a_nobody_directory_is_read_as_nobody(sandbox):
    """Root's link, but the directory it leads to is nobody's: nobody could swap the file."""
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    secret = home / "demo.env"
    secret.write_text(SECRET + "\n")
    os.chmod(secret, 0o600)
    link = sandbox.base / "demo.env"
    os.symlink(str(secret), str(link))
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(link))
    line = refused(sandbox.cli("start", "demo"), "Permission denied", "nobody")
    assert "hunter2" not in line
    nothing_started(sandbox)


def test_a_root_0600_file_in_a_sticky_shared_directory_is_read_as_nobody(sandbox):
    """In a /tmp-like directory anyone may add entries (a hard link to a root file, with
    protected_hardlinks off): root alone does not control it, so the user's own open decides."""
    shared = sandbox.base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    envfile = shared / "demo.env"
    envfile.write_text(SECRET + "\n")
    os.chmod(envfile, 0o600)
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(envfile))
    line = refused(sandbox.cli("start", "demo"), "Permission denied", "nobody")
    assert "hunter2" not in line
    nothing_started(sandbox)


def test_a_root_owned_group_writable_file_is_read_as_nobody(sandbox):
    """Only a file root alone can change is root's word: a group-writable one is read as the user."""
    envfile = sandbox.base / "demo.env"
    envfile.write_text(SECRET + "\n")
    os.chmod(envfile, 0o620)
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(envfile))
    refused(sandbox.cli("start", "demo"), "Permission denied", "nobody")
    nothing_started(sandbox)


def test_the_nobody_service_may_use_its_own_file_in_its_own_directory(sandbox):
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    envfile = home / "demo.env"
    envfile.write_text("MINE=1\n")
    os.chown(envfile, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(envfile))
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    pid = sandbox.service_pid()
    assert b"MINE=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_swapped_in_symlink_at_restart_is_not_leaked_either(sandbox):
    """The file is read again at every start, as the user each time: replacing it by a symlink to
    a root-only file while the service runs gives a failed restart, not the secret."""
    secret = sandbox.base / "root-only"
    secret.write_text(SECRET + "\n")
    os.chmod(secret, 0o600)
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    envfile = home / "demo.env"
    envfile.write_text("MINE=1\n")
    os.chown(envfile, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(envfile), restart="always")
    assert sandbox.cli("start", "demo").returncode == 0
    first = sandbox.service_pid()

    def swap():
        os.unlink(envfile)
        os.symlink(str(secret), str(envfile))

    as_nobody(swap)
    os.kill(first, 9)
    poll_until(lambda: any("Permission denied" in str(event.get("reason", "")) for event in sandbox.events()),
               timeout=10, what="a failed restart")
    pid = sandbox.service_pid()
    assert pid is None or b"hunter2" not in Path(f"/proc/{pid}/environ").read_bytes()
    assert "hunter2" not in (sandbox.log / "demo.json").read_text()
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_fifo_does_not_hang_start(sandbox):
    fifo = sandbox.base / "demo.env"
    os.mkfifo(fifo, 0o644)
    sandbox.service("demo", environment_file=str(fifo))
    refused(sandbox.cli("start", "demo", timeout=20), str(fifo), "not a regular file")
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(fifo))
    refused(sandbox.cli("start", "demo", timeout=20), str(fifo), "not a regular file")


def test_a_file_over_one_mib_is_refused(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("# padding\n" * 110_000)
    sandbox.service("demo", environment_file=str(envfile))
    refused(sandbox.cli("start", "demo"), str(envfile), "1 MiB")


def test_a_symlink_to_proc_self_environ_does_not_leak_the_supervisors_environment(sandbox):
    """The helper that opens the file as the user is a fork of the supervisor: its /proc/self is
    root's (non-dumpable), so the user's symlink there gets "Permission denied", not root's
    environment (whatever secrets the shell that started svctl had)."""
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    link = home / "demo.env"
    as_nobody(os.symlink, "/proc/self/environ", str(link))
    sandbox.service("demo", command=SLEEP, user="nobody", environment_file=str(link))
    os.environ["SVCTL_TEST_SECRET"] = "hunter2"
    try:
        result = sandbox.cli("start", "demo")
    finally:
        del os.environ["SVCTL_TEST_SECRET"]
    assert result.returncode == 6 and "hunter2" not in result.stderr, result.stderr
    nothing_started(sandbox)
