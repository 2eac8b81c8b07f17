"""Red-team tests for issue 15 (the light per-service supervisor): the C JSON scanner without
`import json`, work run apart in a forked child, raw inotify in the loop, the hot verbs' os._exit,
records instead of namedtuples and the tcp:// parser without urllib.

The attacker is `nobody`, the user of a service, who controls its working and watched directories;
or a careless operator. A test that shows a bug asserts the safe behaviour and fails until the bug
is fixed; the others are regression tests for attacks that are already defended. Real processes.
"""

from __future__ import annotations

import copy
import os
import pickle
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, SERVICE, alive, as_nobody, free_port, needs_root, poll_until

NOBODY = pwd.getpwnam("nobody")


def one_line_error(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 1, result.stderr


def state_dir(sandbox, name: str = "demo") -> Path:
    return sandbox.run / "svctl" / name


def spawns(sandbox, name: str = "demo") -> int:
    return len([e for e in sandbox.events(name) if e["event"] == "spawned"])


# ---- 1. jsontext: the C scanner without json.decoder imported ---------------------------------

# Any malformed JSON that is not "nothing at all" or "extra data" makes the C scanner raise
# JSONDecodeError, which it looks up in sys.modules["json.decoder"] (it never imports it): with no
# `import json` in the process it returns NULL with no exception set, so jsontext.loads raises
# SystemError, which no reader catches (they catch ValueError).
MALFORMED = ('{"state": "runn', '{"a": [1,', '{"a" 1}', '{"a": "\\x"}', '{"a": tru}')


@pytest.mark.parametrize("text", MALFORMED)
def test_jsontext_loads_raises_value_error_for_malformed_json_without_json_imported(text):
    code = ("import sys\nfrom supervisor import jsontext\n"
            "try:\n    jsontext.loads(sys.argv[1])\nexcept ValueError:\n    print('ValueError')\n"
            "except BaseException as exc:\n    print(type(exc).__name__)\n"
            "print('json.decoder' in sys.modules)\n")
    result = subprocess.run([PYTHON, "-c", code, text], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.stdout.split() == ["ValueError", "False"], result.stdout + result.stderr


@needs_root()
@pytest.mark.parametrize("verb", ["status", "stop", "start"])
def test_a_truncated_state_json_gives_one_line_not_a_traceback(sandbox, verb):
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    directory = state_dir(sandbox)
    directory.mkdir(parents=True, mode=0o755)
    os.chmod(directory.parent, 0o755)
    (directory / "state.json").write_text('{"state": "runn')  # a torn or truncated file, root's
    result = sandbox.cli(verb, "demo")
    one_line_error(result)
    if verb == "status":
        assert result.returncode in (3, 4), result
    sandbox.cli("stop", "demo")


STATE_GARBAGE = {
    "deep": "[" * 100000,
    "bom": "\ufeff{}",
    "nan_pids": '{"supervisor": {"pid": NaN}, "service": {"pid": Infinity}}',
    "bool_pids": '{"supervisor": {"pid": true}, "service": {"pid": true}}',
    "huge_pids": '{"supervisor": {"pid": 99999999999999999999}, "service": {"pid": -1}}',
    "wrong_types": '{"supervisor": "x", "service": [1, 2], "config": {"path": 1, "data": []}}',
    "duplicate_keys": '{"service": {"pid": 1}, "service": {"pid": 1}}',
    "non_utf8": b'{"state": "\xff\xfe"}',
}


@needs_root()
@pytest.mark.parametrize("kind", sorted(STATE_GARBAGE))
def test_garbage_state_json_is_one_line_and_signals_nobody(sandbox, kind):
    """Defended (apart from truncation, above): with the service not running, whatever state.json says
    is not believed; PID 1 (true, 1) is never signalled (we would not be here if it were)."""
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    directory = state_dir(sandbox)
    directory.mkdir(parents=True, mode=0o755)
    data = STATE_GARBAGE[kind]
    (directory / "state.json").write_bytes(data if isinstance(data, bytes) else data.encode())
    try:
        for verb in ("status", "stop"):
            result = sandbox.cli(verb, "demo")
            one_line_error(result)
        assert sandbox.cli("status", "demo").returncode in (3, 4)
    finally:
        (directory / "state.json").unlink()  # the fixture's clean-up reads it too


# ---- 2. run_apart: the child's answer ----------------------------------------------------------

def _kill_myself():
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _answer(value):
    return value


# The child's work gone wrong: half a JSON answer on its pipe back, then an exit (a child killed
# mid-write, an answer cut short). Run in a fresh interpreter: json.decoder must not be imported
# there (this module's conftest imports json, which hides the bug).
HALF_AN_ANSWER = """
import fcntl, os, sys
from supervisor.unix.apart import ApartFailed, run_apart

def half_an_answer():
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if fd > 2 and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:") \\
                    and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                os.write(fd, b'{"result": {"command": ["/bin/')
        except OSError:
            pass
    os._exit(0)

try:
    run_apart(half_an_answer)
except ApartFailed:
    print("ApartFailed")
except BaseException as exc:
    print(type(exc).__name__)
print("json.decoder" in sys.modules)
"""


def test_run_apart_a_half_written_answer_is_apart_failed():
    result = subprocess.run([PYTHON, "-c", HALF_AN_ANSWER], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.stdout.split() == ["ApartFailed", "False"], result.stdout + result.stderr


def test_run_apart_a_killed_child_is_apart_failed_and_reaped():
    from supervisor.unix.apart import ApartFailed, run_apart

    with pytest.raises(ApartFailed):
        run_apart(_kill_myself)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no zombie left


def test_run_apart_tuples_come_back_as_lists_and_non_json_results_fail():
    from supervisor.unix.apart import ApartFailed, run_apart

    assert run_apart(_answer, (1, "a")) == [1, "a"]
    with pytest.raises(ApartFailed):
        run_apart(_answer, {1j})


# A supervisor's loop hears signals through set_wakeup_fd: a signal that the apart child gets
# (here it sends itself SIGHUP and SIGUSR1, which the loop handles) must not reach the parent's pipe.
FAKE_SIGNALS = """
import os, signal, sys
from supervisor.unix.apart import ApartFailed, run_apart

wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
    signal.signal(number, lambda *_: None)
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

def hup_myself(number):
    os.kill(os.getpid(), number)
    return "survived"

for number in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
    try:
        print(run_apart(hup_myself, int(number)))
    except ApartFailed as exc:
        print("ApartFailed")
try:
    heard = set(os.read(wake_r, 100))
except BlockingIOError:
    heard = set()
print(sorted(heard - {signal.SIGCHLD}))
try:
    os.waitpid(-1, os.WNOHANG)
    print("zombie")
except ChildProcessError:
    print("reaped")
"""


def test_a_signal_to_the_apart_child_is_not_one_to_the_supervisor_and_leaves_no_zombie():
    result = subprocess.run([PYTHON, "-c", FAKE_SIGNALS], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.split("\n")[:5] == ["ApartFailed", "ApartFailed", "ApartFailed", "[]", "reaped"], \
        result.stdout + result.stderr


@needs_root()
@pytest.mark.parametrize("toml", [
    'description = 1979-05-27T07:32:00Z',
    "x = " + "[" * 400 + "1" + "]" * 400,
    ".".join(["a"] * 5000) + " = 1",
    'description = "' + "x" * (2 << 20) + '"',
])
def test_service_files_the_child_cannot_answer_for_give_one_line(sandbox, toml):
    """Defended: a TOML date (no JSON for it), nesting, 5000-deep dotted keys, a 2 MiB file."""
    path = sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    path.write_text(path.read_text() + toml + "\n")
    result = sandbox.cli("start", "demo")
    one_line_error(result)
    assert result.returncode == 6, result
    assert not alive(sandbox.supervisor_pid())


# ---- 3. the raw inotify watcher, against the service's user -----------------------------------

def nobodys_watched_service(sandbox):
    confdir = sandbox.base / "nbconf"
    confdir.mkdir(mode=0o755)
    os.chown(confdir, NOBODY.pw_uid, NOBODY.pw_gid)
    conf = confdir / "app.conf"
    conf.write_text("a = 1\n")
    os.chown(conf, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", command=["/bin/sleep", "1000"], user="nobody", watch=[str(conf)],
                    start_seconds=0.1)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result
    return confdir, conf


def quiet_for(sandbox, seconds: float, spawned: int) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert spawns(sandbox) == spawned, "restarted without a content change"
        time.sleep(0.1)
    assert alive(sandbox.supervisor_pid())


def _flood(confdir: str) -> None:
    for _round in range(3):
        for index in range(20000):  # beyond fs.inotify.max_queued_events (16384): IN_Q_OVERFLOW
            path = os.path.join(confdir, f"f{index}")
            with open(path, "w"):
                pass
            os.unlink(path)
    os.utime(os.path.join(confdir, "app.conf"))


@needs_root()
def test_an_event_flood_and_queue_overflow_reload_nothing(sandbox):
    confdir, conf = nobodys_watched_service(sandbox)
    before = spawns(sandbox)
    as_nobody(_flood, str(confdir))
    quiet_for(sandbox, 2.0, before)
    assert sandbox.cli("status", "demo").returncode == 0
    as_nobody(Path.write_text, conf, "a = 2\n")  # a real change still restarts it
    poll_until(lambda: spawns(sandbox) == before + 1, timeout=10, what="the restart on a real edit")
    assert sandbox.cli("stop", "demo").returncode == 0


def _fifo_at(path: str) -> None:
    os.unlink(path)
    os.mkfifo(path)


def _dir_to_etc_link(confdir: str, name: str) -> None:
    os.rename(confdir, confdir + ".old")
    os.symlink("/etc", confdir)


@needs_root()
def test_a_fifo_at_the_watched_path_neither_hangs_nor_reloads(sandbox):
    confdir, conf = nobodys_watched_service(sandbox)
    before = spawns(sandbox)
    as_nobody(_fifo_at, str(conf))
    time.sleep(1.5)
    assert alive(sandbox.supervisor_pid())
    result = sandbox.cli("status", "demo")
    assert result.returncode == 0, result
    assert spawns(sandbox) == before, "a FIFO is unreadable, not new content"
    assert sandbox.cli("stop", "demo", timeout=20).returncode == 0


@needs_root()
def test_the_watched_file_swapped_for_a_link_to_etc_shadow_is_never_read_as_root(sandbox):
    """The watched file becomes /etc/shadow through nobody's symlink: root must not read it for
    nobody (an unreadable file, not a change), and the supervisor keeps running."""
    confdir = sandbox.base / "nbconf"
    confdir.mkdir(mode=0o755)
    os.chown(confdir, NOBODY.pw_uid, NOBODY.pw_gid)
    conf = confdir / "shadow"
    conf.write_text("a = 1\n")
    os.chown(conf, NOBODY.pw_uid, NOBODY.pw_gid)
    sandbox.service("demo", command=["/bin/sleep", "1000"], user="nobody", watch=[str(conf)], start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    before = spawns(sandbox)
    # nobody controls confdir, not its parent: it can only replace its content; so swap the
    # file for a link (the directory swap needs a parent nobody owns: below)
    as_nobody(lambda: (os.unlink(conf), os.symlink("/etc/shadow", conf)))
    time.sleep(1.5)
    assert alive(sandbox.supervisor_pid())
    assert spawns(sandbox) == before + 1 or spawns(sandbox) == before
    snapshots = [p for p in (sandbox.run / "svctl").rglob("*") if p.is_file()]
    shadow = Path("/etc/shadow").read_bytes()
    for path in snapshots:
        assert shadow not in path.read_bytes(), f"/etc/shadow copied into {path}"
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_a_watched_directory_nobody_owns_the_parent_of_becomes_a_link_to_etc(sandbox):
    parent = sandbox.base / "nbparent"
    parent.mkdir(mode=0o755)
    os.chown(parent, NOBODY.pw_uid, NOBODY.pw_gid)
    confdir = parent / "conf"
    as_nobody(os.mkdir, str(confdir))
    conf = confdir / "shadow"
    as_nobody(Path.write_text, conf, "a = 1\n")
    sandbox.service("demo", command=["/bin/sleep", "1000"], user="nobody", watch=[str(conf)], start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    as_nobody(_dir_to_etc_link, str(confdir), "shadow")
    time.sleep(1.5)
    supervisor = sandbox.supervisor_pid()
    assert alive(supervisor)
    shadow = Path("/etc/shadow").read_bytes()
    for path in (p for p in (sandbox.run / "svctl").rglob("*") if p.is_file()):
        assert shadow not in path.read_bytes(), f"/etc/shadow copied into {path}"
    result = sandbox.cli("status", "demo")
    one_line_error(result)
    # and back: the directory re-created, a real edit restarts the service
    before = spawns(sandbox)
    as_nobody(lambda: (os.unlink(str(confdir)), os.rename(str(confdir) + ".old", str(confdir))))
    as_nobody(Path.write_text, conf, "a = 3\n")
    poll_until(lambda: spawns(sandbox) > before, timeout=10, what="the restart after the directory came back")
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_a_deploy_symlink_swap_of_the_watched_directory_is_noticed(sandbox):
    """No attacker: /srv/app/current -> releases/v1, watch current/app.conf, then a deploy swaps
    the link (`ln -sfn releases/v2 current`, a rename over it). The watcher watches current's
    target (v1) and v1 (the same inode), never the directory holding the link: the swap makes no
    event it hears, and it stays deaf to every edit after."""
    app = sandbox.base / "app"
    for release in ("v1", "v2"):
        (app / "releases" / release).mkdir(parents=True)
        (app / "releases" / release / "app.conf").write_text(f"release = '{release}'\n")
    (app / "current").symlink_to("releases/v1")
    conf = app / "current" / "app.conf"
    sandbox.service("demo", command=["/bin/sleep", "1000"], watch=[str(conf)], start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    before = spawns(sandbox)
    (app / "next").symlink_to("releases/v2")
    os.rename(app / "next", app / "current")
    poll_until(lambda: spawns(sandbox) == before + 1, timeout=10, what="the restart on the deploy")
    assert sandbox.cli("stop", "demo").returncode == 0


def _exhaust_instances_then(ready_w: int, go_r: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    while True:
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            break
        fds.append(fd)
    os.write(ready_w, str(len(fds)).encode())
    os.read(go_r, 1)


@needs_root()
def test_nobody_exhausting_its_own_inotify_instances_does_not_blind_roots_watcher(sandbox):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
            os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)
            _exhaust_instances_then(w1, r2)
            code = 0
        finally:
            os._exit(code)
    try:
        assert int(os.read(r1, 32) or b"0") > 0
        confdir, conf = nobodys_watched_service(sandbox)
        supervisor = sandbox.supervisor_pid()
        assert any(os.readlink(f"/proc/{supervisor}/fd/{fd}") == "anon_inode:inotify"
                   for fd in os.listdir(f"/proc/{supervisor}/fd")), "root's supervisor has its own instance"
        before = spawns(sandbox)
        as_nobody(Path.write_text, conf, "a = 9\n")
        poll_until(lambda: spawns(sandbox) == before + 1, timeout=10, what="the restart on the edit")
    finally:
        os.write(w2, b"x")
        os.waitpid(pid, 0)
        for fd in (r1, w1, r2, w2):
            os.close(fd)
    assert sandbox.cli("stop", "demo").returncode == 0


# ---- 4. the hot verbs' os._exit -----------------------------------------------------------------

@needs_root()
def test_status_with_stdout_closed_is_not_a_traceback(sandbox):
    """`svctl status NAME >&-` (a cron job, a monitor with no stdout): sys.stdout is None."""
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    result = subprocess.run([PYTHON, "-m", "supervisor", *prefix, "status", "demo"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=30,
                            preexec_fn=lambda: os.close(1))
    one_line_error(result)
    assert result.returncode in (0, 4), result
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_status_to_a_full_device_is_one_line_and_not_running_is_not_claimed(sandbox):
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    assert sandbox.cli("start", "demo").returncode == 0
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    with open("/dev/full", "w") as full:
        result = subprocess.run([PYTHON, "-m", "supervisor", *prefix, "status", "demo"], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=30)
    one_line_error(result)
    assert result.returncode in (0, 4), "exit 1 means 'dead, PID file exists' to LSB callers"
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_large_json_status_through_a_pipe_and_head_loses_nothing_and_keeps_the_code(sandbox):
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1,
                    description="d" * 4000)
    assert sandbox.cli("start", "demo").returncode == 0
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    full = subprocess.run([PYTHON, "-m", "supervisor", *prefix, "status", "--json", "demo"],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert full.returncode == 0 and full.stdout.rstrip().endswith("}"), full
    import json

    json.loads(full.stdout)
    cut = subprocess.run(f"{PYTHON} -m supervisor {' '.join(prefix)} status --json demo | head -c 10; "
                         "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                         capture_output=True, text=True, cwd=REPO, timeout=30)
    assert "Traceback" not in cut.stderr and cut.returncode == 0, cut
    assert sandbox.cli("stop", "demo").returncode == 0


@needs_root()
def test_a_start_error_keeps_its_message_and_code_through_a_pipe(sandbox):
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    result = subprocess.run(f"{PYTHON} -m supervisor {' '.join(prefix)} start nosuch 2>&1 | cat; exit ${{PIPESTATUS[0]}}",
                            shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 6 and "nosuch" in result.stdout, result


# ---- 6. records instead of namedtuples -----------------------------------------------------------

def test_service_config_records_copy_pickle_and_compare_like_values(tmp_path):
    from supervisor import config

    (tmp_path / "demo.toml").write_text('command = ["/bin/sleep", "1000"]\nstop = "TERM/1/KILL/1"\n')
    loaded = config.load("demo", str(tmp_path))
    again = config.load("demo", str(tmp_path))
    assert loaded == again and hash(loaded) == hash(again)
    assert copy.copy(loaded) == loaded == copy.deepcopy(loaded)
    assert pickle.loads(pickle.dumps(loaded)) == loaded
    assert pickle.loads(pickle.dumps(loaded.stop)) == loaded.stop
    with pytest.raises(AttributeError):
        loaded.user = "root"


def test_redact_still_reaches_secrets_inside_records():
    """log.redact recursed into namedtuples (tuples); records are not tuples any more."""
    from supervisor.core.schedule import parse_schedule
    from supervisor.log import redact

    schedule = parse_schedule("TERM/1/KILL/1")
    assert redact(("TERM", "hunter22"), ("hunter22",)) == ["TERM", "***"]
    assert redact(schedule, ("hunter22",)) == schedule  # nothing secret in a schedule: unchanged


# ---- 7. the tcp:// parser without urllib ---------------------------------------------------------

def test_tcp_address_agrees_with_urlsplit_on_every_url_the_config_accepts():
    from urllib.parse import urlsplit

    from supervisor import config_values
    from supervisor.unix.probe import tcp_address

    class Refused(Exception):
        pass

    urls = ["tcp://localhost:80", "tcp://h:0080", "tcp://[::1]:9", "tcp://[::1]x:9", "tcp://[v1.x]:9",
            "tcp://h.:80", "tcp://H:1", "tcp://h:1?x:2", "tcp://[fe80::1%25eth0]:9", "tcp://h:1/a:2",
            "tcp://[::1]junk:9", "tcp://h:65535"]
    for url in urls:
        try:
            config_values.ready_url(url, Refused)
        except Refused:
            continue
        parts = urlsplit(url)
        assert tcp_address(url) == (parts.hostname.encode(), parts.port), url


@needs_root()
def test_junk_after_a_bracketed_address_is_refused_by_the_config(sandbox):
    """ready = "tcp://[::1]x:PORT" was accepted by the config (urlsplit reads [::1], PORT) while
    the probe's own parser raised in its thread: a listening service was never ready. The config
    now refuses it, in one line, and a well-formed [::1] URL is probed where urlsplit says."""
    port = free_port()
    sandbox.service("demo", command=[PYTHON, SERVICE, "--listen", str(port)], ready=f"tcp://[::1]x:{port}",
                    ready_timeout=5)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 6 and "nothing may follow the bracketed address" in result.stderr, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    sandbox.service("demo", command=[PYTHON, SERVICE, "--listen", str(port)], ready=f"tcp://[::1]:{port}",
                    ready_timeout=5)
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result
    assert sandbox.cli("stop", "demo").returncode == 0


# ---- 5. bin/svctl as pip installs it (non-editable), and through the init.d shim ------------------

@pytest.fixture(scope="module")
def installed_svctl(tmp_path_factory):
    """A non-editable `pip install` of this tree into a fresh venv: its bin/svctl (pip rewrote the shebang)."""
    base = tmp_path_factory.mktemp("pipvenv")
    base.chmod(0o755)
    venv = base / "venv"
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "venv", str(venv)], check=True, timeout=120)
    build = base / "src"
    import shutil

    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv*", ".git", ".cache", ".npm-prefix", ".run",
                                                               "node_modules", "__pycache__", "*.egg-info", "build"))
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(build)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"pip install of this tree failed: {result.stderr[-600:]}"
    return venv / "bin" / "svctl"


@needs_root()
def test_pip_installed_svctl_version_status_and_exit_codes(sandbox, installed_svctl):
    svctl = str(installed_svctl)
    assert Path(svctl).read_text().splitlines()[0].startswith("#!/"), "pip rewrites #!python"
    prefix = ["--config-dir", str(sandbox.etc), "--run-dir", str(sandbox.run / "svctl")]
    version = subprocess.run([svctl, "--version"], capture_output=True, text=True, timeout=30, cwd="/")
    assert version.returncode == 0 and version.stdout.startswith("svctl "), version
    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)

    def run(*args):
        return subprocess.run([svctl, *prefix, *args], capture_output=True, text=True, timeout=60, cwd="/")

    assert run("status", "demo").returncode == 3
    assert run("start", "demo").returncode == 0
    status = run("status", "demo")
    assert status.returncode == 0 and "running" in status.stdout, status
    assert run("start", "nosuch").returncode == 6
    assert run("stop", "demo").returncode == 0
    assert run("status", "demo").returncode == 3


@needs_root()
def test_the_initd_shim_passes_the_installed_svctls_exit_codes(sandbox, installed_svctl, tmp_path):
    if not os.path.exists("/lib/lsb/init-functions"):
        pytest.skip("no /lib/lsb/init-functions")
    from supervisor import boot, config

    sandbox.service("demo", command=["/bin/sleep", "1000"], start_seconds=0.1)
    shim = boot.render_initd(config.load("demo", str(sandbox.etc)), str(installed_svctl), str(sandbox.etc),
                             str(sandbox.run / "svctl"))
    script = tmp_path / "demo"
    script.write_text(shim.text)
    script.chmod(0o755)

    def shim_says(verb):
        return subprocess.run([str(script), verb], capture_output=True, text=True, timeout=60)

    assert shim_says("status").returncode == 3
    started = shim_says("start")
    assert started.returncode == 0 and "started" in started.stdout, started
    assert shim_says("status").returncode == 0
    assert shim_says("stop").returncode == 0
    assert shim_says("status").returncode == 3
