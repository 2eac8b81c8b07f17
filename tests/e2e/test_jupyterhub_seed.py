"""The seed, end to end, as a sysadmin does it on a host with no IPv4 (issue 11, "What it must show").

1. The README's recipe: JupyterHub and notebook in a venv built with Debian's python3 (so the users'
   servers can execute it), configurable-http-proxy installed into it with npm. The venv is not on
   PATH: `svctl init jupyterhub --jupyterhub VENV/bin/jupyterhub` finds the hub, and the proxy
   beside it.
2. In an IPv4-less network namespace and a private mount namespace (seed_scenario.py): a real system
   account with a password; `svctl init` writes the real paths and the boot files (update-rc.d);
   `service jupyterhub start`; headless Chromium logs in through PAM and lands in JupyterLab
   (screenshots kept in tests/artifacts); a kernel is started through the hub's proxy and
   answers 6*7 = 42 over its websocket (ZMQ over IPC: there is no 127.0.0.1 to bind).
3. A valid config edit restarts the hub only: the user's server keeps its PID and its kernel (the
   same kernel answers again), and is reachable again within the hub's own restart + 2 s. The same
   bytes written again, and `service jupyterhub reload`: the hub keeps its PID. A syntax error:
   status shows the SyntaxError line, the hub keeps its PID; put back as it runs: still the same PID.
4. SIGKILL of the hub: a new hub, the same user server and kernel. `service jupyterhub stop` stops
   the hub and leaves the user's server running (cleanup_servers = False, as documented); the
   scenario ends it by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import ARTIFACTS, Namespace

from supervisor.jupyterhub.scaffold import find_proxy

REPO = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).resolve().parent / "seed_scenario.py"
CHROMIUM = "/usr/bin/chromium"
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "svctlseed"  # created only in the scenario's private copy of /etc
ACCOUNT_FILES = ("passwd", "shadow", "group", "gshadow")

pytestmark = pytest.mark.slow


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, useradd, update-rc.d)"
    for tool in ("ip", "unshare", "npm", "update-rc.d", "service", "useradd", "chpasswd"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.access(CHROMIUM, os.X_OK):
        return "needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"needs {SYSTEM_PYTHON} with venv (apt-get install python3-venv; .ci/run installs it)"
    if not (Path(sys.executable).parent / "svctl").exists():
        return f"no svctl console script next to {sys.executable} (pip install -e . first)"
    return None


@pytest.fixture(scope="module")
def hub_venv():
    """The README recipe's /opt/jupyterhub, in a world-readable scratch directory (~1 min, pip cache)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="svctl-seed-venv-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    venv = root / "jupyterhub"
    try:
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = subprocess.run([str(venv / "bin/pip"), "install", "-q", "jupyterhub>=5.3", "notebook>=7"],
                             capture_output=True, text=True, timeout=900, check=False)
        assert pip.returncode == 0, pip.stderr[-2000:]
        local_proxy = find_proxy((str(REPO),))  # make jupyterhub-deps' copy: npm reuses its cache
        npm = subprocess.run(["npm", "install", "--no-fund", "--no-audit", "--prefix", str(venv),
                              "configurable-http-proxy"], capture_output=True, text=True, timeout=600, check=False)
        assert npm.returncode == 0, (local_proxy, npm.stderr[-2000:])
        yield venv
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def netns():
    namespace = Namespace(f"svctl-seed-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


@pytest.fixture
def scratch():
    path = tempfile.mkdtemp(prefix="svctl-seed-", dir="/var/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def digests() -> dict[str, bytes]:
    return {name: Path(f"/etc/{name}").read_bytes() for name in ACCOUNT_FILES}


def test_the_seed_on_pure_ipv6_from_a_venv_to_a_kernel(hub_venv, netns, scratch):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot, form = ARTIFACTS / "jupyterhub-lab.png", ARTIFACTS / "jupyterhub-login-form.png"
    for path in (screenshot, form):
        path.unlink(missing_ok=True)
    before = digests()
    initd_before = sorted(os.listdir("/etc/init.d"))
    params = {"user": USER, "password": "Seed-pass-4711", "scratch": str(scratch), "netns": netns.name,
              "svctl": str(Path(sys.executable).parent / "svctl"), "jupyterhub": str(hub_venv / "bin/jupyterhub"),
              "screenshot": str(screenshot), "form_screenshot": str(form)}
    run = subprocess.run(netns.argv("unshare", "-m", "--propagation", "private", sys.executable, str(SCENARIO),
                                    json.dumps(params)),
                         capture_output=True, text=True, timeout=420, cwd=str(scratch), check=False,
                         env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    detail = run.stderr[-4000:]
    assert run.returncode == 0, detail
    results = json.loads(run.stdout.strip().splitlines()[-1])
    detail += "\n" + json.dumps({key: value for key, value in results.items() if key != "lab_text"}, indent=1)[-6000:]

    # Nothing of it reached the host.
    assert digests() == before and sorted(os.listdir("/etc/init.d")) == initd_before

    # init found the hub in the venv (not on PATH) and installed the boot files: `service` knows it.
    assert results["init"]["code"] == 0, detail
    assert f'command = ["{hub_venv}/bin/jupyterhub"' in results["service_file"], detail
    assert any(name.startswith("S") for name in results["rc_links"]), detail
    assert results["service_start"]["code"] == 0 and results["service_status"]["code"] == 0, detail

    # PAM login as a real account lands in JupyterLab, served by a process running as that user.
    assert results["landed_url"].startswith(f"https://[::1]:9443/user/{USER}/lab"), detail
    assert "JupyterLab" in results["title"], detail
    assert screenshot.stat().st_size > 5000 and form.stat().st_size > 1000
    assert len(results["server_pids"]) == 1 and results["server_uids"] == [results["account"]["uid"]], detail

    # A kernel on a host with no IPv4, through the proxy, over its websocket.
    assert results["kernel_create"][0] == 201, detail
    assert results["answer"] == "42", detail

    # A valid edit: the hub restarts, the user's server and kernel live on, back within the restart + 2 s.
    assert results["hub_pids_edited"] and results["hub_pids_edited"] != results["hub_pids"], detail
    assert results["server_pids_edited"] == results["server_pids"], detail
    assert results["kernel_pids_edited"] == results["kernel_pids"] and results["answer_edited"] == "42", detail
    assert results["edit_user_outage"] <= results["edit_hub_outage"] + 2.0, detail

    # The same bytes (watcher and `service reload`), a syntax error, and the revert: the same hub.
    assert results["hub_pids_same_bytes"] == results["hub_pids_edited"], detail
    assert results["reload"]["code"] == 0 and "unchanged" in results["reload"]["stdout"] + results["reload"]["stderr"], detail
    assert "SyntaxError" in results["status_rejected"] and "line" in results["status_rejected"], detail
    assert results["hub_pids_rejected"] == results["hub_pids_edited"], detail
    assert results["hub_pids_reverted"] == results["hub_pids_edited"], detail

    # SIGKILL: a new hub, the same server and kernel.
    assert results["server_pids_killed"] == results["server_pids"] and results["answer_killed"] == "42", detail

    # stop: the hub is gone (status 3); the user's server outlived it, as documented.
    assert results["service_stop"]["code"] == 0 and results["status_stopped"]["code"] == 3, detail
    assert results["server_pids_stopped"] == results["server_pids"], detail

    timings = {key: round(results[key], 2) for key in
               ("login_to_lab_seconds", "edit_hub_outage", "edit_user_outage", "kill_to_healthy_seconds")}
    (ARTIFACTS / "jupyterhub-seed.json").write_text(json.dumps(timings, indent=2) + "\n")
    print("seed:", timings)
