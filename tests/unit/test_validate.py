"""run_check with real subprocesses, and the watched-file permission rules."""

from __future__ import annotations

import os
import pwd
import signal
import sys
import time

import pytest

from conftest import check_to_the_end
from supervisor.config import ServiceConfig
from supervisor.unix.validate import check_watched_file_safety, run_check, summarize

PY = sys.executable
IS_ROOT = os.geteuid() == 0


def cfg(check, **kw) -> ServiceConfig:
    return ServiceConfig(name="demo", path="/dev/null", command=("/bin/true",), check=tuple(check), **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_no_check_configured_is_ok():
    result = run_check(cfg([]))
    assert result.ok and result.summary == "no check configured"


def test_passing_check():
    result = run_check(cfg([PY, "-c", "print('looks fine')"]))
    assert result.ok, result
    assert "looks fine" in result.output
    assert result.seconds > 0


def test_failing_python_check_summarizes_the_exception_line():
    code = "import sys; sys.stderr.write('Traceback (most recent call last):\\n  File \"c.py\", line 3\\n" \
           "    x = = 1\\n        ^\\nSyntaxError: invalid syntax\\n'); sys.exit(1)"
    result = run_check(cfg([PY, "-c", code]))
    assert not result.ok
    assert result.summary == "exit status 1: SyntaxError: invalid syntax (c.py, line 3)"
    assert "line 3" in result.output, "the full output is kept for the event"


def test_real_syntax_error_in_a_config_file(tmp_path):
    conf = tmp_path / "app_config.py"
    conf.write_text("c = get_config(\nc.X = = 1\n")
    result = run_check(cfg([PY, "-c", f"compile(open({str(conf)!r}).read(), 'app_config.py', 'exec')"]))
    assert not result.ok
    assert result.summary.startswith("exit status 1: SyntaxError:"), result.summary


def test_stdout_and_stderr_are_both_captured():
    result = run_check(cfg([PY, "-c", "import sys; print('out'); sys.stdout.flush(); "
                                      "print('error: bad key', file=sys.stderr); sys.exit(3)"]))
    assert "out" in result.output and "error: bad key" in result.output
    assert result.summary == "exit status 3: error: bad key"


def test_missing_program_is_a_clean_failure():
    result = run_check(cfg(["/nonexistent/validator"]))
    assert not result.ok and "cannot run /nonexistent/validator" in result.summary


def test_killed_by_signal_is_reported():
    result = run_check(cfg([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]))
    assert not result.ok and result.summary.startswith("killed by SIGSEGV")


def test_timeout_kills_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    code = ("import os, subprocess, sys, time;"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}');"
            "time.sleep(60)")
    started = time.monotonic()
    result = run_check(cfg([PY, "-c", code], check_timeout=1.0))
    assert time.monotonic() - started < 10
    assert not result.ok and result.summary == "timed out after 1s"
    parent, child = map(int, pids.read_text().split())
    try:
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(parent) and not alive(child), "the grandchild must die with the group"
    finally:
        for pid in (parent, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_explicit_timeout_overrides_the_config():
    result = run_check(cfg([PY, "-c", "import time; time.sleep(30)"], check_timeout=60), timeout=0.5)
    assert result.summary == "timed out after 0.5s"


def test_scratch_working_directory_is_fresh_and_removed(tmp_path):
    where = tmp_path / "cwd"
    code = (f"import os; open('state.sqlite', 'w').write('x'); open({str(where)!r}, 'w').write(os.getcwd())")
    result = run_check(cfg([PY, "-c", code], working_directory=str(tmp_path)))
    assert result.ok, result
    scratch = where.read_text()
    assert scratch != str(tmp_path) and "svctl-check-demo-" in scratch
    assert not os.path.exists(scratch), "the scratch directory is removed afterwards"
    assert not (tmp_path / "state.sqlite").exists()


def test_environment_is_minimal_with_the_service_env_on_top(monkeypatch):
    monkeypatch.setenv("SVCTL_TEST_LEAK", "operator-shell")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    env = (("HUB_MODE", "test"), ("PATH", "/opt/bin:/usr/bin"))
    result = run_check(cfg([PY, "-c", code], environment=env))
    import json

    seen = json.loads(result.output)
    assert "SVCTL_TEST_LEAK" not in seen
    assert seen["HUB_MODE"] == "test" and seen["PATH"] == "/opt/bin:/usr/bin"
    assert seen["HOME"] and seen["TMPDIR"].startswith(tempfile_root())


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_runs_as_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    # /bin/sh, not this interpreter: nobody cannot read a venv under /root.
    result = run_check(cfg(["/bin/sh", "-c", "id -u; id -g; pwd"], user="nobody"))
    assert result.ok, result
    uid, gid, cwd = result.output.split()
    assert (uid, gid) == (str(nobody.pw_uid), str(nobody.pw_gid))
    assert "svctl-check-demo-" in cwd, "the scratch directory belongs to the user"
    assert not os.path.exists(cwd)


def test_unknown_user_is_a_clean_failure():
    result = run_check(cfg([PY, "-c", "pass"], user="no-such-user-svctl"))
    assert not result.ok and "unknown user" in result.summary


@pytest.mark.parametrize("output, expected", [
    ("", "(no output)"),
    ("\n\n  usage: x\n", "usage: x"),
    ("loading...\n[E 2026 app] Invalid value for c.JupyterHub.port\n",
     "[E 2026 app] Invalid value for c.JupyterHub.port"),
    ("Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'port'\n", "KeyError: 'port'"),
    ("x" * 500, "x" * 197 + "..."),
])
def test_summarize(output, expected):
    assert summarize(output) == expected


# -- watched-file safety ------------------------------------------------------------------------


@pytest.fixture
def conf(tmp_path):
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "app.conf"
    path.write_text("a = 1\n")
    os.chmod(path, 0o644)
    return path


@pytest.mark.skipif(not IS_ROOT, reason="ownership rules apply to root services")
def test_root_owned_private_file_is_fine(conf):
    assert check_watched_file_safety(str(conf), None) is None
    assert check_watched_file_safety(str(conf), "root") is None


@pytest.mark.skipif(not IS_ROOT, reason="ownership rules apply to root services")
@pytest.mark.parametrize("mode, word", [(0o666, "world-writable"), (0o664, "group-writable")])
def test_writable_file_is_refused_with_the_fix(conf, mode, word):
    os.chmod(conf, mode)
    reason = check_watched_file_safety(str(conf), None)
    assert reason and word in reason and f"chmod go-w {conf}" in reason
    assert "\n" not in reason


@pytest.mark.skipif(not IS_ROOT, reason="ownership rules apply to root services")
def test_file_owned_by_another_user_is_refused(conf):
    os.chown(conf, pwd.getpwnam("nobody").pw_uid, -1)
    reason = check_watched_file_safety(str(conf), "root")
    assert reason and "owned by nobody" in reason and f"chown root {conf}" in reason


@pytest.mark.skipif(not IS_ROOT, reason="ownership rules apply to root services")
def test_writable_directory_is_refused(conf):
    os.chmod(conf.parent, 0o777)
    reason = check_watched_file_safety(str(conf), None)
    assert reason and f"chmod go-w {conf.parent}" in reason


@pytest.mark.skipif(not IS_ROOT, reason="ownership rules apply to root services")
def test_symlink_target_is_what_counts(conf, tmp_path):
    link = tmp_path / "link.conf"
    os.symlink(conf, link)
    os.chmod(conf, 0o646)
    assert "world-writable" in check_watched_file_safety(str(link), None)


def test_non_root_service_is_not_restricted(conf):
    os.chmod(conf, 0o666)
    assert check_watched_file_safety(str(conf), "nobody") is None


def test_missing_file_is_left_to_the_watcher(tmp_path):
    assert check_watched_file_safety(str(tmp_path / "missing.conf"), None) is None


def test_background_helper_does_not_stall_the_check_and_is_killed(tmp_path):
    """A check that exits but leaves a child holding stdout is judged on its exit status at once."""
    pidfile = tmp_path / "helper.pid"
    code = ("import subprocess, sys;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('config ok')")
    started = time.monotonic()
    result = run_check(cfg([PY, "-c", code], check_timeout=30))
    assert time.monotonic() - started < 5
    assert result.ok and "config ok" in result.output
    helper = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 5
        while alive(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(helper)
    finally:
        try:
            os.kill(helper, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the reloader's check: what it judged, and what it logs (issue 10 items 3, 5, 7) ----------------

from supervisor.unix.validate import last_lines, redact, secret_values  # noqa: E402


def make_reloader(tmp_path, check, environment=()):
    from supervisor.log import EventLog
    from supervisor.reloader import ConfigReloader

    conf = tmp_path / "app.conf"
    if not conf.exists():
        conf.write_text("a = 1\n")
    config = ServiceConfig(name="demo", path="/dev/null", command=("/bin/true",), watch=(str(conf),),
                           check=tuple(check), environment=tuple(environment))
    (tmp_path / "run").mkdir(exist_ok=True)
    events = tmp_path / "events.json"
    return ConfigReloader(config, str(tmp_path / "run"), EventLog(str(events), "demo", False), lambda: None), events



def test_an_edit_during_the_check_leaves_no_verdict(tmp_path):
    """The check judged the file on disk while it ran: if that moved, the verdict is for unknown bytes."""
    conf = tmp_path / "app.conf"
    reloader, events = make_reloader(tmp_path, [PY, "-c", f"open({str(conf)!r}, 'w').write('a = 2')"])
    verdict = check_to_the_end(reloader)
    assert not verdict.ok and "changed while being checked" in verdict.summary
    assert reloader.candidate is None, "nothing to promote"


def test_a_fifo_at_the_watched_path_is_rejected_at_once_without_running_the_check(tmp_path):
    os.mkfifo(tmp_path / "app.conf")
    reloader, _ = make_reloader(tmp_path, [PY, "-c", "import time; time.sleep(30)"])
    started = time.monotonic()
    verdict = reloader.begin_check()
    assert time.monotonic() - started < 2
    assert verdict is not None and not verdict.ok and "not a regular file" in verdict.summary
    assert reloader.check_pid is None


SECRET = "hub-secret-7f3a9c"


def test_check_finished_logs_the_last_lines_with_environment_values_masked(tmp_path):
    code = ("import os, sys\n"
            "for i in range(100): print(f'line {i} token={os.environ[\"HUB_TOKEN\"]}')\n"
            "sys.exit('error: bad token ' + os.environ['HUB_TOKEN'])")
    reloader, events = make_reloader(tmp_path, [PY, "-u", "-c", code],
                                     environment=[("HUB_TOKEN", SECRET), ("MODE", "abc")])
    verdict = check_to_the_end(reloader)
    assert not verdict.ok
    assert SECRET not in verdict.summary and "***" in verdict.summary, verdict.summary
    text = events.read_text()
    assert SECRET not in text and SECRET[:8] not in text
    import json

    [entry] = [e for e in map(json.loads, text.splitlines()) if e["event"] == "check_finished"]
    lines = entry["output"].splitlines()
    assert 1 <= len(lines) <= 20 and lines[-1] == "error: bad token ***"
    assert entry["summary"] == verdict.summary


def test_a_clipped_summary_never_shows_part_of_a_secret():
    from supervisor.unix.validate import CheckJob

    code = f"import sys; sys.exit('error: ' + 'x' * 185 + {SECRET!r})"
    job = CheckJob(cfg([PY, "-c", code]))
    _, status = os.waitpid(job.pid, 0)
    result = job.finish(status, None, (SECRET,))
    assert not result.ok and SECRET[:6] not in result.summary and SECRET not in result.output


def test_redaction_helpers():
    config = cfg([], environment=(("A", "long-value"), ("B", "abc"), ("C", "long-value-2")))
    assert secret_values(config) == ("long-value-2", "long-value"), "longest first; short ones kept"
    assert redact("x=long-value-2 y=long-value z=abc", secret_values(config)) == "x=*** y=*** z=abc"
    assert last_lines("\n".join(str(i) for i in range(50)) + "\n\n", 3) == "47\n48\n49"


JUPYTERHUB_SYNTAX_ERROR = """\
[E 2026-12-01 10:00:00.000 JupyterHub application:923] Exception while loading config file /etc/jupyterhub/jupyterhub_config.py
    Traceback (most recent call last):
      File "/opt/jupyterhub/lib/python3.11/site-packages/traitlets/config/application.py", line 909, in _load_config_files
        config = loader.load_config()
                 ^^^^^^^^^^^^^^^^^^^^
      File "/etc/jupyterhub/jupyterhub_config.py", line 50
        this is not python (
             ^^
    SyntaxError: invalid syntax
"""


def test_an_indented_jupyterhub_traceback_gives_the_exception_line_and_where():
    assert summarize(JUPYTERHUB_SYNTAX_ERROR) == "SyntaxError: invalid syntax (jupyterhub_config.py, line 50)"
