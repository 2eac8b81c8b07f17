"""Liveness with real processes: a hung HTTP service (SIGSTOP) is restarted, a healthy one never."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import IS_ROOT, PYTHON, alive, free_port, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")

INTERVAL, FAILURES, TIMEOUT = 0.5, 2, 0.5
SCHEDULE = "TERM/1/KILL/1"
SCHEDULE_SECONDS = 2.0
SLACK = 1.5  # the new python's start, the loop, a loaded CI machine

SERVER = """\
import http.server, signal, socket, sys

class Server(http.server.HTTPServer):
    address_family = socket.AF_INET6

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if len(sys.argv) > 2 and self.path != sys.argv[2]:  # a token in the query, say
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # pending while stopped: the schedule's KILL ends it
Server(("::1", int(sys.argv[1])), Handler).serve_forever()
"""


def http_service(sandbox, target: str = "/") -> None:
    """TARGET: the one path (and query) the server answers 200 to."""
    script = sandbox.base / "server.py"
    script.write_text(SERVER)
    port = free_port()
    url = f"http://[::1]:{port}{target}"
    sandbox.service("demo", command=[PYTHON, str(script), str(port), target], ready=url, ready_timeout=10, health=url,
                    health_interval=INTERVAL, health_failures=FAILURES, health_timeout=TIMEOUT, stop=SCHEDULE,
                    restart="always", min_uptime=0.5)


def health(sandbox) -> dict:
    return (sandbox.state().get("machine") or {}).get("health") or {}


def test_a_hung_service_is_restarted_with_its_stop_schedule(sandbox):
    http_service(sandbox)
    assert sandbox.cli("start", "demo").returncode == 0
    poll_until(lambda: health(sandbox).get("state") == "passing", timeout=3, what="a passing probe")
    old = sandbox.service_pid()
    os.kill(old, signal.SIGSTOP)
    stopped_at = time.monotonic()
    # the first failure shows in state.json while the second is still to come
    failing = poll_until(lambda: health(sandbox).get("failures", 0) >= 1 and health(sandbox), timeout=3,
                         what="a failure in state.json")
    assert failing["state"] == "failing" and failing["last_failure"]
    assert time.time() - 5 < failing["last_failure_at"] <= time.time()  # wall clock, not monotonic
    budget = INTERVAL * FAILURES + TIMEOUT + SCHEDULE_SECONDS + SLACK
    new = poll_until(lambda: sandbox.service_pid() not in (None, old) and sandbox.service_pid(),
                     timeout=budget, what="a new service PID")
    took = time.monotonic() - stopped_at
    assert took < budget, took
    poll_until(lambda: not alive(old), timeout=2, what="the hung process gone")
    poll_until(lambda: sandbox.state()["machine"]["state"] == "running", timeout=5, what="running again")
    record = health(sandbox)
    assert record["restarts"] == 1 and record["last_failure"] and record["last_failure_at"] is not None
    restarts = [e for e in sandbox.events() if e["event"] == "health_restart"]
    assert len(restarts) == 1 and restarts[0]["failures"] == FAILURES and restarts[0]["reason"]
    failed = [e for e in sandbox.events() if e["event"] == "health_failed"]
    assert [e["failures"] for e in failed] == [1, 2]
    stopping = [e for e in sandbox.events() if e["event"] == "stopping"]
    assert stopping[-1]["purpose"] == "health" and stopping[-1]["schedule"] == SCHEDULE
    assert sandbox.state()["machine"]["restarts"] == 1  # a restart, the supervisor stayed
    poll_until(lambda: health(sandbox).get("state") == "passing", timeout=3, what="the new one passing")
    assert sandbox.service_pid() == new
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and record["last_failure"] in status.stdout, status.stdout
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_healthy_service_is_never_restarted(sandbox):
    http_service(sandbox)
    assert sandbox.cli("start", "demo").returncode == 0
    pid = sandbox.service_pid()
    time.sleep(INTERVAL * 7)
    record = health(sandbox)
    assert record == {"state": "passing", "failures": 0, "last_failure": None, "last_failure_at": None,
                      "restarts": 0}
    assert sandbox.service_pid() == pid and sandbox.state()["machine"]["restarts"] == 0
    events = [e["event"] for e in sandbox.events()]
    assert "health_failed" not in events and "health_restart" not in events
    assert sandbox.cli("stop", "demo").returncode == 0


def test_the_query_string_is_part_of_what_is_probed(sandbox):
    """http://host/health?token=abc is GET /health?token=abc: a service that wants its token
    passes (and is not restarted forever)."""
    http_service(sandbox, "/health?token=abc")
    result = sandbox.cli("start", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    pid = sandbox.service_pid()
    poll_until(lambda: health(sandbox).get("state") == "passing", timeout=3, what="a passing probe")
    time.sleep(INTERVAL * (FAILURES + 2))
    assert health(sandbox)["failures"] == 0 and health(sandbox)["restarts"] == 0
    assert sandbox.service_pid() == pid
    assert sandbox.cli("stop", "demo").returncode == 0
