"""Helpers shared by the JupyterHub end-to-end tests: an IPv4-less network namespace, HTTP requests
made from inside it, process lookups by program name, and svctl command lines for a --prefix install.

Every process a test starts runs inside its namespace, so ``Namespace.destroy`` (which kills every
PID ``ip netns pids`` lists) is a complete cleanup that never touches anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from supervisor.jupyterhub.scaffold import find_jupyterhub, find_proxy

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"

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

# Runs inside the namespace: METHOD URL [TOKEN] [JSON BODY] -> {"status": N, "body": parsed JSON or text}.
REQUEST = """
import json, ssl, sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
headers = {"Authorization": "token " + token} if token else {}
if data is not None:
    headers["Content-Type"] = "application/json"
request = urllib.request.Request(url, data=data, method=method, headers=headers)
try:
    response = urllib.request.urlopen(request, context=ssl._create_unverified_context(), timeout=20)
    status, body = response.status, response.read()
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read()
except Exception as exc:
    status, body = 0, repr(exc).encode()
try:
    body = json.loads(body)
except ValueError:
    body = body.decode(errors="replace")
print(json.dumps({"status": status, "body": body}))
"""


def missing() -> str | None:
    """Why the JupyterHub e2e tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespace)"
    for tool in ("ip", "unshare"):
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

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, check=check, timeout=timeout)

    def pids(self) -> list[int]:
        result = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(word) for word in result.stdout.split()]

    def get(self, url: str, token: str | None = None) -> int:
        result = self.run(sys.executable, "-c", GET, url, *([token] if token else []), timeout=30)
        return int(result.stdout.strip() or 0)

    def request(self, method: str, url: str, token: str | None = None, body: object = None) -> dict:
        argv = [sys.executable, "-c", REQUEST, method, url, token or ""]
        if body is not None:
            argv.append(json.dumps(body))
        result = self.run(*argv, timeout=60)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return {"status": 0, "body": result.stdout + result.stderr}

    def destroy(self) -> None:
        for pid in self.pids():  # only processes this test started live in its namespace
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def processes(pids: list[int], word: str, exact: bool = False) -> list[int]:
    """PIDs whose program (one of the first three argv words, by base name) is or contains WORD.

    ``exact`` tells ``jupyterhub`` (the hub) from ``jupyterhub-singleuser`` (a user server).
    """
    found = []
    for pid in pids:
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        names = [os.path.basename(part) for part in argv[:3]]
        if any(name == word if exact else word in name for name in names):
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


def svctl(prefix: Path) -> list[str]:
    """The svctl command line for an ``init --prefix PREFIX`` install."""
    return [sys.executable, "-m", "supervisor", "--config-dir", str(prefix / "etc/svctl"),
            "--run-dir", str(prefix / "run/svctl")]


def events(prefix: Path, service: str) -> list[dict]:
    """The supervisor's event log of SERVICE (init --prefix writes events_file there)."""
    try:
        lines = (prefix / "var/log/svctl" / f"{service}.json").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found
