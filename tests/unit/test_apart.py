"""unix/apart.run_apart: the work happens in a child, whose imports stay there."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.unix import apart
from supervisor.unix.apart import ApartFailed, run_apart

REPO = Path(__file__).resolve().parents[2]


def answer(value):
    return {"pid": os.getpid(), "value": value}


def test_the_result_comes_back_from_another_process():
    result = run_apart(answer, [1, "two", None])
    assert result["value"] == [1, "two", None] and result["pid"] != os.getpid()


def test_a_passed_exception_is_raised_again_others_are_apart_failed():
    def config_error():
        raise ConfigError("/etc/svctl/x.toml: not valid TOML: boom")

    def other():
        raise KeyError("k")

    with pytest.raises(ConfigError, match="not valid TOML: boom"):
        run_apart(config_error, passes=(ConfigError,))
    with pytest.raises(ApartFailed, match="KeyError"):
        run_apart(other, passes=(ConfigError,))
    with pytest.raises(ApartFailed):
        run_apart(lambda: object())  # not JSON


def test_a_child_that_dies_or_hangs_is_a_failure_and_is_reaped(monkeypatch):
    with pytest.raises(ApartFailed):
        run_apart(lambda: os.kill(os.getpid(), signal.SIGKILL))
    monkeypatch.setattr(apart, "TIMEOUT", 0.3)
    import time

    with pytest.raises(ApartFailed, match="took more than"):
        run_apart(time.sleep, 30)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # nothing of ours left to reap


def test_a_signal_to_the_child_never_reaches_the_parents_wakeup_fd():
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    os.set_blocking(read_end, False)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    old_fd = signal.set_wakeup_fd(write_end)
    try:
        with pytest.raises(ApartFailed):  # SIG_DFL in the child: SIGUSR1 kills it
            run_apart(lambda: os.kill(os.getpid(), signal.SIGUSR1))
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, previous)
        os.close(read_end)
        os.close(write_end)


def test_the_parse_leaves_tomllib_to_the_child(tmp_path):
    code = ("import sys; from supervisor import config; config.PARSE_APART = True;"
            "data = config.parse_toml('x.toml', b'command = [\"/bin/true\"]\\nstop = \"TERM/1\"');"
            "assert data == {'command': ['/bin/true'], 'stop': 'TERM/1'}, data;"
            "print('tomllib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
