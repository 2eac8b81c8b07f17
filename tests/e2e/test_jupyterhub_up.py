"""`svctl up` as a container's PID 1 (issue 14): JupyterHub with the external proxy, on IPv6 only.

In a network namespace whose loopback has ::1 only (127.0.0.1/8 deleted), `svctl init jupyterhub
--proxy external` scaffolds into a prefix, then `unshare --pid --fork --mount-proc svctl ... up`
runs svctl as PID 1 of a new PID namespace, as `docker run` with ENTRYPOINT ["svctl", "up"] would:
(1) https://[::1]:PORT/hub/health answers 200 (up started jupyterhub-proxy, then the hub that
requires it); `svctl status` from inside the namespace (what `docker exec CONTAINER svctl status`
is) says both are running; (2) alice logs in through the login form (the dummy, shared-password
authenticator), starts her server through the hub's API with her cookie and gets a token; a loop
GETs her server's /api/status through the proxy every 50 ms while a harmless edit of
jupyterhub_config.py makes svctl restart the hub (reload_applied in its events file): 0 failed
requests, a new hub, the same proxy and the same user server; (3) SIGTERM to the namespace's PID 1:
the hub stops before the proxy (reverse dependency order), unshare exits 0 within the contract's
worst case, and nothing of the namespace is left (hub, proxy, alice's server: the server, which
the hub leaves running on purpose, goes in up's final sweep).

Teardown kills every process of the unshare tree and of the network namespace by PID. The figures
go to tests/artifacts/jupyterhub-up.json.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import ARTIFACTS, Namespace, events, missing, processes, svctl, wait_for

pytestmark = pytest.mark.slow

PORT, HUB_PORT, API_PORT = 19530, 19531, 19532
BASE = f"https://[::1]:{PORT}"
HEALTH = f"{BASE}/hub/health"
USER = "alice"
# The contract's worst case: the hub's TERM/30/KILL/5, then the proxy's TERM/10/KILL/5, then the
# final sweep's TERM, 5 s, KILL; plus start-up noise. What it really takes goes to the artifact.
SHUTDOWN_BOUND = 60.0
EDIT = ("\n# svctl up test: a harmless edit, applied while alice's server is in use\n"
        "c.JupyterHub.template_vars = {'reloaded': 'yes'}\n")

# Inside the namespace: log in through the form as USER with PASSWORD, start USER's server through
# the API with the login cookie (and the _xsrf token, as the hub's own pages send it), wait until it
# is ready, and create a token for it. Prints {"steps": [...], "token": ...}; redirects are answers
# (a 302 after the login is the success), never followed.
LOGIN = r"""
import json, ssl, sys, time, urllib.error, urllib.parse, urllib.request
base, user, password = sys.argv[1:4]
context = ssl._create_unverified_context()
cookies, steps = {}, []

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), Stay)

def call(method, path, form=None, body=None):
    headers = {}
    if cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    if "_xsrf" in cookies:
        headers["X-XSRFToken"] = urllib.parse.unquote(cookies["_xsrf"])
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        response = opener.open(request, timeout=30)
        status, answer, received = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, answer, received = exc.code, exc.read(), exc.headers
    for line in received.get_all("Set-Cookie") or []:
        name, _, rest = line.partition("=")
        cookies[name.strip()] = rest.split(";", 1)[0]
    try:
        answer = json.loads(answer)
    except ValueError:
        answer = answer.decode(errors="replace")[:300]
    steps.append([method, path, status])
    return status, answer

def done(token=None, error=None):
    print(json.dumps({"steps": steps, "token": token, "error": error, "cookies": sorted(cookies)}))
    sys.exit(0)

call("GET", "/hub/login")
if "_xsrf" not in cookies:
    done(error="GET /hub/login set no _xsrf cookie")
status, answer = call("POST", "/hub/login?next=%2Fhub%2Fhome",
                      form={"username": user, "password": password, "_xsrf": urllib.parse.unquote(cookies["_xsrf"])})
if status != 302:
    done(error=f"login answered {status}, not 302: {answer}")
status, answer = call("GET", "/hub/api/user")
if status != 200 or not isinstance(answer, dict) or answer.get("name") != user:
    done(error=f"after the login, /hub/api/user answered {status}: {answer}")
status, answer = call("POST", f"/hub/api/users/{user}/server")
if status not in (201, 202):
    done(error=f"starting the server answered {status}: {answer}")
deadline = time.monotonic() + 90
while True:
    status, answer = call("GET", f"/hub/api/users/{user}")
    server = (answer.get("servers") or {}).get("") if isinstance(answer, dict) else None
    if server and server.get("ready"):
        break
    if time.monotonic() > deadline:
        done(error=f"the server was not ready within 90 s: {status} {answer}")
    time.sleep(0.5)
status, answer = call("POST", f"/hub/api/users/{user}/tokens", body={"note": "svctl up test", "expires_in": 3600})
if status != 201 or not isinstance(answer, dict) or "token" not in answer:
    done(error=f"creating a token answered {status}: {answer}")
done(token=answer["token"])
"""

# Inside the namespace: GET URL with TOKEN every ~50 ms until STOPFILE exists; print the counts.
HAMMER = """
import json, os, ssl, sys, time, urllib.request, urllib.error
url, token, stop = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl._create_unverified_context()
sent, failures = 0, []
while not os.path.exists(stop):
    request = urllib.request.Request(url, headers={"Authorization": "token " + token})
    sent += 1
    try:
        status = urllib.request.urlopen(request, context=context, timeout=5).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:
        status = repr(exc)
    if status != 200:
        failures.append([time.time(), str(status)])
    time.sleep(0.05)
print(json.dumps({"sent": sent, "failures": failures}))
"""


class Up:
    """`unshare --pid --fork --mount-proc svctl up` in the network namespace, its output in a file."""

    def __init__(self, netns: Namespace, cli: list[str], output: Path) -> None:
        self.output = output
        self.handle = open(output, "wb")
        # --kill-child: should this test die, the kernel takes the whole PID namespace with unshare.
        self.process = subprocess.Popen(
            netns.argv("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *cli, "up"),
            stdin=subprocess.DEVNULL, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True)

    def init_pid(self) -> int | None:
        """The host PID of the namespace's PID 1 (unshare's one child), once it exists."""
        self.require_running("before its PID 1 was seen")
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.Error:
            return None
        return children[0].pid if len(children) == 1 else None

    def require_running(self, when: str) -> None:
        code = self.process.poll()
        assert code is None, f"unshare (svctl up as PID 1) exited {code} {when}{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- svctl up output (last lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def tree(self) -> list[int]:
        if self.process.returncode is not None:  # reaped: its PID may be anyone's now
            return []
        try:
            return [self.process.pid, *(child.pid for child in psutil.Process(self.process.pid).children(recursive=True))]
        except psutil.Error:
            return []

    def kill(self, extra: list[int]) -> None:
        for pid in {*self.tree(), *extra}:  # only what this test started: the unshare tree, the netns
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=30)
        finally:
            self.handle.close()


@pytest.fixture
def netns():
    reason = missing()
    if reason:
        pytest.skip(reason)
    namespace = Namespace(f"svctl-up-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.destroy()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def in_pid_namespace(inode: str) -> list[int]:
    """Every process (host PIDs) whose PID namespace is INODE (the readlink of /proc/PID/ns/pid)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == inode and not gone(int(entry)):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def hub_pids(netns: Namespace) -> list[int]:
    """The hub, not the `jupyterhub --show-config` check svctl runs before applying an edit."""
    found = []
    for pid in processes(netns.pids(), "jupyterhub", exact=True):
        try:
            if "--show-config" not in psutil.Process(pid).cmdline():
                found.append(pid)
        except psutil.Error:
            continue
    return found


def server_pids(netns: Namespace) -> list[int]:
    pids = netns.pids()
    return processes(pids, "jupyterhub-singleuser") + processes(pids, "jupyterhub.singleuser", exact=True)


def when(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_up_as_pid1_serves_reloads_and_stops(netns, tmp_path):
    prefix = tmp_path / "root"
    cli = svctl(prefix)
    config_path = prefix / "etc/jupyterhub/jupyterhub_config.py"
    figures: dict[str, float | int] = {}

    init = netns.run(sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                     "--ip", "::1", "--port", str(PORT), "--hub-port", str(HUB_PORT), "--api-port", str(API_PORT),
                     "--auth", "dummy", "--users", USER, "--proxy", "external")
    assert init.returncode == 0, init.stdout + init.stderr
    password = (prefix / "srv/jupyterhub/login-password").read_text().strip()
    assert sorted(path.name for path in (prefix / "etc/svctl").glob("*.toml")) == ["jupyterhub-proxy.toml",
                                                                                 "jupyterhub.toml"]
    assert netns.run("ip", "-4", "addr", "show").stdout.strip() == "", "the namespace still has IPv4 addresses"

    started = time.monotonic()
    up = Up(netns, cli, tmp_path / "up.log")
    try:
        init_pid = wait_for(up.init_pid, 10, "unshare's child (the namespace's PID 1)", interval=0.05)
        with open(f"/proc/{init_pid}/status") as handle:
            nspid = next(line.split()[1:] for line in handle if line.startswith("NSpid:"))
        assert nspid == [str(init_pid), "1"], f"svctl up is not PID 1 of its namespace: NSpid {nspid}"
        assert "up" in psutil.Process(init_pid).cmdline(), psutil.Process(init_pid).cmdline()
        pid_namespace = os.readlink(f"/proc/{init_pid}/ns/pid")

        # (1) Up: the proxy, then the hub (it requires the proxy), healthy through the proxy on ::1.
        def healthy():
            up.require_running(f"before {HEALTH} answered 200")
            return netns.get(HEALTH) == 200

        wait_for(healthy, 120, f"{HEALTH} to answer 200", interval=0.2)
        figures["seconds_to_hub_health_200"] = time.monotonic() - started
        hubs, proxies = hub_pids(netns), processes(netns.pids(), "configurable-http-proxy")
        assert len(hubs) == 1 and len(proxies) == 1, (hubs, proxies, up.tail())
        for pid in (*hubs, *proxies):
            assert os.readlink(f"/proc/{pid}/ns/pid") == pid_namespace, f"{pid} runs outside up's PID namespace"
        # `docker exec CONTAINER svctl status`: the same PID, mount and network namespaces.
        inside = ["nsenter", "--target", str(init_pid), "--pid", "--mount", "--net"]
        status = subprocess.run([*inside, *cli, "status"], capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, f"svctl status in the namespace: {status.returncode}\n{status.stdout}{status.stderr}"
        for name in ("jupyterhub", "jupyterhub-proxy"):
            one = subprocess.run([*inside, *cli, "status", name], capture_output=True, text=True, timeout=60, check=False)
            assert one.returncode == 0, f"svctl status {name}: {one.returncode}\n{one.stdout}{one.stderr}"

        # (2) alice logs in and starts her server; a loop uses it while an edit restarts the hub.
        login = netns.run(sys.executable, "-c", LOGIN, BASE, USER, password, timeout=180)
        try:
            session = json.loads(login.stdout)
        except ValueError:
            pytest.fail(f"the login script failed: {login.stdout}{login.stderr}")
        assert session["error"] is None and session["token"], session
        token = session["token"]
        status_url = f"{BASE}/user/{USER}/api/status"
        wait_for(lambda: netns.get(status_url, token) == 200, 60, f"{USER}'s server through the proxy", interval=0.5)
        servers = server_pids(netns)
        assert len(servers) == 1, servers

        stop_file = tmp_path / "stop-hammer"
        hammer = subprocess.Popen(netns.argv(sys.executable, "-c", HAMMER, status_url, token, str(stop_file)),
                                  stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            applied_before = len([e for e in events(prefix, "jupyterhub") if e.get("event") == "reload_applied"])
            edited = time.monotonic()
            with open(config_path, "a") as handle:
                handle.write(EDIT)
            wait_for(lambda: len([e for e in events(prefix, "jupyterhub")
                                  if e.get("event") == "reload_applied"]) > applied_before,
                     90, f"reload_applied in the hub's events file after the edit{up.tail()}", interval=0.25)
            wait_for(lambda: netns.get(HEALTH) == 200, 30, "the new hub to be healthy")
            figures["seconds_edit_to_applied"] = time.monotonic() - edited
            time.sleep(1)  # a few more requests against the settled hub
        finally:
            stop_file.touch()
            output, _ = hammer.communicate(timeout=30)
        counts = json.loads(output)
        figures["requests_sent_during_edit"] = counts["sent"]
        figures["requests_failed_during_edit"] = len(counts["failures"])
        assert counts["sent"] > 20, counts
        assert counts["failures"] == [], f"{len(counts['failures'])} failed requests during the edit: {counts}"
        console = up.output.read_text(errors="replace")
        assert "reload_applied" in console, f"svctl up's stderr has no reload_applied line (one line per event){up.tail()}"
        new_hubs = hub_pids(netns)
        assert len(new_hubs) == 1 and new_hubs != hubs, f"the hub was not restarted: {hubs} -> {new_hubs}"
        assert processes(netns.pids(), "configurable-http-proxy") == proxies, "the proxy was restarted"
        assert server_pids(netns) == servers, f"{USER}'s server was restarted"
        assert netns.get(status_url, token) == 200

        # (3) SIGTERM to PID 1: the hub stops first, then the proxy, then the sweep takes the server.
        watched = {"hub": new_hubs[0], "proxy": proxies[0], "user_server": servers[0]}
        everything = in_pid_namespace(pid_namespace)
        assert {init_pid, *watched.values()} <= set(everything), (init_pid, watched, everything)
        terminated_at, terminated = time.time(), time.monotonic()
        os.kill(init_pid, signal.SIGTERM)
        vanished: dict[str, float] = {}
        while up.process.poll() is None and time.monotonic() - terminated < SHUTDOWN_BOUND:
            for what, pid in watched.items():
                if what not in vanished and gone(pid):
                    vanished[what] = time.monotonic() - terminated
            time.sleep(0.02)
        code = up.process.poll()
        figures["seconds_sigterm_to_exit"] = time.monotonic() - terminated
        for what, seconds in vanished.items():
            figures[f"seconds_sigterm_to_{what}_gone"] = seconds
        assert code is not None, f"unshare still runs {SHUTDOWN_BOUND} s after SIGTERM to PID 1{up.tail()}"
        assert code == 0, f"unshare (svctl up as PID 1) exited {code}, not 0{up.tail()}"
        assert in_pid_namespace(pid_namespace) == [], "processes of up's PID namespace are left"
        assert netns.pids() == [], f"processes left in the network namespace: {netns.pids()}"

        hub_stopped = [e for e in events(prefix, "jupyterhub") if e.get("event") == "stopped" and when(e) >= terminated_at]
        proxy_stopping = [e for e in events(prefix, "jupyterhub-proxy")
                          if e.get("event") == "stopping" and when(e) >= terminated_at]
        proxy_stopped = [e for e in events(prefix, "jupyterhub-proxy")
                         if e.get("event") == "stopped" and when(e) >= terminated_at]
        assert hub_stopped and proxy_stopping and proxy_stopped, (
            f"stop events after SIGTERM: hub stopped {hub_stopped}, proxy stopping {proxy_stopping}, "
            f"proxy stopped {proxy_stopped}{up.tail()}")
        assert when(hub_stopped[0]) <= when(proxy_stopping[0]), (
            f"the proxy began stopping before the hub (which requires it) had stopped: {hub_stopped[0]} "
            f"vs {proxy_stopping[0]}")
    finally:
        up.kill(netns.pids())
        print("svctl up figures:", {key: round(value, 2) for key, value in figures.items()})

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jupyterhub-up.json").write_text(json.dumps(figures, indent=2) + "\n")
