"""The seed's deployment, as a sysadmin does it, run by test_jupyterhub_seed.py (issue 11).

Runs as root inside the test's IPv4-less network namespace and a private mount namespace
(``ip netns exec NS unshare -m --propagation private``). /etc is a private copy of itself, and
/run, /var/log, /srv and /home are empty tmpfs, so init, update-rc.d, useradd and the hub write
there and nowhere else. JupyterHub lives in a venv that is not on PATH (the README's recipe: a venv
with jupyterhub and notebook, the proxy installed into it with npm) and is found with --jupyterhub.

Usage: seed_scenario.py PARAMS_JSON. Progress goes to stderr; the last stdout line is the JSON of
results the test asserts on. Anything a failure leaves running is killed by the test's namespace
teardown (every PID ``ip netns pids`` lists).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser  # noqa: E402
from helpers import processes, wait_for  # noqa: E402

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the venv is not on it: --jupyterhub finds the hub
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
BASE = "https://[::1]:9443"  # the seed's own port, free in this namespace
SVCTL = NETNS = ""  # from the parameters


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def run(argv: list[str], timeout: float = 120) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL)
    return {"argv": argv, "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def privatize(scratch: str) -> None:
    """/etc a private copy; /run, /var/log, /srv, /home empty; invoke-rc.d allowed to start."""
    sh("mount", "--make-rprivate", "/")
    mounts = os.path.join(scratch, "mounts")
    os.makedirs(mounts)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", mounts)
    sh("cp", "-a", "/etc", f"{mounts}/etc")
    sh("mount", "--bind", f"{mounts}/etc", "/etc")
    for directory in ("/run", "/var/log", "/srv", "/home"):
        sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", directory)
    policy = "/usr/sbin/policy-rc.d"
    if os.path.exists(policy):  # a container's deny-all one would stop `service`'s helpers
        allow = f"{mounts}/policy-rc.d"
        with open(allow, "w") as handle:
            handle.write("#!/bin/sh\nexit 0\n")
        os.chmod(allow, 0o755)
        sh("mount", "--bind", allow, policy)


def make_account(user: str, password: str) -> dict:
    sh("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user)
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
    import pwd

    entry = pwd.getpwnam(user)
    return {"uid": entry.pw_uid, "home": entry.pw_dir}


def http(url: str, cookies: str = "") -> int:
    """The status of GET URL (0: no answer), with the browser's cookies and, as its pages do, the
    _xsrf token (JupyterHub wants it with a cookie-authenticated API request)."""
    headers = {}
    if cookies:
        headers["Cookie"] = cookies
        xsrf = [part.split("=", 1)[1] for part in cookies.split("; ") if part.startswith("_xsrf=")]
        if xsrf:
            headers["X-XSRFToken"] = urllib.parse.unquote(xsrf[0])
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, context=ssl._create_unverified_context(), timeout=3).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def namespace_pids() -> list[int]:
    """The processes of this network namespace (not the host's: other hubs may run there). Not
    `ip netns pids`: /run is a private tmpfs here, without /run/netns."""
    ours, found = os.readlink("/proc/self/ns/net"), []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/net") == ours:
                found.append(int(entry))
        except OSError:
            continue
    return found


def hub_pids() -> list[int]:
    """The hub itself, not the `jupyterhub --show-config` check svctl runs before applying an edit."""
    return [pid for pid in processes(namespace_pids(), "jupyterhub", exact=True) if "--show-config" not in _argv(pid)]


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def server_pids() -> list[int]:
    pids = namespace_pids()
    return processes(pids, "jupyterhub-singleuser") + processes(pids, "jupyterhub.singleuser", exact=True)


def kernel_pids() -> list[int]:
    return processes(namespace_pids(), "ipykernel_launcher")


class Poller(threading.Thread):
    """GET URL every 50 ms; records (monotonic time, status) until stopped."""

    def __init__(self, url: str, cookies: str = "") -> None:
        super().__init__(daemon=True)
        self.url, self.cookies, self.samples = url, cookies, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.monotonic(), http(self.url, self.cookies)))
            time.sleep(0.05)

    def outage(self) -> float:
        """Seconds from the first failed answer to the first good one after the last failure."""
        failed = [when for when, status in self.samples if status != 200]
        if not failed:
            return 0.0
        after = [when for when, status in self.samples if status == 200 and when > failed[-1]]
        return (after[0] if after else self.samples[-1][0]) - failed[0]


KERNEL_JS = """
(async () => {
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]+)/) || [])[1] || "");
  const reply = await fetch("/user/%(user)s/api/kernels", {method: "POST", credentials: "same-origin",
      headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"}, body: JSON.stringify({name: "python3"})});
  const body = await reply.json();
  return [reply.status, body.id || JSON.stringify(body)];
})()
"""

# One execute_request over the kernel's websocket (the Jupyter messaging protocol's JSON form):
# the value is the execute_result's text/plain, or what went wrong.
EXECUTE_JS = """
new Promise((resolve) => {
  const socket = new WebSocket(`wss://${location.host}/user/%(user)s/api/kernels/%(kernel)s/channels`);
  const id = crypto.randomUUID();
  const header = {msg_id: id, username: "%(user)s", session: crypto.randomUUID(), msg_type: "execute_request",
                  version: "5.3", date: new Date().toISOString()};
  socket.onopen = () => socket.send(JSON.stringify({header, parent_header: {}, metadata: {}, channel: "shell",
      buffers: [], content: {code: "%(code)s", silent: false, store_history: false, user_expressions: {},
                             allow_stdin: false, stop_on_error: true}}));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.parent_header.msg_id !== id) return;
    if (message.msg_type === "execute_result") { resolve(message.content.data["text/plain"]); socket.close(); }
    if (message.msg_type === "error") { resolve("error: " + message.content.ename); socket.close(); }
  };
  socket.onerror = () => resolve("websocket error");
  setTimeout(() => resolve("timeout"), 60000);
})
"""


def execute(browser: Browser, user: str, kernel: str, code: str = "6*7") -> str:
    return browser.evaluate(EXECUTE_JS % {"user": user, "kernel": kernel, "code": code}, await_promise=True)


def cookie_header(browser: Browser, user: str) -> str:
    cookies = browser.send("Network.getCookies", {"urls": [f"{BASE}/user/{user}/", f"{BASE}/hub/"]})["cookies"]
    return "; ".join(f"{cookie['name']}={cookie['value']}" for cookie in cookies)


def wait_status(pattern: str, timeout: float = 60) -> str:
    def seen():
        shown = run([SVCTL, "status", "jupyterhub"])
        return shown["stdout"] + shown["stderr"] if pattern in shown["stdout"] + shown["stderr"] else ""
    return wait_for(seen, timeout, f"status to show {pattern!r}", interval=0.5)


def edit(text: str) -> None:
    with open(CONFIG, "w") as handle:  # in place, as an editor that keeps the inode does
        handle.write(text)


def main() -> None:
    global SVCTL, NETNS
    params = json.loads(sys.argv[1])
    user, password, scratch = params["user"], params["password"], params["scratch"]
    SVCTL, NETNS = params["svctl"], params["netns"]
    results: dict = {}
    privatize(scratch)
    results["account"] = make_account(user, password)
    log(f"account {user} uid {results['account']['uid']}")

    results["init"] = run([SVCTL, "init", "jupyterhub", "--ip", "::1", "--users", user,
                           "--jupyterhub", params["jupyterhub"]])
    log(f"init: {results['init']['stdout'].strip()} {results['init']['stderr'].strip()}")
    try:
        results["service_file"] = open("/etc/svctl/jupyterhub.toml").read()
    except OSError as exc:
        results["service_file"] = str(exc)
    results["service_start"] = run(["service", "jupyterhub", "start"])
    results["service_status"] = run(["service", "jupyterhub", "status"])
    results["rc_links"] = sorted(name for directory in ("/etc/rc2.d", "/etc/rc0.d") if os.path.isdir(directory)
                                 for name in os.listdir(directory) if "jupyterhub" in name)
    if results["service_start"]["code"] != 0:
        print(json.dumps(results))
        return
    log("hub started through `service jupyterhub start`")

    browser = Browser(os.path.join(scratch, "chromium-profile"))
    try:
        browser.open_page()
        browser.navigate(f"{BASE}/hub/login")
        wait_for(lambda: browser.location()[1] == "complete" and
                 browser.evaluate("!!document.getElementById('username_input')"), 30, "the login form")
        browser.evaluate(f"document.getElementById('username_input').value = {json.dumps(user)};"
                         f"document.getElementById('password_input').value = {json.dumps(password)}; true")
        browser.screenshot(params["form_screenshot"])
        logged_in = time.monotonic()
        browser.evaluate("document.getElementById('login_submit').click(); true")
        # JupyterLab is up when its shell has rendered the launcher (it builds the page in JS).
        wait_for(lambda: browser.location()[0].startswith(f"{BASE}/user/{user}/lab") and
                 browser.evaluate("!!document.querySelector('#jp-main-dock-panel .jp-Launcher')"), 120,
                 "JupyterLab's launcher", interval=0.5)
        results["login_to_lab_seconds"] = time.monotonic() - logged_in
        results["landed_url"] = browser.location()[0]
        results["title"] = browser.evaluate("document.title")
        results["lab_text"] = browser.evaluate("document.body.innerText")[:2000]
        browser.screenshot(params["screenshot"])
        log(f"JupyterLab at {results['landed_url']}")

        results["server_pids"], results["hub_pids"] = server_pids(), hub_pids()
        results["server_uids"] = [os.stat(f"/proc/{pid}").st_uid for pid in results["server_pids"]]
        status, kernel = browser.evaluate(KERNEL_JS % {"user": user}, await_promise=True)
        results["kernel_create"] = [status, kernel]
        results["answer"] = execute(browser, user, kernel)
        results["kernel_pids"] = kernel_pids()
        log(f"kernel {kernel}: 6*7 = {results['answer']}")

        # A valid edit: the hub restarts; the user's server and its kernel live on.
        cookies = cookie_header(browser, user)
        user_poll = Poller(f"{BASE}/user/{user}/api/kernels/{kernel}", cookies)
        hub_poll = Poller(f"{BASE}/hub/health")
        user_poll.start()
        hub_poll.start()
        time.sleep(0.5)
        good = open(CONFIG).read() + "\n# an operator's edit\nc.JupyterHub.shutdown_on_logout = False\n"
        edit(good)
        wait_for(lambda: hub_pids() not in ([], results["hub_pids"]), 60, "the hub restarted by the edit")
        wait_for(lambda: hub_poll.samples and hub_poll.samples[-1][1] == 200 and
                 user_poll.samples and user_poll.samples[-1][1] == 200, 60, "hub and user server answering")
        time.sleep(1)
        for poller in (user_poll, hub_poll):
            poller.done.set()
            poller.join()
        results["edit_hub_outage"], results["edit_user_outage"] = hub_poll.outage(), user_poll.outage()
        results["hub_pids_edited"] = hub_pids()
        results["server_pids_edited"], results["kernel_pids_edited"] = server_pids(), kernel_pids()
        results["answer_edited"] = execute(browser, user, kernel)
        log(f"edit applied: hub outage {results['edit_hub_outage']:.2f} s, user {results['edit_user_outage']:.2f} s")

        # The same bytes again, by the watcher and by reload: nothing restarts.
        edit(good)
        time.sleep(4)
        results["reload"] = run(["service", "jupyterhub", "reload"])
        results["hub_pids_same_bytes"] = hub_pids()

        # A syntax error: rejected, shown with its line, the hub untouched; then put back as it runs.
        edit(good + "c.JupyterHub.bind_url = (\n")
        results["status_rejected"] = wait_status("SyntaxError")
        results["hub_pids_rejected"] = hub_pids()
        edit(good)
        time.sleep(4)
        results["hub_pids_reverted"] = hub_pids()
        results["status_reverted"] = run([SVCTL, "status", "jupyterhub"])

        # A crash: SIGKILL; svctl brings a new hub, the user's server and kernel survive.
        killed = time.monotonic()
        os.kill(results["hub_pids_reverted"][0], signal.SIGKILL)
        wait_for(lambda: hub_pids() not in ([], results["hub_pids_reverted"]) and http(f"{BASE}/hub/health") == 200,
                 60, "a new healthy hub", interval=0.2)
        wait_for(lambda: http(f"{BASE}/user/{user}/api/kernels/{kernel}", cookies) == 200, 30,
                 "the user's kernel through the new proxy")
        results["kill_to_healthy_seconds"] = time.monotonic() - killed
        results["server_pids_killed"] = server_pids()
        results["answer_killed"] = execute(browser, user, kernel)
    finally:
        browser.close()

    results["service_stop"] = run(["service", "jupyterhub", "stop"])
    results["status_stopped"] = run(["service", "jupyterhub", "status"])
    # cleanup_servers = False: the user's server outlives `stop` (documented); end it by PID here.
    results["server_pids_stopped"] = server_pids()
    for pid in results["server_pids_stopped"] + kernel_pids():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for(lambda: not server_pids() and not kernel_pids(), 20, "the user's server to end")
    print(json.dumps(results))


def explain() -> None:
    """On a failure: what svctl and the hub said (the mount namespace, and these files, go away)."""
    shown = run([SVCTL, "status", "jupyterhub", "--lines", "5"]) if SVCTL else {"stdout": "", "stderr": ""}
    log(f"status: {shown['stdout']}{shown['stderr']}")
    for path in ("/var/log/svctl/jupyterhub.json", "/var/log/jupyterhub.log"):
        try:
            with open(path, errors="replace") as handle:
                log(f"--- {path} ---\n" + "".join(handle.readlines()[-25:]))
        except OSError as exc:
            log(f"--- {path}: {exc}")


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        explain()
        raise
