"""environment_file (issue 13 item 4): what the running service sees, and every place a bad file
is refused: `svctl start` (exit 6, one line naming the file and the line), a crash-restart (a
failed spawn with the line's error), a reload (refused, the running service untouched)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import IS_ROOT, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

EVERY_SYNTAX = """\
# a comment, then a blank line

PLAIN=value
export EXPORTED=yes
SINGLE='literal $HOME `id` \\n "q"'
DOUBLE="a \\"b\\" \\\\ \\$HOME \\` 'c'"
EQUALS=a=b=c
EMPTY=
EMPTY_QUOTED=""
OVERRIDDEN=from-the-file
   INDENTED=ok
"""


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)


def one_line_exit_6(result, *names: str) -> str:
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def started(sandbox, name: str = "demo") -> int:
    result = sandbox.cli("start", name)
    assert result.returncode == 0, result.stderr
    pid = sandbox.service_pid(name)
    assert pid
    return pid


def stop(sandbox) -> None:
    assert sandbox.cli("stop", "demo").returncode == 0


def test_every_syntax_reaches_the_service_and_environment_overrides_it(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text(EVERY_SYNTAX)
    sandbox.service("demo", environment_file=str(envfile), environment={"OVERRIDDEN": "from-toml"})
    seen = environ(started(sandbox))
    stop(sandbox)
    expected = {"PLAIN": "value", "EXPORTED": "yes", "SINGLE": 'literal $HOME `id` \\n "q"',
                "DOUBLE": "a \"b\" \\ $HOME ` 'c'", "EQUALS": "a=b=c", "EMPTY": "", "EMPTY_QUOTED": "",
                "OVERRIDDEN": "from-toml", "INDENTED": "ok"}
    assert {key: seen.get(key) for key in expected} == expected
    assert seen["PATH"].startswith("/usr/local/sbin")  # the base environment is still there


@pytest.mark.parametrize("line, reason", [
    ("A=$HOME", "'$'"), ("A=$(id)", "'$'"), ("A=`id`", "backtick"), ('A="$HOME"', "'$'"),
    ("A='open", "unbalanced single quote"), ('A="open', "unbalanced double quote"),
    ("A=two words", "a space"), ("1A=x", "[A-Za-z_]"), ("A='x' y", "after the closing quote"),
    ('A="\\n"', "backslash"),
])
def test_start_refuses_a_bad_line_with_exit_6_naming_file_and_line(sandbox, line, reason):
    envfile = sandbox.base / "demo.env"
    envfile.write_text(f"# comment\nGOOD=1\n{line}\n")
    path = sandbox.service("demo", environment_file=str(envfile))
    message = one_line_exit_6(sandbox.cli("start", "demo"), str(path), str(envfile), "line 3", reason)
    assert "environment_file" in message
    assert not (sandbox.run / "demo.pid").exists(), "refused before detaching"
    check = sandbox.cli("check", "demo")
    assert check.returncode == 6 and "line 3" in check.stdout, check.stdout


def test_a_missing_file_is_fine_only_with_the_dash(sandbox):
    missing = sandbox.base / "absent.env"
    sandbox.service("demo", environment_file=str(missing))
    one_line_exit_6(sandbox.cli("start", "demo"), str(missing), "no such file", f'"-{missing}"')
    sandbox.service("demo", environment_file=f"-{missing}")
    pid = started(sandbox)
    assert "PLAIN" not in environ(pid)
    stop(sandbox)


def test_the_file_is_read_again_at_a_crash_restart(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("VERSION=one\n")
    sandbox.service("demo", environment_file=str(envfile), restart="always", backoff_initial=0.1)
    first = started(sandbox)
    assert environ(first)["VERSION"] == "one"
    envfile.write_text("VERSION=two\n")
    os.kill(first, signal.SIGKILL)
    second = poll_until(lambda: (pid := sandbox.service_pid()) not in (None, first) and pid, what="restart")
    assert environ(second)["VERSION"] == "two"
    # a crash-restart with a broken file: a failed spawn whose reason is the line's error
    envfile.write_text("VERSION=two\nBROKEN=$(id)\n")
    os.kill(second, signal.SIGKILL)
    poll_until(lambda: any("line 2" in str(event.get("reason", "")) for event in sandbox.events()),
               timeout=10, what="a start_failed naming line 2")
    failure = next(event for event in sandbox.events() if "line 2" in str(event.get("reason", "")))
    assert str(envfile) in failure["reason"] and "'$'" in failure["reason"]
    envfile.write_text("VERSION=three\n")  # repaired: the next retry starts it
    third = poll_until(lambda: (pid := sandbox.service_pid()) not in (None, first, second) and pid,
                       timeout=15, what="a start after the repair")
    assert environ(third)["VERSION"] == "three"
    stop(sandbox)


def test_the_file_is_read_again_at_reload(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("VERSION=one\n")
    sandbox.service("demo", environment_file=str(envfile))
    first = started(sandbox)
    envfile.write_text("VERSION=two\n")
    result = sandbox.cli("reload", "demo")
    assert result.returncode == 0, result.stderr
    second = sandbox.service_pid()
    assert second != first and environ(second)["VERSION"] == "two"
    stop(sandbox)


def test_a_reload_with_a_broken_file_is_refused_and_the_service_keeps_running(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("VERSION=one\n")
    sandbox.service("demo", environment_file=str(envfile))
    pid = started(sandbox)
    envfile.write_text("VERSION=one\nexport BAD='unbalanced\n")
    # `svctl reload` refuses before asking the supervisor
    one_line_exit_6(sandbox.cli("reload", "demo"), str(envfile), "line 2", "unbalanced single quote")
    # SIGHUP reaches the supervisor itself: it refuses too, and logs why
    os.kill(sandbox.supervisor_pid(), signal.SIGHUP)
    poll_until(lambda: any(event["event"] == "reload_refused" for event in sandbox.events()),
               what="reload_refused")
    refusal = next(event for event in sandbox.events() if event["event"] == "reload_refused")
    assert "line 2" in refusal["reason"] and refusal["source"] == "signal"
    time.sleep(0.5)
    assert sandbox.service_pid() == pid and os.path.exists(f"/proc/{pid}")
    assert environ(pid)["VERSION"] == "one"
    assert sandbox.state()["machine"]["state"] == "running"
    stop(sandbox)


def test_a_control_socket_reload_with_a_broken_file_gets_exit_6(sandbox):
    """The supervisor's own refusal, as a client that skipped the CLI's check would get it."""
    import socket

    envfile = sandbox.base / "demo.env"
    envfile.write_text("VERSION=one\n")
    sandbox.service("demo", environment_file=str(envfile))
    pid = started(sandbox)
    envfile.write_text("VERSION=`id`\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(sandbox.run / "svctl" / "demo" / "control.sock"))
        client.sendall(b"reload\n")
        answer = client.makefile().readline()
    assert answer.startswith("6 ") and "line 1" in answer and "backtick" in answer, answer
    assert sandbox.service_pid() == pid and os.path.exists(f"/proc/{pid}")
    stop(sandbox)


def test_check_reports_the_file_by_variable_names_only(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("TOKEN='s3cr3t'\nOTHER=1\n")
    sandbox.service("demo", environment_file=str(envfile))
    result = sandbox.cli("check", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"environment_file {envfile}: 2 variables (TOKEN, OTHER)" in result.stdout
    assert "s3cr3t" not in result.stdout


def test_an_edited_env_file_counts_as_a_change_for_an_otherwise_unchanged_reload(sandbox):
    """With `watch`, a reload whose watched files are unchanged restarts nothing; an environment
    file that now says something else than what the service was spawned with still restarts it."""
    watched, envfile = sandbox.base / "app.conf", sandbox.base / "demo.env"
    watched.write_text("same\n")
    envfile.write_text("VERSION=one\n")
    sandbox.service("demo", environment_file=str(envfile), watch=[str(watched)])
    first = started(sandbox)
    result = sandbox.cli("reload", "demo")
    assert result.returncode == 0 and "unchanged" in result.stdout, result.stdout + result.stderr
    assert sandbox.service_pid() == first
    envfile.write_text("VERSION=two\n")
    result = sandbox.cli("reload", "demo")
    assert result.returncode == 0, result.stderr
    second = sandbox.service_pid()
    assert second != first and environ(second)["VERSION"] == "two"
    stop(sandbox)


def test_a_leading_utf8_bom_is_skipped(sandbox):
    """Review item 8: a file saved by an editor that writes a BOM was "a bad name on line 1"."""
    envfile = sandbox.base / "demo.env"
    envfile.write_bytes(b"\xef\xbb\xbfFIRST=one\nSECOND=two\n")
    sandbox.service("demo", environment_file=str(envfile))
    pid = started(sandbox)
    try:
        seen = environ(pid)
        assert seen["FIRST"] == "one" and seen["SECOND"] == "two"
        assert not any(key.startswith("\ufeff") for key in seen)
    finally:
        stop(sandbox)


def test_a_bom_elsewhere_is_still_a_bad_name(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_bytes(b"FIRST=one\n\xef\xbb\xbfSECOND=two\n")
    sandbox.service("demo", environment_file=str(envfile))
    one_line_exit_6(sandbox.cli("start", "demo"), str(envfile), "line 2")


def check_fix(sandbox, code: str = "environment-file-invalid") -> str:
    import json

    result = sandbox.cli("check", "demo", "--json")
    assert result.returncode == 6, result.stdout + result.stderr
    findings = {finding["code"]: finding for finding in json.loads(result.stdout)["findings"]}
    return findings[code]["fix"]


SYNTAX_HINT = "KEY=value lines"


def test_check_gives_a_syntax_error_the_syntax_hint(sandbox):
    """Review item 7: each kind of problem its own fix; the syntax hint only for syntax."""
    envfile = sandbox.base / "demo.env"
    envfile.write_text("A = 1\n")
    sandbox.service("demo", environment_file=str(envfile))
    assert SYNTAX_HINT in check_fix(sandbox)


def test_check_tells_how_to_fix_a_missing_file(sandbox):
    missing = sandbox.base / "missing.env"
    sandbox.service("demo", environment_file=str(missing))
    fix = check_fix(sandbox)
    assert SYNTAX_HINT not in fix
    assert f"create {missing}" in fix and f'"-{missing}"' in fix, fix


def test_check_tells_how_to_fix_a_world_writable_file(sandbox):
    envfile = sandbox.base / "demo.env"
    envfile.write_text("A=1\n")
    os.chmod(envfile, 0o666)
    sandbox.service("demo", environment_file=str(envfile))
    assert check_fix(sandbox) == f"chmod go-w {envfile}"


def test_check_tells_how_to_fix_a_file_of_the_wrong_owner(sandbox):
    import pwd

    envfile = sandbox.base / "demo.env"
    envfile.write_text("A=1\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(envfile, nobody.pw_uid, nobody.pw_gid)
    sandbox.service("demo", environment_file=str(envfile))
    assert check_fix(sandbox) == f"chown root {envfile}"


def test_check_tells_how_to_fix_a_file_the_user_may_not_read(sandbox):
    """A root 0600 file the nobody service's user must read itself (its directory is nobody's)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    home = sandbox.base / "nobody-home"
    home.mkdir(mode=0o755)
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    envfile = home / "demo.env"
    envfile.write_text("A=1\n")
    os.chmod(envfile, 0o600)
    sandbox.service("demo", command=["/bin/sleep", "300"], user="nobody", environment_file=str(envfile))
    fix = check_fix(sandbox)
    assert SYNTAX_HINT not in fix
    assert f"let nobody read {envfile}" in fix, fix
