"""Config hot-reload with a real HTTP service on [::1]: watched edits, validation, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import time
import http.client
import urllib.request

import pytest

from conftest import IS_ROOT, PYTHON, REPO, free_port, poll_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: supervisors write PID files and signal as root")
SERVER = str(REPO / "tests" / "children" / "confserver.py")



def answer(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/", timeout=1) as response:
            return response.read().decode()
    except (OSError, http.client.HTTPException):  # (IncompleteRead: the server was restarting mid-answer)
        return None


class Hub:
    """A confserver under svctl, with its config file in a directory of its own."""

    def __init__(self, sandbox, config_path=None) -> None:
        self.box, self.port = sandbox, free_port()
        self.confdir = sandbox.base / "conf"
        self.confdir.mkdir(mode=0o755, exist_ok=True)
        self.conf = config_path or self.confdir / "server.json"
        sandbox.service("demo", command=[PYTHON, SERVER, str(self.port), str(self.conf)],
                        ready=f"http://[::1]:{self.port}/", ready_timeout=10, watch=[str(self.conf)],
                        check=[PYTHON, SERVER, "--check", str(self.conf)], check_timeout=10)

    def write(self, message: str, **extra) -> None:
        self.conf.write_text(json.dumps({"message": message, **extra}))

    def message(self) -> str | None:
        text = answer(self.port)
        return text.rsplit(" ", 1)[0] if text else None

    def pid(self) -> int | None:
        text = answer(self.port)
        return int(text.rsplit(" ", 1)[1]) if text else None

    def spawns(self) -> int:
        return len([e for e in self.box.events() if e["event"] == "spawned"])

    def wait_for(self, message: str, timeout: float = 10) -> None:
        poll_until(lambda: self.message() == message, timeout=timeout, what=f"serving {message!r}")


def settle(hub: Hub, seconds: float = 1.5) -> None:
    time.sleep(seconds)  # long enough for a debounced (0.2 s) second reload to have happened, if any


@pytest.mark.parametrize("edit", ["rename", "in_place", "sed", "symlink_swap"])
def test_each_kind_of_edit_is_applied_exactly_once(sandbox, edit):
    if edit == "symlink_swap":  # Kubernetes ConfigMap layout: server.json -> ..data/server.json
        confdir = sandbox.base / "conf"
        (confdir / "..ts1").mkdir(parents=True)
        (confdir / "..ts1" / "server.json").write_text(json.dumps({"message": "one"}))
        os.symlink("..ts1", confdir / "..data")
        os.symlink("..data/server.json", confdir / "server.json")
    hub = Hub(sandbox)
    if edit != "symlink_swap":
        hub.write("one")
    assert sandbox.cli("start", "demo").returncode == 0
    assert hub.message() == "one"
    before = hub.spawns()
    new = json.dumps({"message": "two"})
    if edit == "rename":
        (hub.confdir / ".server.json.tmp").write_text(new)
        os.replace(hub.confdir / ".server.json.tmp", hub.conf)
    elif edit == "in_place":
        with open(hub.conf, "r+") as handle:
            handle.truncate(0)
            handle.write(new)
    elif edit == "sed":
        subprocess.run(["sed", "-i", "s/one/two/", str(hub.conf)], check=True)
    else:
        (hub.confdir / "..ts2").mkdir()
        (hub.confdir / "..ts2" / "server.json").write_text(new)
        os.symlink("..ts2", hub.confdir / "..data_tmp")
        os.replace(hub.confdir / "..data_tmp", hub.confdir / "..data")
    hub.wait_for("two")
    settle(hub)
    assert hub.spawns() == before + 1, "applied exactly once"
    assert [e for e in sandbox.events() if e["event"] == "reload_applied"]
    assert sandbox.cli("stop", "demo").returncode == 0


def test_touch_and_identical_rewrite_trigger_nothing(sandbox):
    hub = Hub(sandbox)
    hub.write("same")
    assert sandbox.cli("start", "demo").returncode == 0
    pid = hub.pid()
    os.utime(hub.conf)
    hub.write("same")
    settle(hub)
    assert hub.pid() == pid and not [e for e in sandbox.events() if e["event"] == "reload_requested"]
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_hundred_writes_in_a_second_restart_at_most_twice_and_the_last_wins(sandbox):
    hub = Hub(sandbox)
    hub.write("v0")
    assert sandbox.cli("start", "demo").returncode == 0
    before = hub.spawns()
    for index in range(1, 101):
        hub.write(f"v{index}")
        time.sleep(0.01)
    hub.wait_for("v100")
    settle(hub, 2)
    assert hub.message() == "v100"
    assert hub.spawns() - before <= 2
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_syntax_error_is_rejected_and_the_old_process_keeps_serving(sandbox):
    hub = Hub(sandbox)
    hub.write("good")
    assert sandbox.cli("start", "demo").returncode == 0
    pid = hub.pid()
    hub.conf.write_text('{"message": "broken"')  # invalid JSON
    poll_until(lambda: sandbox.state()["machine"]["rejected"], what="rejection")
    assert hub.pid() == pid and hub.message() == "good"
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "config rejected: exit status 1: invalid config" in status.stdout
    refused = [e for e in sandbox.events() if e["event"] == "check_finished"][-1]
    assert "invalid config" in refused["output"]
    result = sandbox.cli("reload", "demo")  # the CLI reports the same verdict
    assert result.returncode == 6 and "config rejected" in result.stderr
    hub.write("fixed")  # a later valid edit clears it
    hub.wait_for("fixed")
    poll_until(lambda: sandbox.state()["machine"]["rejected"] is None, what="rejection cleared")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_a_config_that_validates_but_fails_at_start_is_rolled_back(sandbox):
    hub = Hub(sandbox)
    hub.write("good")
    assert sandbox.cli("start", "demo").returncode == 0
    hub.write("bad", fail=True)
    poll_until(lambda: sandbox.state()["machine"]["degraded_at"], timeout=15, what="rollback")
    hub.wait_for("good")
    assert json.loads(hub.conf.read_text())["message"] == "good", "the good file is back in place"
    status = sandbox.cli("status", "demo")
    assert status.returncode == 0 and "degraded: running last known good config from" in status.stdout
    assert [e for e in sandbox.events() if e["event"] == "rolled_back"]
    settle(hub)
    assert hub.message() == "good"  # the restore itself triggers no further reload
    hub.write("better")  # still watching: the next edit is applied and clears degraded
    hub.wait_for("better")
    poll_until(lambda: sandbox.state()["machine"]["degraded_at"] is None, what="degraded cleared")
    assert sandbox.cli("stop", "demo").returncode == 0


def test_cli_reload_reports_the_outcome(sandbox):
    hub = Hub(sandbox)
    hub.write("first")
    assert sandbox.cli("start", "demo").returncode == 0
    pid = hub.pid()
    unchanged = sandbox.cli("reload", "demo")  # logrotate's postrotate: the config is what runs
    assert unchanged.returncode == 0 and "unchanged" in unchanged.stdout
    assert hub.pid() == pid, "identical bytes restart nothing"
    hub.write("second")
    result = sandbox.cli("reload", "demo")
    assert result.returncode == 0 and "reloaded" in result.stdout
    assert hub.pid() != pid and hub.message() == "second"
    assert sandbox.cli("stop", "demo").returncode == 0
    assert sandbox.cli("reload", "demo").returncode == 7


def test_a_world_writable_watched_file_is_refused(sandbox):
    hub = Hub(sandbox)
    hub.write("safe")
    assert sandbox.cli("start", "demo").returncode == 0
    pid = hub.pid()
    os.chmod(hub.conf, 0o666)
    hub.write("unsafe")
    poll_until(lambda: sandbox.state()["machine"]["rejected"], what="refusal")
    assert "world-writable" in sandbox.state()["machine"]["rejected"][0]
    assert "chmod go-w" in sandbox.state()["machine"]["rejected"][0]
    assert hub.pid() == pid and hub.message() == "safe"
    assert sandbox.cli("stop", "demo").returncode == 0


# Reads its config at once (that is what it runs on), then takes a while to be "started"; exits 1
# at once on a config with "fail" set.
SLOW_STARTING_SERVICE = """\
import json, sys, time
config = json.load(open(sys.argv[1]))
if config.get("fail"):
    sys.exit(1)
print("running on", config["message"], flush=True)
while True:
    time.sleep(1000)
"""


@pytest.mark.parametrize("start", ["initial", "reload"])
def test_the_known_good_config_is_the_validated_one_not_an_edit_made_during_startup(sandbox, start):
    """Issue 10 item 7: a broken edit landing while the service starts must never become known good."""
    conf, script = sandbox.base / "app.json", sandbox.base / "slow_service.py"
    script.write_text(SLOW_STARTING_SERVICE)
    good = json.dumps({"message": "good"}).encode()
    conf.write_bytes(good if start == "initial" else json.dumps({"message": "older"}).encode())
    sandbox.service("demo", command=[PYTHON, str(script), str(conf)], start_seconds=1.5, watch=[str(conf)],
                    check=[PYTHON, SERVER, "--check", str(conf)], check_timeout=10)
    log = sandbox.log / "demo.log"
    started_on = lambda message: log.exists() and f"running on {message}" in log.read_text()  # noqa: E731
    if start == "initial":
        starting = subprocess.Popen([PYTHON, "-m", "supervisor", "--config-dir", str(sandbox.etc), "--run-dir",
                                     str(sandbox.run / "svctl"), "start", "demo"], cwd=REPO)
        poll_until(lambda: started_on("good"), what="the service reading its config")
    else:
        assert sandbox.cli("start", "demo").returncode == 0
        conf.write_bytes(good)  # passes the check, then the restart begins
        poll_until(lambda: started_on("good"), timeout=10, what="the restart on the checked config")
    conf.write_text('{"message": "broken"')  # e.g. an automation tool's second write, still starting
    if start == "initial":
        assert starting.wait(timeout=30) == 0
    poll_until(lambda: sandbox.state()["machine"]["rejected"], timeout=10, what="the broken edit rejected")
    pid = sandbox.service_pid()
    conf.write_text(json.dumps({"message": "bad", "fail": True}))  # valid, but the service won't start
    try:
        poll_until(lambda: [e for e in sandbox.events() if e["event"] == "rolled_back"], timeout=15, what="rollback")
    except AssertionError:
        pytest.fail(f"the rollback did not run the service; events: {[e['event'] for e in sandbox.events()]}")
    assert conf.read_bytes() == good, "the restored config is the validated one, not the broken edit"
    poll_until(lambda: sandbox.state()["machine"]["state"] == "running", what="state.json says running")
    assert sandbox.service_pid() not in (None, pid)
    assert sandbox.cli("status", "demo").returncode == 0
    assert sandbox.cli("stop", "demo").returncode == 0


def test_environment_values_stay_out_of_the_events_and_the_status_line(sandbox):
    """Issue 10 item 3: a check that prints its environment (JupyterHub --show-config) leaks nothing."""
    secret = "canary-3e1f0b2a9d"
    hub = Hub(sandbox)
    check = ("import json, os, sys\n"
             "for name, value in sorted(os.environ.items()): print(f'{name}={value}')\n"
             f"config = json.load(open({str(hub.conf)!r}))\n"
             "sys.exit(0 if config['message'] != 'bad' else 'error: bad config, secret ' + os.environ['HUB_SECRET'])")
    sandbox.service("demo", command=[PYTHON, SERVER, str(hub.port), str(hub.conf)], ready=f"http://[::1]:{hub.port}/",
                    ready_timeout=10, watch=[str(hub.conf)], check=[PYTHON, "-c", check], check_timeout=10,
                    environment={"HUB_SECRET": secret})
    hub.write("good")
    assert sandbox.cli("start", "demo").returncode == 0
    hub.write("bad")
    poll_until(lambda: sandbox.state()["machine"]["rejected"], what="rejection")
    status = sandbox.cli("status", "demo")
    assert "config rejected: exit status 1: error: bad config, secret ***" in status.stdout, status.stdout
    assert secret not in status.stdout and secret not in json.dumps(sandbox.state()["machine"])
    assert secret not in (sandbox.log / "demo.json").read_text()
    [finished] = [e for e in sandbox.events() if e["event"] == "check_finished" and not e["ok"]]
    assert "HUB_SECRET=***" in finished["output"] and len(finished["output"].splitlines()) <= 20
    assert sandbox.cli("stop", "demo").returncode == 0
