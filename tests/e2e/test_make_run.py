"""`make run` says what it does: the URL, the login, the logs, how to stop, when it is ready, and a last
line once Ctrl-C has stopped it, leaving nothing running (issue 11, item 11).

Run as an operator would (its own process group, Ctrl-C = SIGINT to that group), in an IPv4-less
network namespace so that its default ports (9443, 9081, 9001) are free, with RUN_PREFIX in a
scratch directory instead of the checkout's .run/.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import Namespace, missing, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def netns():
    reason = missing() or (None if shutil.which("make") else "needs make")
    if reason:
        pytest.skip(reason)
    namespace = Namespace(f"svctl-mr-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


@pytest.mark.parametrize("hangup", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_make_run_prints_the_way_in_and_the_way_out(netns, hangup):
    prefix = Path(tempfile.mkdtemp(prefix="svctl-makerun-", dir="/var/tmp"))
    output = prefix.parent / (prefix.name + ".out")
    try:
        with open(output, "w") as sink:
            make = subprocess.Popen(netns.argv("make", "-C", str(REPO), "--no-print-directory", "run",
                                               f"RUN_PREFIX={prefix}"),
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: "JupyterHub is ready" in output.read_text(), 90, "make run's ready line", interval=0.5)
            assert netns.get("https://[::1]:9443/hub/health") == 200
            if hangup == signal.SIGINT:  # a second make run in another terminal: refused, the first lives on
                second = netns.run("make", "-C", str(REPO), "--no-print-directory", "run", f"RUN_PREFIX={prefix}",
                                   timeout=120)
                assert second.returncode != 0 and "already runs" in second.stderr, second.stdout + second.stderr
                assert netns.get("https://[::1]:9443/hub/health") == 200
            os.killpg(make.pid, hangup)  # Ctrl-C in make run's terminal, or the terminal closed
            code = make.wait(60)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
        text = output.read_text()
        assert code in (0, -hangup), text  # make itself also got the signal
        if hangup == signal.SIGHUP:
            assert "JupyterHub stopped" in text, text  # svctl takes HUP as reload: make run passes TERM
            assert netns.pids() == [] or wait_for(lambda: netns.pids() == [], 10, "nothing left")
            return
        for line in ("JupyterHub: https://[::1]:9443/", "login: ", f"logs: {prefix}/var/log/jupyterhub.log",
                     "status from another shell:", "Ctrl-C stops the hub", "JupyterHub is ready: open https://[::1]:9443/",
                     "JupyterHub stopped (svctl run exited 0)"):
            assert line in text, text
        assert text.rstrip().endswith("JupyterHub stopped (svctl run exited 0)"), text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and netns.pids():
            time.sleep(0.2)
        assert netns.pids() == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in netns.pids()]
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
        output.unlink(missing_ok=True)
