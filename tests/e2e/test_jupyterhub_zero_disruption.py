"""Zero-disruption reload (issue 5 item 5): with ``svctl init jupyterhub --proxy external`` the proxy
is its own service, so a config reload restarts only the hub and a running user server answers
every request made meanwhile.

In an IPv4-less network namespace: init (dummy authenticator, external proxy) -> the init.d shims
of `svctl install` and one real `service jupyterhub start`, which starts jupyterhub-proxy first (the
hub's `requires`) -> start alice's server through the hub API (a service token
appended to the config) -> a loop inside the namespace GETs https://[::1]:PORT/user/alice/api
through the proxy while an edit of the watched config makes svctl restart the hub (reload_applied in
the hub's events file) -> 0 failed requests, a new hub PID, the same proxy and user-server PIDs ->
alice's server stopped through the API, `svctl stop jupyterhub-proxy` stops the hub first, then the
proxy, and nothing is left in the namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ARTIFACTS, Namespace, events, missing, processes, svctl, wait_for

from supervisor.config import load
from supervisor.jupyterhub.doctor import ERROR, WARNING, Facts, HostFacts, diagnose
from supervisor.jupyterhub.preset import hub_files
from supervisor.jupyterhub.pyconfig import read_config

PORT, HUB_PORT, API_PORT = 19410, 19411, 19412
BASE = f"https://[::1]:{PORT}"
HEALTH = f"{BASE}/hub/health"
TOKEN = "zero-disruption-0123456789abcdef0123"
USER = "alice"

# Inside the namespace: GET URL with TOKEN until STOPFILE exists; print the counts as JSON.
HAMMER = """
import json, os, ssl, sys, time, urllib.request, urllib.error
url, token, stop = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl._create_unverified_context()
ok, failures = 0, []
while not os.path.exists(stop):
    request = urllib.request.Request(url, headers={"Authorization": "token " + token})
    try:
        status = urllib.request.urlopen(request, context=context, timeout=5).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:
        status = repr(exc)
    if status == 200:
        ok += 1
    else:
        failures.append([time.time(), str(status)])
    time.sleep(0.02)
print(json.dumps({"ok": ok, "failures": failures}))
"""


@pytest.fixture
def netns():
    reason = missing()
    if reason:
        pytest.skip(reason)
    namespace = Namespace(f"svctl-zd-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


@pytest.mark.slow
def test_reload_keeps_user_servers_answering(netns, tmp_path):
    prefix = tmp_path / "root"
    cli = svctl(prefix)
    config_path = prefix / "etc/jupyterhub/jupyterhub_config.py"

    init = netns.run(sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                     "--ip", "::1", "--port", str(PORT), "--hub-port", str(HUB_PORT), "--api-port", str(API_PORT),
                     "--auth", "dummy", "--users", USER, "--proxy", "external")
    assert init.returncode == 0, init.stdout + init.stderr
    assert "start jupyterhub (starts jupyterhub-proxy first)" in init.stdout
    for name in ("jupyterhub.toml", "jupyterhub-proxy.toml"):  # both hold the proxy's token
        assert os.stat(prefix / "etc/svctl" / name).st_mode & 0o077 == 0
    # A service token for the test: admin of alice's server, and allowed to use it.
    service = {"name": "zero-disruption", "api_token": TOKEN}
    role = {"name": "zero-disruption", "services": ["zero-disruption"],
            "scopes": ["admin:users", "admin:servers", "access:servers"]}
    with open(config_path, "a") as handle:
        handle.write(f"\nc.JupyterHub.services = [{service!r}]\nc.JupyterHub.load_roles = [{role!r}]\n")

    # The init.d shims, as `svctl install` writes them, run by the real service(8) in a private
    # mount namespace (a tmpfs over /etc/init.d): what an operator's `service jupyterhub start` does.
    boot_root = tmp_path / "boot"
    svctl_command = str(Path(sys.executable).with_name("svctl"))  # the entry point the shim calls
    for name in ("jupyterhub-proxy", "jupyterhub"):
        installed = subprocess.run([svctl_command, *cli[3:], "install", name, "--root", str(boot_root), "--initd",
                                    "--no-systemd"], capture_output=True, text=True, check=False)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    shims = boot_root / "etc/init.d"
    started = time.monotonic()
    hub_start = netns.run("unshare", "-m", "sh", "-c", "mount -t tmpfs svctl-initd /etc/init.d && "
                          f"cp {shims}/jupyterhub {shims}/jupyterhub-proxy /etc/init.d/ && "
                          "exec service jupyterhub start")  # requires = ["jupyterhub-proxy"]: starts both
    assert hub_start.returncode == 0, hub_start.stdout + hub_start.stderr
    assert hub_start.stdout.splitlines() == ["jupyterhub: starting jupyterhub-proxy first (required)",
                                             "jupyterhub-proxy: started", "jupyterhub: started"], hub_start.stdout
    start_to_healthy = time.monotonic() - started
    assert netns.get(HEALTH) == 200

    spawn = netns.request("POST", f"{BASE}/hub/api/users/{USER}/server", TOKEN)
    assert spawn["status"] in (201, 202), spawn
    user_api = f"{BASE}/user/{USER}/api"
    wait_for(lambda: netns.get(user_api, TOKEN) == 200, 60, f"{USER}'s server through the proxy", interval=0.5)

    pids = netns.pids()
    hubs = processes(pids, "jupyterhub", exact=True)
    proxies = processes(pids, "configurable-http-proxy")
    servers = processes(pids, "jupyterhub-singleuser")
    assert len(hubs) == 1 and len(proxies) == 1 and len(servers) == 1, (hubs, proxies, servers)

    stop_file = tmp_path / "stop-hammer"
    hammer = subprocess.Popen(
        netns.argv(sys.executable, "-c", HAMMER, user_api, TOKEN, str(stop_file)),
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        applied_before = len([e for e in events(prefix, "jupyterhub") if e.get("event") == "reload_applied"])
        edited = time.monotonic()
        with open(config_path, "a") as handle:
            handle.write("\nc.JupyterHub.template_vars = {'reloaded': 'yes'}\n")
        wait_for(lambda: len([e for e in events(prefix, "jupyterhub")
                              if e.get("event") == "reload_applied"]) > applied_before,
                 75, "reload_applied in the hub's events file", interval=0.25)
        wait_for(lambda: netns.get(HEALTH) == 200, 30, "the new hub to be healthy")
        edit_to_applied = time.monotonic() - edited
        time.sleep(1)  # a few more requests against the settled hub
    finally:
        stop_file.touch()
        output, _ = hammer.communicate(timeout=30)
    counts = json.loads(output)
    assert counts["ok"] > 20, counts
    assert counts["failures"] == [], f"{len(counts['failures'])} failed requests during the reload: {counts}"

    pids = netns.pids()
    new_hubs = processes(pids, "jupyterhub", exact=True)
    assert len(new_hubs) == 1 and new_hubs != hubs, "the hub was not restarted"
    assert processes(pids, "configurable-http-proxy") == proxies, "the proxy was restarted"
    assert processes(pids, "jupyterhub-singleuser") == servers, "the user server was restarted"
    assert netns.get(user_api, TOKEN) == 200

    # The hub leaves user servers running when it exits (cleanup_servers = False): stop alice's first.
    stopped = netns.request("DELETE", f"{BASE}/hub/api/users/{USER}/server", TOKEN)
    assert stopped["status"] in (202, 204), stopped
    wait_for(lambda: not processes(netns.pids(), "jupyterhub-singleuser"), 30, f"{USER}'s server to stop")
    stop = netns.run(*cli, "stop", "jupyterhub-proxy")  # the hub requires it: the hub stops first
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert stop.stdout.splitlines() == ["jupyterhub-proxy: stopping jupyterhub first (requires jupyterhub-proxy)",
                                        "jupyterhub: stopped", "jupyterhub-proxy: stopped"], stop.stdout
    left = netns.pids()
    assert processes(left, "jupyterhub") == [] and processes(left, "configurable-http-proxy") == [], left
    for service in ("jupyterhub", "jupyterhub-proxy"):
        assert netns.run(*cli, "status", service).returncode == 3

    timings = {"start_to_healthy": start_to_healthy, "reload_edit_to_applied": edit_to_applied,
               "requests_during_reload": counts["ok"], "failed_requests": len(counts["failures"])}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jupyterhub-zero-disruption.json").write_text(json.dumps(timings, indent=2))
    print("zero-disruption:", {key: round(value, 2) for key, value in timings.items()})



def _init(prefix, *extra):
    return subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                           "--ip", "::1", "--port", str(PORT), "--hub-port", str(HUB_PORT),
                           "--api-port", str(API_PORT), "--auth", "dummy", "--proxy", "external", *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def test_init_external_proxy_files(tmp_path):
    """Fast (no hub started): what --proxy external writes, and that it stays consistent."""
    pytest.importorskip("cryptography", reason="init writes the certificate with the cryptography package")
    prefix = tmp_path / "root"
    # No hub runs here, so stand-ins do (the suite against Debian 12's libraries has no jupyterhub):
    # init must still be given programs it would accept.
    programs = tmp_path / "programs"
    programs.mkdir()
    for name in ("jupyterhub", "configurable-http-proxy"):
        (programs / name).write_text("#!/bin/sh\nexit 0\n")
        (programs / name).chmod(0o755)
    stand_ins = ("--jupyterhub", str(programs / "jupyterhub"), "--proxy-command", str(programs / "configurable-http-proxy"))
    result = _init(prefix, *stand_ins)
    assert result.returncode == 0, result.stderr
    etc, state = prefix / "etc/svctl", prefix / "srv/jupyterhub"
    token = (state / "proxy-auth-token").read_text().strip()
    assert len(token) == 64
    for path in (state / "proxy-auth-token", etc / "jupyterhub.toml", etc / "jupyterhub-proxy.toml"):
        assert os.stat(path).st_mode & 0o777 == 0o600, path

    hub, proxy = load("jupyterhub", str(etc)), load("jupyterhub-proxy", str(etc))
    assert hub.env["CONFIGPROXY_AUTH_TOKEN"] == proxy.env["CONFIGPROXY_AUTH_TOKEN"] == token
    assert hub.preset == "jupyterhub" and proxy.preset is None
    assert hub.requires == ("jupyterhub-proxy",) and proxy.requires == ()  # `svctl start jupyterhub` starts both
    assert hub.health == hub.ready == f"https://[::1]:{PORT}/hub/health" and proxy.health is None
    assert proxy.ready == f"tcp://[::1]:{API_PORT}" and proxy.pidfile == str(prefix / "run/jupyterhub-proxy.pid")
    assert os.path.basename(proxy.command[0]) == "configurable-http-proxy"
    command = " ".join(proxy.command)
    for part in (f"--ip ::1 --port {PORT}", f"--api-ip ::1 --api-port {API_PORT}",
                 f"--default-target http://[::1]:{HUB_PORT}", f"--error-target http://[::1]:{HUB_PORT}/hub/error",
                 f"--ssl-key {state}/ssl/jupyterhub.key", f"--ssl-cert {state}/ssl/jupyterhub.crt"):
        assert part in command

    config = read_config(str(prefix / "etc/jupyterhub/jupyterhub_config.py"))
    assert config.get("ConfigurableHTTPProxy.should_start") is False
    assert config.get("JupyterHub.cleanup_servers") is False
    assert hub_files(hub, config).proxy_pid_file is None  # the preset never touches an external proxy
    facts = Facts(HostFacts(False, False, False), {f"{state}/ssl/jupyterhub.crt": 0o644,
                                                   f"{state}/ssl/jupyterhub.key": 0o600,
                                                   f"{state}/jupyterhub_cookie_secret": 0o600},
                  None, (), "/n", "/p", True)
    assert [f for f in diagnose(hub, config, facts) if f.severity in (ERROR, WARNING)] == []

    # A second run keeps everything, token included; so does --force, which rewrites both service
    # files: a new token would lock a running proxy out of the next hub.
    again = _init(prefix, *stand_ins)
    assert again.returncode == 0 and "wrote" not in again.stdout
    assert (state / "proxy-auth-token").read_text().strip() == token
    forced = _init(prefix, "--force", *stand_ins)
    assert forced.returncode == 0
    assert (state / "proxy-auth-token").read_text().strip() == token
    assert load("jupyterhub", str(etc)).env["CONFIGPROXY_AUTH_TOKEN"] == token
    assert load("jupyterhub-proxy", str(etc)).env["CONFIGPROXY_AUTH_TOKEN"] == token
