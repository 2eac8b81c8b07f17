"""JupyterHub end to end, on a loopback with no IPv4 at all (issue 5, "What it must show").

init -> check passes -> start returns when https://[::1]:PORT/hub/health answers 200 -> SIGKILL the hub
-> healthy again with no orphaned proxy -> a config edit visible through the hub's API is applied ->
a broken edit is rejected while the hub stays up -> stop leaves no hub and no proxy -> status 3.

Everything runs in a network namespace this test creates (``ip netns add``) with 127.0.0.1 removed
from lo, so every process it starts is listed by ``ip netns pids`` and killed by PID in teardown.
Timings go to tests/artifacts/jupyterhub-e2e.json for the closing note.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor.jupyterhub.scaffold import find_jupyterhub, find_proxy

REPO = Path(__file__).resolve().parents[2]
PORT, HUB_PORT, API_PORT = 19260, 19261, 19262
HEALTH = f"https://[::1]:{PORT}/hub/health"
TOKEN = "e2e-token-0123456789abcdef0123456789"
ARTIFACTS = REPO / "tests" / "artifacts"

pytestmark = pytest.mark.slow

# Runs inside the namespace: GET URL (self-signed certificate), print the status code or 0.
GET = """
import ssl, sys, urllib.request, urllib.error
context = ssl._create_unverified_context()
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "token " + sys.argv[2]} if len(sys.argv) > 2 else {})
try:
    print(urllib.request.urlopen(request, context=context, timeout=5).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print(0)
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace)"
    for tool in ("ip",):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if find_jupyterhub() is None:
        return "jupyterhub is not installed (make jupyterhub-deps)"
    if find_proxy((str(REPO), os.getcwd())) is None:
        return "configurable-http-proxy is not installed (make jupyterhub-deps)"
    if shutil.which("node") is None:
        return "node is not installed"
    return None


class Namespace:
    """A network namespace whose loopback has ::1 only."""

    def __init__(self, name: str) -> None:
        self.name = name
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.run("ip", "link", "set", "lo", "up", check=True)
        self.run("ip", "addr", "del", "127.0.0.1/8", "dev", "lo", check=True)

    def run(self, *argv: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def pids(self) -> list[int]:
        result = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(word) for word in result.stdout.split()]

    def get(self, url: str, token: str | None = None) -> int:
        result = self.run(sys.executable, "-c", GET, url, *([token] if token else []), timeout=30)
        return int(result.stdout.strip() or 0)

    def destroy(self) -> None:
        for pid in self.pids():  # only processes this test started live in its namespace
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def processes(pids: list[int], word: str) -> list[int]:
    found = []
    for pid in pids:
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if any(word in os.path.basename(part) for part in argv[:3]):
            found.append(pid)
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def netns():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    namespace = Namespace(f"svctl-e2e-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


def test_jupyterhub_lifecycle_on_pure_ipv6(netns, tmp_path):
    prefix = tmp_path / "root"
    svctl = [sys.executable, "-m", "supervisor", "--config-dir", str(prefix / "etc/svctl"),
             "--run-dir", str(prefix / "run/svctl")]
    config_path = prefix / "etc/jupyterhub/jupyterhub_config.py"
    timings: dict[str, float] = {}

    init = netns.run(sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                     "--ip", "::1", "--port", str(PORT), "--hub-port", str(HUB_PORT), "--api-port", str(API_PORT),
                     "--auth", "dummy", "--users", "alice")
    assert init.returncode == 0, init.stderr

    check = netns.run(*svctl, "check", "jupyterhub", "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], check.stdout
    assert not [f for f in report["findings"] if f["severity"] != "info"], check.stdout

    started = time.monotonic()
    start = netns.run(*svctl, "start", "jupyterhub")
    timings["start_to_healthy"] = time.monotonic() - started
    assert start.returncode == 0, start.stdout + start.stderr
    assert netns.get(HEALTH) == 200

    hubs, proxies = processes(netns.pids(), "jupyterhub"), processes(netns.pids(), "configurable-http-proxy")
    assert len(hubs) == 1 and len(proxies) == 1
    proxy_pid_file = prefix / "srv/jupyterhub/jupyterhub-proxy.pid"
    assert int(proxy_pid_file.read_text()) == proxies[0]

    # Crash: the hub dies without cleanup, its proxy is orphaned; svctl clears it and restarts the hub.
    killed = time.monotonic()
    os.kill(hubs[0], signal.SIGKILL)
    wait_for(lambda: processes(netns.pids(), "jupyterhub") not in ([], hubs) and netns.get(HEALTH) == 200,
             90, "a new healthy hub after SIGKILL")
    timings["kill_to_healthy"] = time.monotonic() - killed
    new_hubs = processes(netns.pids(), "jupyterhub")
    new_proxies = processes(netns.pids(), "configurable-http-proxy")
    assert len(new_hubs) == 1 and new_hubs != hubs
    assert len(new_proxies) == 1 and new_proxies != proxies, "the orphaned proxy is still there"

    # A good edit: a service token appears, visible through the hub's API once applied.
    info = f"https://[::1]:{PORT}/hub/api/info"
    assert netns.get(info, TOKEN) in (401, 403)
    edited = time.monotonic()
    with open(config_path, "a") as handle:
        handle.write(f"\nc.JupyterHub.services = [{{'name': 'e2e', 'api_token': {TOKEN!r}}}]\n"
                     "c.JupyterHub.load_roles = [{'name': 'e2e', 'scopes': ['read:hub'], 'services': ['e2e']}]\n")
    wait_for(lambda: netns.get(info, TOKEN) == 200, 120, "the edited config to be applied", interval=0.5)
    timings["edit_to_applied"] = time.monotonic() - edited
    applied_hubs = processes(netns.pids(), "jupyterhub")

    # A broken edit is rejected: the running hub is untouched and stays healthy.
    good = config_path.read_text()
    config_path.write_text(good + "\nthis is not python (\n")
    time.sleep(20)  # debounce + a --show-config run (~5 s) + margin
    assert processes(netns.pids(), "jupyterhub") == applied_hubs
    assert netns.get(HEALTH) == 200 and netns.get(info, TOKEN) == 200
    rejected = netns.run(*svctl, "check", "jupyterhub")
    assert rejected.returncode == 6 and "syntax" in rejected.stdout.lower() + rejected.stderr.lower()

    stop = netns.run(*svctl, "stop", "jupyterhub")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    left = netns.pids()
    assert processes(left, "jupyterhub") == [] and processes(left, "configurable-http-proxy") == []
    assert netns.run(*svctl, "status", "jupyterhub").returncode == 3

    timings["bare_hub_start"] = _bare_start(netns, prefix)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jupyterhub-e2e.json").write_text(json.dumps(timings, indent=2))
    print("timings:", {key: round(value, 2) for key, value in timings.items()})
    assert statistics.fmean(timings.values()) > 0


def _bare_start(netns: Namespace, prefix: Path) -> float:
    """The hub's own launch -> first 200, on the same (good) config, for comparison."""
    config = prefix / "etc/jupyterhub/jupyterhub_config.py"
    text = config.read_text()
    config.write_text(text[: text.rindex("\nthis is not python (")])
    environment = {**os.environ, "PATH": f"{os.path.dirname(find_jupyterhub())}:{os.environ.get('PATH', '')}"}
    started = time.monotonic()
    hub = subprocess.Popen(["ip", "netns", "exec", netns.name, find_jupyterhub(), "-f", str(config)],
                           cwd=prefix / "srv/jupyterhub", env=environment, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: netns.get(HEALTH) == 200, 90, "the bare hub", interval=0.1)
        return time.monotonic() - started
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=60)
