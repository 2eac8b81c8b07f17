"""The jupyterhub preset's start hook on real processes: orphaned proxies die, everything else lives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from supervisor.config import from_mapping
from supervisor.jupyterhub.preset import before_start, cleanup_before_start

# A stand-in for configurable-http-proxy: the word is in its command line, like the real one's.
FAKE_PROXY = "import signal, sys, time\n{ignore}\nwhile True: time.sleep(1)\n"
LAUNCHER = ("import subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[1:], start_new_session=True, stdin=subprocess.DEVNULL,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint(p.pid)\n")


def orphan(*argv: str) -> int:
    """Start ARGV in its own session, reparented away from us (like a proxy whose hub died)."""
    output = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True,
                            check=True, timeout=30).stdout
    return int(output.strip())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_cmdline(pid: int, word: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if word in " ".join(psutil.Process(pid).cmdline()):
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never showed {word!r}")


def wait_for_ignored_term(pid: int) -> None:
    """Until the child has installed SIG_IGN for SIGTERM (else the test races its start-up)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as status:
            ignored = next(line for line in status if line.startswith("SigIgn:")).split()[1]
        if int(ignored, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never ignored SIGTERM")


@pytest.fixture
def started():
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_service(tmp_path, hub_config: str):
    config_file = tmp_path / "jupyterhub_config.py"
    config_file.write_text(hub_config)
    return from_mapping("jupyterhub", str(tmp_path / "jupyterhub.toml"), {
        "command": ["/bin/true", "-f", str(config_file)], "working_directory": str(tmp_path),
        "preset": "jupyterhub"})


def fake_proxy(started, ignore_term: bool = False) -> int:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)" if ignore_term else ""
    pid = orphan(sys.executable, "-c", FAKE_PROXY.format(ignore=ignore), "configurable-http-proxy", "--ip", "::1")
    started.append(pid)
    wait_for_cmdline(pid, "configurable-http-proxy")
    if ignore_term:
        wait_for_ignored_term(pid)
    return pid


class TestCleanupBeforeStart:
    def test_orphaned_proxy_named_by_absolute_pid_file_is_stopped(self, tmp_path, started):
        """The proxy goes, and so do the stale proxy and hub pid files."""
        pid = fake_proxy(started)
        proxy_file, hub_file = tmp_path / "state/proxy.pid", tmp_path / "state/jupyterhub.pid"
        proxy_file.parent.mkdir()
        proxy_file.write_text(f"{pid}\n")
        hub_file.write_text("999999\n")
        config = make_service(tmp_path, f"c.ConfigurableHTTPProxy.pid_file = {str(proxy_file)!r}\n"
                                        f"c.JupyterHub.pid_file = {str(hub_file)!r}\n")
        lines = cleanup_before_start(config)
        assert not alive(pid)
        assert not proxy_file.exists() and not hub_file.exists()
        assert any(f"stopped orphaned configurable-http-proxy pid {pid} (SIGTERM)" in line for line in lines)

    def test_default_relative_pid_file_in_working_directory(self, tmp_path, started):
        pid = fake_proxy(started)
        (tmp_path / "jupyterhub-proxy.pid").write_text(str(pid))
        cleanup_before_start(make_service(tmp_path, "c = get_config()\n"))
        assert not alive(pid) and not (tmp_path / "jupyterhub-proxy.pid").exists()

    def test_proxy_ignoring_sigterm_gets_sigkill(self, tmp_path, started):
        pid = fake_proxy(started, ignore_term=True)
        (tmp_path / "jupyterhub-proxy.pid").write_text(str(pid))
        started_at = time.monotonic()
        lines = cleanup_before_start(make_service(tmp_path, ""), term_timeout=0.5)
        assert not alive(pid) and any("(SIGKILL)" in line for line in lines)
        assert time.monotonic() - started_at < 5

    def test_unrelated_process_named_in_pid_file_is_not_killed(self, tmp_path, started):
        """PID reuse: the number now belongs to something else; only the stale file goes."""
        pid = orphan("sleep", "60")
        started.append(pid)
        (tmp_path / "jupyterhub-proxy.pid").write_text(str(pid))
        lines = cleanup_before_start(make_service(tmp_path, ""))
        time.sleep(0.2)
        assert alive(pid)
        assert not (tmp_path / "jupyterhub-proxy.pid").exists()
        assert any("not an orphaned proxy" in line for line in lines)

    def test_external_proxy_is_never_touched(self, tmp_path, started):
        """With should_start = False the proxy is its own service (zero-disruption mode)."""
        pid = fake_proxy(started)
        (tmp_path / "jupyterhub-proxy.pid").write_text(str(pid))
        lines = cleanup_before_start(make_service(tmp_path, "c.ConfigurableHTTPProxy.should_start = False\n"))
        time.sleep(0.2)
        assert alive(pid) and lines == []

    def test_garbage_and_dead_pid_files_are_removed(self, tmp_path):
        (tmp_path / "jupyterhub-proxy.pid").write_text("not a pid")
        lines = cleanup_before_start(make_service(tmp_path, ""))
        assert not (tmp_path / "jupyterhub-proxy.pid").exists() and "unreadable" in lines[0]
        (tmp_path / "jupyterhub-proxy.pid").write_text("999999")
        lines = cleanup_before_start(make_service(tmp_path, ""))
        assert not (tmp_path / "jupyterhub-proxy.pid").exists() and "is gone" in lines[0]

    def test_nothing_to_do_says_nothing(self, tmp_path):
        assert cleanup_before_start(make_service(tmp_path, "c = get_config()\n")) == []


LISTENER = ("import socket, time\ns = socket.socket(socket.AF_INET6)\ns.bind(('::1', 0))\ns.listen()\n"
            "print(s.getsockname()[1], flush=True)\ntime.sleep(600)\n")


class TestPortsHeldByAnotherHub:
    """The seed's migration: its own hub (started by its init.d script) still holds the hub's port."""

    @pytest.fixture
    def listener(self, tmp_path, request):
        """A process listening on [::1]:PORT; named like a hub (`python .../jupyterhub`) or not."""
        script = tmp_path / ("jupyterhub" if request.param == "hub" else "something-else")
        script.write_text(LISTENER)
        process = subprocess.Popen([sys.executable, str(script), "-f", "x"], stdout=subprocess.PIPE, text=True)
        try:
            yield process.pid, int(process.stdout.readline())
        finally:
            process.kill()
            process.wait()

    @pytest.mark.parametrize("listener", ["hub"], indirect=True)
    def test_another_hub_on_the_hub_port_refuses_the_start_naming_it(self, tmp_path, listener):
        pid, port = listener
        lines, refusal = before_start(make_service(tmp_path, f"c.JupyterHub.hub_bind_url = 'http://[::1]:{port}'\n"))
        if os.geteuid() != 0 and refusal is None:
            pytest.skip("needs root to see which process holds a port")
        assert refusal and f"port {port}" in refusal and f"pid {pid}" in refusal and "another JupyterHub" in refusal

    @pytest.mark.parametrize("listener", ["hub"], indirect=True)
    def test_another_address_does_not_conflict(self, tmp_path, listener):
        _, port = listener  # it listens on ::1; ours would bind 2001:db8::1
        assert before_start(make_service(tmp_path, f"c.JupyterHub.hub_bind_url = 'http://[2001:db8::1]:{port}'\n"))[1] is None

    @pytest.mark.parametrize("listener", ["other"], indirect=True)
    def test_a_holder_that_is_no_hub_is_left_to_the_hubs_own_bind(self, tmp_path, listener):
        """A proxy still shutting down after a reload, or anyone's socket: never a reason to refuse
        (a user could otherwise keep a root hub down by listening on its port)."""
        _, port = listener
        assert before_start(make_service(tmp_path, f"c.JupyterHub.hub_bind_url = 'http://[::1]:{port}'\n"))[1] is None

    def test_no_literal_tcp_hub_url_is_not_judged(self, tmp_path):
        for text in ("", "c.JupyterHub.hub_bind_url = 'http+unix://%2Fsrv%2Fjh.sock'\n",
                     "c.JupyterHub.hub_bind_url = 'http://[::1]:80801'\n", "c.JupyterHub.hub_bind_url = 'http://[zz]:x'\n"):
            assert before_start(make_service(tmp_path, text)) == ([], None), text
