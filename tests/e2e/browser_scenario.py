"""The browser scenario of test_jupyterhub_browser.py, run as root inside the test's IPv4-less network
namespace and a private mount namespace (``unshare -m --propagation private``).

Usage: browser_scenario.py PARAMS_JSON. Prints progress on stderr and, last, one JSON line of
results on stdout; the test asserts on those. Everything it starts it stops again (the test's
namespace teardown kills whatever a failure leaves).

A system account is made on private copies of /etc/passwd, shadow, group and gshadow: ``useradd
--prefix`` and ``usermod --prefix`` edit copies in a scratch root, which are then bind-mounted over
the real files in this mount namespace only (useradd and chpasswd cannot edit a bind-mounted file
in place: they replace it by rename, which fails with EBUSY on a mount point).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pwd
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import processes, wait_for  # noqa: E402

ACCOUNT_FILES = ("passwd", "shadow", "group", "gshadow")
HELLO = "svctl-hello.txt"  # a file in the user's home, served by the user's server after login


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)




def http_status(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        return urllib.request.urlopen(request, context=ssl._create_unverified_context(), timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def namespace_pids(netns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(word) for word in result.stdout.split()]


def make_account(scratch: str, user: str, password: str, home: str) -> pwd.struct_passwd:
    """USER with PASSWORD, in private copies of the account files bind-mounted over /etc."""
    root = os.path.join(scratch, "accounts")
    os.makedirs(os.path.join(root, "etc"))
    for name in (*ACCOUNT_FILES, "login.defs"):
        shutil.copy2(f"/etc/{name}", os.path.join(root, "etc", name))
    subprocess.run(["useradd", "--prefix", root, "--no-create-home", "--home-dir", home, "--shell", "/bin/bash",
                    "--user-group", user], check=True)
    hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True,
                            text=True, check=True).stdout.strip()
    subprocess.run(["usermod", "--prefix", root, "--password", hashed, user], check=True)
    for name in ACCOUNT_FILES:
        subprocess.run(["mount", "--bind", os.path.join(root, "etc", name), f"/etc/{name}"], check=True)
    entry = pwd.getpwnam(user)
    os.makedirs(home, mode=0o700)
    hello = os.path.join(home, HELLO)
    with open(hello, "w") as handle:
        handle.write(f"Hello {user}: this file is served by your own Jupyter server.\n")
    for path in (home, hello):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return entry


class Browser:
    """Headless Chromium driven through the DevTools protocol over --remote-debugging-pipe."""

    def __init__(self, profile: str) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. Copies above 100 first, so the
        # dup2 calls in the child cannot overwrite one another.
        high_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 100)
        high_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 100)
        for descriptor in (to_browser_read, from_browser_write):
            os.close(descriptor)

        def child_fds() -> None:
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--ignore-certificate-errors",
             "--remote-debugging-pipe", "--window-size=1280,900", "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(profile + ".log"), "wb"), start_new_session=True)
        os.close(high_read)
        os.close(high_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, *, session: bool = True, timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read_message(deadline - time.monotonic())
            if reply is None:
                break
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(f"no reply to {method} in {timeout} s")

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Network.enable")

    def evaluate(self, expression: str, *, await_promise: bool = False):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def location(self) -> tuple[str, str]:
        """(URL without query or fragment, readyState): a redirect may leave an empty "?" behind."""
        try:
            return tuple(self.evaluate("[location.origin + location.pathname, document.readyState]"))  # type: ignore
        except RuntimeError:
            return ("", "")  # between two documents

    def status_of(self, url: str) -> int | None:
        """The HTTP status of the last response for URL (Network domain events)."""
        statuses = [event["params"]["response"]["status"] for event in self.events
                    if event.get("method") == "Network.responseReceived"
                    and event["params"]["response"]["url"] == url]
        return statuses[-1] if statuses else None

    def screenshot(self, path: str) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # Chromium's helpers (zygotes, utility processes) share its session and process group and
        # may outlive the browser process by a moment: end the group, and wait until it is gone.
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_members(group):
            time.sleep(0.05)
        for descriptor in (self._to_browser, self._from_browser):
            os.close(descriptor)


def reachable_by_user(path: str, mountpoint: str) -> str:
    """PATH, or a bind mount of it at MOUNTPOINT when a 0700 directory on the way hides it.

    A checkout cloned into /root (0700) holds the venv whose site-packages the user's server
    imports; this scenario runs in a private mount namespace, so the bind mount vanishes with it.
    """
    parents = [str(parent) for parent in Path(path).resolve().parents]
    if all(os.stat(directory).st_mode & 0o001 for directory in parents):
        return path
    os.makedirs(mountpoint, mode=0o755, exist_ok=True)
    subprocess.run(["mount", "--bind", path, mountpoint], check=True)
    log(f"{path} is not reachable by other users: bind-mounted at {mountpoint}")
    return mountpoint


def main() -> None:
    params = json.loads(sys.argv[1])
    user, password, port = params["user"], params["password"], params["port"]
    scratch, prefix, netns = params["scratch"], params["prefix"], params["netns"]
    base = f"https://[::1]:{port}"
    results: dict = {}
    svctl = [sys.executable, "-m", "supervisor", "--config-dir", f"{prefix}/etc/svctl",
             "--run-dir", f"{prefix}/run/svctl"]

    entry = make_account(scratch, user, password, os.path.join(scratch, "home", user))
    results["uid"] = entry.pw_uid
    log(f"account {user} uid {entry.pw_uid}")

    init = subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", prefix,
                           "--ip", "::1", "--port", str(port), "--hub-port", str(params["hub_port"]),
                           "--api-port", str(params["api_port"]), "--users", user],
                          capture_output=True, text=True, check=False)
    if init.returncode != 0:
        raise SystemExit(f"init failed: {init.stdout}{init.stderr}")
    config_path = f"{prefix}/etc/jupyterhub/jupyterhub_config.py"
    with open(config_path, "a") as handle:
        handle.write("\n# Test only: see test_jupyterhub_browser.py's docstring.\n")
        handle.write(f"c.Spawner.cmd = {params['spawner_cmd']!r}\n")
        if params.get("spawner_pythonpath"):
            pythonpath = reachable_by_user(params["spawner_pythonpath"], os.path.join(scratch, "site-packages"))
            handle.write(f"c.Spawner.environment = {{'PYTHONPATH': {pythonpath!r}}}\n")
        handle.write(f"c.Spawner.default_url = '/files/{HELLO}'  # no notebook/lab frontend is installed\n")
    results["config"] = open(config_path).read()

    started = time.monotonic()
    start = subprocess.run([*svctl, "start", "jupyterhub"], capture_output=True, text=True, check=False)
    results["start_rc"], results["start_seconds"] = start.returncode, time.monotonic() - started
    if start.returncode != 0:
        raise SystemExit(f"svctl start failed: {start.stdout}{start.stderr}")
    log(f"hub healthy after {results['start_seconds']:.1f} s")

    browser = Browser(os.path.join(scratch, "chromium-profile"))
    try:
        browser.open_page()
        browser.navigate(f"{base}/hub/login")
        wait_for(lambda: browser.location()[1] == "complete" and
                 browser.evaluate("!!document.getElementById('username_input')"), 30, "the login form")
        browser.evaluate(f"document.getElementById('username_input').value = {json.dumps(user)};"
                         f"document.getElementById('password_input').value = {json.dumps(password)}; true")
        browser.screenshot(params["form_screenshot"])
        browser.evaluate("document.getElementById('login_submit').click(); true")
        landed = f"{base}/user/{user}/files/{HELLO}"
        logged_in = time.monotonic()
        wait_for(lambda: browser.location() == (landed, "complete"), 60,
                 f"the browser to reach {landed}", interval=0.25)
        results["login_to_server_seconds"] = time.monotonic() - logged_in
        results["landed_url"] = browser.location()[0]
        results["page_text"] = browser.evaluate("document.body.innerText")
        results["title"] = browser.evaluate("document.title")
        browser.screenshot(params["screenshot"])
        log(f"browser at {results['landed_url']}")

        pids = namespace_pids(netns)
        servers = processes(pids, "jupyterhub.singleuser", exact=True) + processes(pids, "jupyterhub-singleuser")
        hubs = processes(pids, "jupyterhub", exact=True)
        results["server_pids"], results["hub_pids"] = servers, hubs
        results["server_uids"] = [os.stat(f"/proc/{pid}").st_uid for pid in servers]
        results["proxy_pids"] = processes(pids, "configurable-http-proxy")

        # Crash: the hub dies without cleanup; svctl restarts it; the user's server lives on.
        killed = time.monotonic()
        os.kill(hubs[0], signal.SIGKILL)
        wait_for(lambda: processes(namespace_pids(netns), "jupyterhub", exact=True) not in ([], hubs)
                 and http_status(f"{base}/hub/health") == 200, 60, "a new healthy hub", interval=0.2)
        results["kill_to_healthy_seconds"] = time.monotonic() - killed
        pids = namespace_pids(netns)
        results["hub_pids_after"] = processes(pids, "jupyterhub", exact=True)
        results["proxy_pids_after"] = processes(pids, "configurable-http-proxy")
        results["server_pids_after"] = (processes(pids, "jupyterhub.singleuser", exact=True)
                                        + processes(pids, "jupyterhub-singleuser"))
        log(f"hub back after {results['kill_to_healthy_seconds']:.1f} s")

        # Still served, through the new hub's proxy, with the browser's own cookies. (A top-level
        # navigation: the /files/ page is sandboxed, so a fetch from it has Origin null and is refused.)
        me = f"{base}/user/{user}/api/me"
        browser.navigate(me)
        wait_for(lambda: browser.location() == (me, "complete"), 30, "the user's server after the restart")
        results["after_kill"] = [browser.status_of(me), browser.evaluate("document.body.innerText")]
        browser.navigate(landed)
        wait_for(lambda: browser.location() == (landed, "complete"), 30, "the page again")
        results["page_text_after"] = browser.evaluate("document.body.innerText")
    finally:
        browser.close()

    stop = subprocess.run([*svctl, "stop", "jupyterhub"], capture_output=True, text=True, check=False)
    results["stop_rc"] = stop.returncode
    results["left"] = [pid for pid in namespace_pids(netns) if pid != os.getpid()]
    results["left_programs"] = {pid: _cmdline(pid) for pid in results["left"]}
    results["status_rc"] = subprocess.run([*svctl, "status", "jupyterhub"], capture_output=True,
                                          check=False).returncode
    print(json.dumps(results))


def _group_members(group: int) -> list[int]:
    """Live (non-zombie) processes in process group GROUP."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry))
    return members


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
