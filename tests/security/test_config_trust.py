"""Service definitions and the programs of root services are trusted before they are used.

Issue 10 item 2: `/etc/svctl/NAME.toml` tells root what to run, yet a 0666 file, one owned by
`nobody`, one in a directory `nobody` could write (or below a group-writable ancestor, or behind a
symlink into such a place) was used as it was; a FIFO at NAME.toml hung `svctl`; a root service's
command[0] owned by `nobody` was started as root. Each is now exit 6, one line naming the file and
the fix. A root-owned sticky directory (/var/tmp, where the sandbox lives) is a fine ancestor.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

from conftest import PYTHON, SERVICE, needs_root

NOBODY = pwd.getpwnam("nobody")


def refused(result: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 6, one line, no traceback, naming every one of NAMES."""
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_a_world_writable_service_file_is_refused(sandbox):
    path = sandbox.service("demo")
    os.chmod(path, 0o666)
    for verb in ("status", "start", "check"):
        refused(sandbox.cli(verb, "demo"), str(path), f"chmod go-w {path}")
    assert not (sandbox.run / "demo.pid").exists(), "nothing was started"


@needs_root()
def test_a_service_file_owned_by_nobody_is_refused(sandbox):
    path = sandbox.service("demo")
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    refused(sandbox.cli("start", "demo"), str(path), f"chown root {path}")
    refused(sandbox.cli("status", "demo"), str(path))
    assert not (sandbox.run / "demo.pid").exists()


@needs_root()
def test_a_service_file_in_a_directory_nobody_owns_is_refused(sandbox):
    """nobody cannot write the file, but can rename another file over it."""
    path = sandbox.service("demo")
    os.chown(sandbox.etc, NOBODY.pw_uid, NOBODY.pw_gid)
    refused(sandbox.cli("start", "demo"), str(path), f"chown root {sandbox.etc}")


def test_a_service_file_in_a_world_writable_directory_is_refused(sandbox):
    path = sandbox.service("demo")
    os.chmod(sandbox.etc, 0o777)
    refused(sandbox.cli("start", "demo"), str(path), f"chmod go-w {sandbox.etc}")


def test_a_group_writable_ancestor_is_refused(sandbox):
    path = sandbox.service("demo")
    os.chmod(sandbox.base, 0o775)
    refused(sandbox.cli("status", "demo"), str(path), f"chmod go-w {sandbox.base}")


@needs_root()
def test_a_symlink_to_a_file_in_an_untrusted_directory_is_refused(sandbox):
    """The link sits in the trusted config directory, its target where nobody decides."""
    elsewhere = sandbox.base / "nobodys"
    elsewhere.mkdir()
    os.chown(elsewhere, NOBODY.pw_uid, NOBODY.pw_gid)
    real = sandbox.service("real")
    target = elsewhere / "demo.toml"
    shutil.copy(real, target)  # root-owned 0644: only its directory is wrong
    os.symlink(target, sandbox.etc / "demo.toml")
    refused(sandbox.cli("start", "demo"), str(sandbox.etc / "demo.toml"), str(elsewhere))
    assert not (sandbox.run / "demo.pid").exists()


def test_a_symlink_to_a_world_writable_file_is_refused(sandbox):
    real = sandbox.service("real")
    os.chmod(real, 0o666)
    os.symlink(real, sandbox.etc / "demo.toml")
    refused(sandbox.cli("status", "demo"), str(sandbox.etc / "demo.toml"), "world-writable")


def test_a_trusted_symlink_is_followed(sandbox):
    """A control: symlinks are fine where only root could have made them."""
    real = sandbox.service("real")
    os.symlink(real, sandbox.etc / "demo.toml")
    result = sandbox.cli("status", "demo")
    assert result.returncode == 3, result.stderr


def test_a_fifo_as_the_service_file_does_not_hang(sandbox):
    fifo = sandbox.etc / "demo.toml"
    os.mkfifo(fifo, 0o644)
    for verb in ("status", "check"):
        refused(sandbox.cli(verb, "demo", timeout=10), str(fifo), "not a regular file")


def test_a_file_over_one_mebibyte_is_refused(sandbox):
    path = sandbox.service("demo")
    with open(path, "a") as handle:
        handle.write("#" * (1 << 20) + "\n")
    refused(sandbox.cli("status", "demo"), str(path), "1 MiB")


@needs_root()
def test_a_root_service_whose_program_nobody_owns_is_not_started(sandbox):
    script = sandbox.base / "run.sh"
    script.write_text(f"#!/bin/sh\nexec {PYTHON} {SERVICE}\n")
    os.chmod(script, 0o755)
    os.chown(script, NOBODY.pw_uid, NOBODY.pw_gid)
    path = sandbox.service("demo", command=[str(script)])
    for verb in ("start", "restart", "run", "check"):
        refused(sandbox.cli(verb, "demo"), str(path), "command", f"chown root {script}")
    assert not (sandbox.run / "demo.pid").exists(), "nothing was started"


@needs_root()
def test_a_root_services_check_program_in_a_nobody_directory_is_not_run(sandbox):
    tools = sandbox.base / "tools"
    tools.mkdir()
    os.chown(tools, NOBODY.pw_uid, NOBODY.pw_gid)
    check = tools / "check.sh"
    check.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(check, 0o755)  # root-owned, but nobody can rename another file over it
    path = sandbox.service("demo", check=[str(check)])
    refused(sandbox.cli("check", "demo"), str(path), "check", str(tools))
    refused(sandbox.cli("start", "demo"), str(path), "check")


@needs_root()
def test_a_service_running_as_nobody_may_run_nobodys_program(sandbox):
    """A control: the rule protects root; a program that runs as nobody may be nobody's."""
    script = sandbox.base / "run.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o755)
    os.chown(script, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", command=[str(script)], user="nobody")
    result = sandbox.cli("check", "demo")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_root()
def test_a_trusted_file_in_the_var_tmp_sandbox_starts_and_stops(sandbox):
    """A control: /var/tmp is world-writable but sticky and root's; the venv's python (command[0]
    and check[0]) is a chain of symlinks into /root/.pyenv, all root's."""
    assert os.stat("/var/tmp").st_mode & 0o1002 == 0o1002
    sandbox.service("demo", check=[PYTHON, "-c", "pass"])
    assert sandbox.cli("check", "demo").returncode == 0
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stderr
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_the_cached_definition_of_a_running_service_is_trusted_only_in_a_trusted_place(sandbox):
    """status skips parsing an unchanged file (state.json has it), but never the trust check: an
    untrusted file is refused, and status then reports the running service from the definition its
    supervisor recorded (root's), with the refusal and its fix as a warning (issue 11 item 5)."""
    path = sandbox.service("demo")
    assert sandbox.cli("start", "demo").returncode == 0
    try:
        assert sandbox.cli("status", "demo").returncode == 0
        before = os.stat(path)
        os.chmod(sandbox.etc, 0o777)  # the file itself is untouched: same signature as recorded
        assert os.stat(path).st_ctime_ns == before.st_ctime_ns
        status = sandbox.cli("status", "demo")
        assert status.returncode == 0 and "is running" in status.stdout, status.stdout + status.stderr
        assert "service file is invalid" in status.stdout and f"chmod go-w {sandbox.etc}" in status.stdout
        refused(sandbox.cli("check", "demo"), str(path), f"chmod go-w {sandbox.etc}")
    finally:
        os.chmod(sandbox.etc, 0o755)
        assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_a_private_setup_of_a_non_root_user_is_trusted_by_that_user(sandbox):
    """Owned by the caller is as good as owned by root, for the caller (make run, tests as non-root)."""
    for directory in (sandbox.base, sandbox.etc):
        os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    path = sandbox.service("demo")
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    assert sandbox.cli("status", "demo", user="nobody").returncode == 3
    refused(sandbox.cli("status", "demo"), str(path))  # but not by root
