"""The seed's last step, done by a real browser and a real system account (issue 5, "What it must show").

In an IPv4-less network namespace and a private mount namespace (browser_scenario.py, run under
``ip netns exec NS unshare -m --propagation private``): a system account with a password is created
on private copies of /etc/passwd, shadow, group and gshadow, bind-mounted over the real ones (the
host's files are checked to be unchanged afterwards); ``svctl init jupyterhub`` writes its default
config (PAM authenticator, LocalProcessSpawner, the hub as root) and ``svctl start`` runs it; headless
Chromium (Debian's ``chromium``, driven through the DevTools protocol over --remote-debugging-pipe:
no extra package, no port) opens https://[::1]:PORT, logs in as that user, and lands on the user's
own Jupyter server at /user/NAME/, whose process runs with the user's uid. Screenshots are kept in
tests/artifacts: jupyterhub-login-form.png (the hub's login page, filled in) and
jupyterhub-login.png (where the login lands: a page served by the user's own server). Then the hub is SIGKILLed: svctl restarts it (clearing the
orphaned proxy), the user's server survives with the same PID (a SIGKILLed hub does no cleanup;
the new hub re-adopts the server from its database) and still answers the browser's cookies
through the new proxy. ``svctl stop`` leaves nothing running.

Two test-only lines are appended to the config init writes:

* ``c.Spawner.cmd``: the user must be able to execute ``jupyterhub-singleuser``. Here the venv's
  ``python`` is a symlink into /root/.pyenv and /root is 0700, so the user cannot run anything from
  the venv. When that is so, the test runs ``/usr/bin/python3 -m jupyterhub.singleuser`` (Debian's
  Python, same major.minor as the venv's, which the user can execute) with the venv's
  site-packages (world-readable) on ``PYTHONPATH`` via ``c.Spawner.environment``. When the venv's
  interpreter is executable by others (a venv in /opt, say), the venv's own jupyterhub-singleuser is
  used and nothing is added. A real install puts JupyterHub where its users can execute it.
* ``c.Spawner.default_url = '/files/svctl-hello.txt'``: only jupyter_server is installed (no notebook
  or lab frontend, so the default /tree/ would be a 404); the browser lands on a file of the user's
  home served by the user's server (a page, so the server does its OAuth login with the hub; API
  URLs answer 403 instead). After the restart, /user/NAME/api/me fetched with the browser's
  cookies must name the user.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from helpers import ARTIFACTS, Namespace, missing

from supervisor.jupyterhub.scaffold import find_jupyterhub

PORT, HUB_PORT, API_PORT = 19420, 19421, 19422
USER = "svctljh"  # created only in the test's private copies of the account files
SCENARIO = Path(__file__).resolve().parent / "browser_scenario.py"
CHROMIUM = "/usr/bin/chromium"
ACCOUNT_FILES = ("passwd", "shadow", "group", "gshadow")

pytestmark = pytest.mark.slow


def executable_by_others(path: str) -> bool:
    """Every directory on the way to PATH's real file is o+x, and the file is o+x."""
    real = os.path.realpath(path)
    parts = Path(real).parents
    return all(os.stat(directory).st_mode & 0o001 for directory in parts) and bool(os.stat(real).st_mode & 0o001)


def spawner_command() -> tuple[list[str], str | None] | str:
    """(Spawner.cmd, PYTHONPATH or None) the test user can execute, or why there is none."""
    venv_bin = os.path.dirname(find_jupyterhub() or sys.executable)
    singleuser = os.path.join(venv_bin, "jupyterhub-singleuser")
    with open(singleuser, "rb") as handle:
        shebang = handle.readline()[2:].decode().strip().split()[0]
    if executable_by_others(shebang) and executable_by_others(singleuser):
        return [singleuser], None
    system = "/usr/bin/python3"
    if not os.access(system, os.X_OK) or not executable_by_others(system):
        return f"the venv's Python ({shebang}) is not executable by other users, and there is no {system}"
    version = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=False).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        return (f"the venv's Python ({shebang}) is not executable by other users, and {system} is {version}, "
                f"not the venv's {tuple(sys.version_info[:2])}")
    return [system, "-m", "jupyterhub.singleuser"], sysconfig.get_paths()["purelib"]


def ensure_chromium() -> str | None:
    """Install Debian's chromium when missing (never a downloaded browser build); None or why not."""
    if os.access(CHROMIUM, os.X_OK):
        return None
    if shutil.which("apt-get") is None:
        return "chromium is not installed and there is no apt-get"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=900, check=False)
        if result.returncode != 0:
            return f"apt-get install chromium failed: {result.stderr.strip()[-300:]}"
    return None if os.access(CHROMIUM, os.X_OK) else "apt-get install chromium did not provide /usr/bin/chromium"


def digests() -> dict[str, str]:
    return {name: hashlib.sha256(Path(f"/etc/{name}").read_bytes()).hexdigest() for name in ACCOUNT_FILES}


@pytest.fixture
def netns():
    reason = missing() or ensure_chromium()
    if reason:
        pytest.skip(reason)
    namespace = Namespace(f"svctl-br-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


@pytest.fixture
def scratch():
    # Not pytest's tmp_path: its base is 0700, and the user's home must be reachable by the user.
    path = tempfile.mkdtemp(prefix="svctl-browser-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_browser_login_reaches_the_users_server(netns, scratch):
    command = spawner_command()
    if isinstance(command, str):
        pytest.skip(command)
    spawner_cmd, pythonpath = command
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "jupyterhub-login.png"
    form_screenshot = ARTIFACTS / "jupyterhub-login-form.png"
    for path in (screenshot, form_screenshot):
        path.unlink(missing_ok=True)
    before = digests()
    params = {"user": USER, "password": "Browser-pass-4711", "port": PORT, "hub_port": HUB_PORT,
              "api_port": API_PORT, "scratch": str(scratch), "prefix": str(scratch / "root"), "netns": netns.name,
              "screenshot": str(screenshot),
              "form_screenshot": str(form_screenshot), "spawner_cmd": spawner_cmd, "spawner_pythonpath": pythonpath}

    run = subprocess.run(netns.argv("unshare", "-m", "--propagation", "private", sys.executable, str(SCENARIO),
                                    json.dumps(params)),
                         capture_output=True, text=True, timeout=240, cwd=str(scratch), check=False)
    log = scratch / "root/var/log/jupyterhub.log"
    detail = f"{run.stderr[-3000:]}\n--- hub log ---\n{log.read_text()[-4000:] if log.exists() else ''}"
    assert run.returncode == 0, detail
    results = json.loads(run.stdout.strip().splitlines()[-1])

    # The host's account files were never touched; the account existed only in the namespace.
    assert digests() == before
    assert USER not in Path("/etc/passwd").read_text()

    assert results["start_rc"] == 0
    assert results["landed_url"] == f"https://[::1]:{PORT}/user/{USER}/files/svctl-hello.txt", detail
    assert results["page_text"].startswith(f"Hello {USER}:"), results["page_text"]
    assert screenshot.stat().st_size > 1000 and form_screenshot.stat().st_size > 1000
    assert len(results["server_pids"]) == 1, results
    assert results["server_uids"] == [results["uid"]], "the user's server does not run as the user"

    # SIGKILL: a new hub (and a new proxy: the orphan was cleared), the same user server, still served.
    assert results["hub_pids_after"] and results["hub_pids_after"] != results["hub_pids"]
    assert len(results["proxy_pids_after"]) == 1 and results["proxy_pids_after"] != results["proxy_pids"]
    assert results["server_pids_after"] == results["server_pids"], "the user's server did not survive"
    status, text = results["after_kill"]
    assert status == 200 and json.loads(text)["identity"]["username"] == USER
    assert results["page_text_after"].startswith(f"Hello {USER}:")

    assert results["stop_rc"] == 0
    assert results["status_rc"] == 3
    leftovers = {pid: line for pid, line in results["left_programs"].items()
                 if "ip netns pids" not in line and line not in ("?", "")}  # "": a zombie
    assert leftovers == {}, leftovers
    timings = {key: results[key] for key in ("start_seconds", "login_to_server_seconds", "kill_to_healthy_seconds")}
    (ARTIFACTS / "jupyterhub-browser.json").write_text(json.dumps(timings, indent=2))
    print("browser:", {key: round(value, 2) for key, value in timings.items()})
