"""Headless Chromium (Debian's ``chromium``) driven through the DevTools protocol over
--remote-debugging-pipe: no extra package, no port, no downloaded browser build.

Used by the seed scenario (seed_scenario.py) inside the test's network and mount namespaces.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import subprocess
import time

CHROMIUM = "/usr/bin/chromium"


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
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
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
