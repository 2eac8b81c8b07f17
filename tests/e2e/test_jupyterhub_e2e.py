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
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ARTIFACTS, Namespace, missing, processes, wait_for

from supervisor.jupyterhub.scaffold import find_jupyterhub

PORT, HUB_PORT, API_PORT = 19260, 19261, 19262
HEALTH = f"https://[::1]:{PORT}/hub/health"
TOKEN = "e2e-token-0123456789abcdef0123456789"

pytestmark = pytest.mark.slow


@pytest.fixture
def netns():
    reason = missing()
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
