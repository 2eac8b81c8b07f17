"""A JupyterHub config reload as a user sees it, with the hub-managed and the external proxy (issue 11).

Two trees from `svctl init jupyterhub --prefix TMP --ip ::1 --auth dummy --users alice`, one with the
default `--proxy hub` (the hub starts configurable-http-proxy and stops it when it exits) and one with
`--proxy external` (the proxy is the `jupyterhub-proxy` service, started first). Each tree gets three
free consecutive ports of 19700-19799 (bench_jupyterhub uses 19500-19599, the e2e tests 192xx and
194xx), HTTPS on [::1] only. Appended to each generated config: a JupyterHub service "bench" with a
random API token and a role granting it admin:users, admin:servers (which includes the server state,
so the user server's PID) and access:servers; and `c.JupyterHub.cleanup_servers = False`, set here
explicitly whatever init writes for the dummy authenticator (the `make run` trial may keep True): this
bench measures the configuration a production hub runs with, where a hub restart leaves user
servers running.

A trial, for one mode: start the service(s) (external: jupyterhub-proxy, then jupyterhub); start
alice's server (POST /hub/api/users/alice/server); wait for 200 from
GET https://[::1]:PORT/user/alice/api/status with `Authorization: token TOKEN` (through the proxy);
then a thread GETs that URL every 10 ms (a new connection each time, 2 s timeout) while the watched
jupyterhub_config.py is edited (a comment and a new `c.JupyterHub.template_vars`, atomically renamed
into place, as bench_jupyterhub does), until `reload_applied` is in the hub's events file, the new
hub's /hub/health and alice's URL answer 200, plus 1 s. Recorded per trial:

- user outage: from sending the first failed request (any answer but 200, or none) to the answer of
  the first 200 after the last failure; 0 when no request failed;
- failed requests, and requests sent;
- whether alice's server kept its PID (the API's server state and a scan of our descendants agree,
  before and after); it must: the new hub re-adopts it from its database;
- the hub's own restart, edit → reload_applied and /hub/health 200, and its outage, first failed
  /hub/health → 200 again (polled every 10 ms by the main thread), and the same from the last 200
  before it (issue 15's "last 200 before → first 200 after"), for comparison; and, in the raw
  data only, the reload's validation (reload_requested → check_finished in the events file).

The poll is load: on 2 cores, the requests (TLS handshake, proxy, user server) slow the check and
the new hub's start, so the hub restart here is longer than bench_jupyterhub's unpolled
"config edit → reload_applied and 200" of the same run; compare the two modes with each other.

Then alice's server is stopped (DELETE /hub/api/users/alice/server, before the hub: it survives the
hub's stop because of cleanup_servers = False), the services are stopped with `svctl stop`, and
whatever is left of ours (user server, hub, proxy, supervisors, each by PID, after checking it
descends from the harness and runs the expected program) is SIGKILLed in a finally.
Trials: 3 per mode (--quick: 1), the two modes interleaved in alternating order (random start).
Skipped, with a note, when jupyterhub, configurable-http-proxy or node is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import signal
import threading
import time
import tomllib
from pathlib import Path

from bench_jupyterhub import _TLS, POLL, _cmdline, _ours, _port_free, _stamp, health, missing
from harness import SVCTL, alive, descendants, ignore_esrch, now_ns, read_pid, tmpdir
from harness import run as run_cmd

PORT_RANGE = range(19700, 19800)
MODES = {"hub-managed proxy": "hub", "external proxy": "external"}  # subject -> --proxy
USER = "alice"
SERVICE = "bench"
SCOPES = ["admin:users", "admin:servers", "access:servers"]
USER_TIMEOUT = 2.0  # per user request: a hung request counts as one failure
SETTLE = 1.0  # s of polling after the reload is applied and the user has 200 again
SERVER_MARK = "jupyterhub-singleuser"


def free_ports(count: int) -> list[int] | None:
    for base in range(PORT_RANGE.start, PORT_RANGE.stop - count + 1, count):
        ports = list(range(base, base + count))
        if all(_port_free(p) for p in ports):
            return ports
    return None


def call(port: int, method: str, path: str, token: str, timeout: float = 10.0) -> tuple[int | None, bytes]:
    """(status, body) of one HTTPS request to [::1]:PORT with the token, a new connection."""
    conn = http.client.HTTPSConnection("::1", port, timeout=timeout, context=_TLS)
    try:
        conn.request(method, path, headers={"Authorization": f"token {token}"})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


class Tree:
    """One `svctl init jupyterhub --prefix` tree in one proxy mode, and what it started."""

    def __init__(self, subject: str, ports: list[int], token: str) -> None:
        self.subject, self.mode = subject, MODES[subject]
        self.port, self.hub_port, self.api_port = ports
        self.token = token
        self.prefix = tmpdir(f"disruption-{self.mode}")
        self.config_dir = self.prefix / "etc" / "svctl"
        self.run_dir = self.prefix / "run" / "svctl"
        self.config = self.prefix / "etc" / "jupyterhub" / "jupyterhub_config.py"
        self.proxy_pidfile = self.prefix / "srv" / "jupyterhub" / "jupyterhub-proxy.pid"
        self.services = ["jupyterhub-proxy", "jupyterhub"] if self.mode == "external" else ["jupyterhub"]
        self.user_pids: set[int] = set()  # every user server PID seen, for the cleanup
        self.original = ""

    def init(self) -> str | None:
        _, rc, out = run_cmd(
            [SVCTL, "init", "jupyterhub", "--prefix", str(self.prefix), "--ip", "::1",
             "--port", str(self.port), "--hub-port", str(self.hub_port), "--api-port", str(self.api_port),
             "--auth", "dummy", "--users", USER, "--proxy", self.mode, "--no-hints"],
            timeout=120,
        )  # fmt: skip
        if rc != 0:
            return f"svctl init jupyterhub --proxy {self.mode} exited {rc}: {out.strip()[-300:]}"
        with open(self.config_dir / "jupyterhub.toml", "rb") as handle:
            self.service = tomllib.load(handle)
        self.events = Path(self.service["events_file"])
        service = {"name": SERVICE, "api_token": self.token}
        role = {"name": SERVICE, "services": [SERVICE], "scopes": SCOPES}
        self.original = (
            f"{self.config.read_text()}\n# svctl bench_disruption: a service that drives alice's server, and"
            f" user servers that outlive the hub\nc.JupyterHub.services = [{service!r}]\n"
            f"c.JupyterHub.load_roles = [{role!r}]\nc.JupyterHub.cleanup_servers = False\n"
        )
        self.config.write_text(self.original)  # no service runs yet: nothing reloads
        return None

    def environment(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": os.environ.get("HOME", "/root")}  # fmt: skip
        env.update(self.service.get("environment") or {})
        return env

    # ---- svctl

    def svctl(self, verb: str, service: str) -> None:
        dirs = ["--config-dir", str(self.config_dir), "--run-dir", str(self.run_dir)]
        _, rc, text = run_cmd([SVCTL, *dirs, verb, service], timeout=120)
        if rc != 0:
            raise RuntimeError(f"{self.mode}: svctl {verb} {service} exited {rc}: {text.strip()[-300:]}")

    def pid(self, service: str, role: str = "service") -> int | None:
        try:
            state = json.loads((self.run_dir / service / "state.json").read_text())
        except (OSError, ValueError):
            return None
        pid = (state.get(role) or {}).get("pid")
        return int(pid) if pid else None

    def start(self) -> None:
        for service in self.services:
            self.svctl("start", service)
        if health(self.port) != 200:
            raise RuntimeError(f"{self.mode}: /hub/health is not 200 after `svctl start`")

    def stop(self) -> None:
        for service in reversed(self.services):
            self.svctl("stop", service)

    # ---- the user's server

    def user_status(self, timeout: float = USER_TIMEOUT) -> int | None:
        return call(self.port, "GET", f"/user/{USER}/api/status", self.token, timeout)[0]

    def user_server_pid(self) -> int | None:
        """The PID in the hub's server state, if a jupyterhub-singleuser of ours runs under it."""
        status, body = call(self.port, "GET", f"/hub/api/users/{USER}", self.token)
        if status != 200:
            return None
        try:
            pid = json.loads(body)["servers"][""]["state"]["pid"]
        except (ValueError, KeyError, TypeError):
            return None
        if pid:
            self.user_pids.add(int(pid))
        return int(pid) if pid and _ours(int(pid), SERVER_MARK) else None

    def scan_user_servers(self) -> list[int]:
        found = [p for p in descendants() if alive(p) and SERVER_MARK in _cmdline(p)]
        self.user_pids.update(found)
        return found

    def spawn_user(self) -> int:
        status, body = call(self.port, "POST", f"/hub/api/users/{USER}/server", self.token)
        if status not in (201, 202):
            why = f"POST /hub/api/users/{USER}/server answered {status}: {body[:200]!r}"
            raise RuntimeError(f"{self.mode}: {why}")
        deadline = time.monotonic() + 90
        while self.user_status() != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.mode}: {USER}'s server not answering 200 within 90 s")
            time.sleep(0.1)
        pid = self.user_server_pid()
        if pid is None or self.scan_user_servers() != [pid]:
            running = self.scan_user_servers()
            raise RuntimeError(f"{self.mode}: {USER}'s server PID: API {pid}, running {running}")
        return pid

    def stop_user(self) -> None:
        """DELETE the server through the API; SIGKILL by PID whatever is still ours 30 s later."""
        if health(self.port) == 200:
            call(self.port, "DELETE", f"/hub/api/users/{USER}/server", self.token)
        self.scan_user_servers()
        deadline = time.monotonic() + 30
        while any(_ours(p, SERVER_MARK) for p in self.user_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.user_pids:
            if _ours(pid, SERVER_MARK):
                ignore_esrch(os.kill, pid, signal.SIGKILL)

    def edit(self, i: int) -> None:
        tmp = self.config.with_name(self.config.name + ".bench-tmp")
        edit = f'# svctl bench edit {i}\nc.JupyterHub.template_vars = {{"x": "{i}"}}\n'
        tmp.write_text(f"{self.original}\n{edit}")
        os.rename(tmp, self.config)

    # ---- cleanup (Context.cleanup_subjects; kill_tree finishes the rest)

    def kill_all(self) -> None:
        self.scan_user_servers()
        marks = [(pid, SERVER_MARK) for pid in self.user_pids]
        programs = {"jupyterhub": "jupyterhub", "jupyterhub-proxy": "configurable-http-proxy"}
        for service in self.services:
            marks += [(self.pid(service, "supervisor"), "svctl"), (self.pid(service), programs[service])]
        marks.append((read_pid(self.proxy_pidfile), "configurable-http-proxy"))  # the hub's own proxy
        for pid, mark in marks:
            if _ours(pid, mark):
                ignore_esrch(os.kill, pid, signal.SIGKILL)


class UserPoller(threading.Thread):
    """GET the user's URL every POLL s; keep (sent ns, answered ns, status) of each request."""

    def __init__(self, tree: Tree) -> None:
        super().__init__(name="user-poller", daemon=True)
        self.tree = tree
        self.samples: list[tuple[int, int, int | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            sent = now_ns()
            status = self.tree.user_status()
            self.samples.append((sent, now_ns(), status))
            self.stopping.wait(POLL)

    def last_ok(self) -> bool:
        return bool(self.samples) and self.samples[-1][2] == 200


class EventTail:
    """The first event of each name appended to an events file since construction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.buf = b""
        self.seen: dict[str, dict] = {}

    def read(self) -> dict[str, dict]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.seen.setdefault(event.get("event", ""), event)
        return self.seen


def outage(samples: list[tuple[int, int, int | None]]) -> tuple[float, int]:
    """(ms from the first failed request sent to the first 200 answered after the last one, failures)."""
    failed = [i for i, (_, _, status) in enumerate(samples) if status != 200]
    if not failed:
        return 0.0, 0
    after = [answered for sent, answered, status in samples[failed[-1] + 1 :] if status == 200]
    if not after:
        raise RuntimeError("the user's server never answered 200 again")
    return (after[0] - samples[failed[0]][0]) / 1e6, len(failed)


def reload_as_user(tree: Tree, i: int, out: dict) -> None:
    """Edit the config under a 10 ms poll of the user's URL; fill out with the trial's figures."""
    tail = EventTail(tree.events)
    poller = UserPoller(tree)
    poller.start()
    try:
        time.sleep(0.2)  # a few requests before the edit: the server answers, the poll runs
        t_edit = now_ns()
        tree.edit(i)
        hub_fail = hub_back = hub_last_ok = hub_recovered = None
        deadline = time.monotonic() + 120
        while True:
            events = tail.read()
            if "reload_refused" in events or "rolled_back" in events:
                why = events.get("reload_refused") or events["rolled_back"]
                raise RuntimeError(f"{tree.mode}: the edit was not applied: {why}")
            code = health(tree.port)
            if code != 200 and hub_fail is None:
                hub_fail = now_ns()
            elif code == 200 and hub_fail is None:
                hub_last_ok = now_ns()
            if code != 200:
                hub_recovered = None
            elif hub_fail is not None and hub_recovered is None:
                hub_recovered = now_ns()  # the first 200 of the final healthy stretch
            if code == 200 and "reload_applied" in events:
                hub_back = now_ns()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tree.mode}: edit not applied within 120 s (events: {sorted(events)})")
            time.sleep(POLL)
        out["hub_restart"] = (hub_back - t_edit) / 1e6
        if "check_finished" in events and "reload_requested" in events:  # the old hub still serves
            out["check"] = (_stamp(events["check_finished"]) - _stamp(events["reload_requested"])) * 1000
        if hub_fail is not None:
            out["hub_down"] = (hub_back - hub_fail) / 1e6
            if hub_last_ok is not None:  # issue 15's definition: last 200 before → first 200 after
                out["hub_gap"] = (hub_recovered - hub_last_ok) / 1e6
        while not poller.last_ok():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tree.mode}: {USER}'s server not answering 200 within 120 s of the edit")
            time.sleep(POLL)
        time.sleep(SETTLE)
        while not poller.last_ok() and time.monotonic() < deadline:
            time.sleep(POLL)  # a failure in the settling second: wait for the next 200
    finally:
        poller.stopping.set()
        poller.join(USER_TIMEOUT + 5)
    samples = [s for s in poller.samples if s[0] >= t_edit]  # the requests made after the edit
    out["outage"], out["failed"] = outage(samples)
    out["requests"] = len(samples)


def trial(ctx, tree: Tree, i: int, out: dict) -> None:
    """start → user server → edit under the user's poll → user server and hub stopped."""
    for port in (tree.port, tree.hub_port, tree.api_port):
        if not _port_free(port):
            raise RuntimeError(f"{tree.mode}: port {port} is taken before trial {i}")
    try:
        tree.start()
        before = tree.spawn_user()
        hub = tree.pid("jupyterhub")
        reload_as_user(tree, i, out)
        after = tree.user_server_pid()
        out["pid_kept"] = after == before and tree.scan_user_servers() == [before]
        if not out["pid_kept"]:
            ctx.note(f"disruption, {tree.subject}: {USER}'s server was {before}, now {after}")
        if tree.pid("jupyterhub") == hub:
            ctx.note(f"disruption, {tree.subject}: reload_applied but the hub PID did not change")
    finally:
        try:
            tree.stop_user()  # before the hub stops: the server outlives it (cleanup_servers = False)
            tree.stop()
        finally:
            tree.kill_all()


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("disruption: skipped, svctl not measurable")
        return
    reason = missing()
    if reason:
        ctx.note(f"disruption: skipped, {reason}")
        return
    ports = free_ports(3 * len(MODES))
    if ports is None:
        span = f"{PORT_RANGE.start}-{PORT_RANGE.stop - 1}"
        ctx.note(f"disruption: skipped, no {3 * len(MODES)} free ports in {span}")
        return
    token = secrets.token_hex(32)
    trees = [ctx.keep(Tree(subject, ports[3 * k : 3 * k + 3], token)) for k, subject in enumerate(MODES)]
    for tree in trees:
        reason = tree.init()
        if reason:
            ctx.note(f"disruption: skipped, {reason}")
            return
        # Warm the page cache (the hub's imports) with the service's own check, untimed.
        _, rc, text = run_cmd(list(tree.service["check"]), timeout=120, env=tree.environment())
        if rc != 0:
            why = f"the {tree.mode} config's check fails ({rc}): {text.strip()[-300:]}"
            ctx.note(f"disruption: skipped, {why}")
            return
    n = 1 if ctx.quick else 3
    trials: list[dict] = []
    ctx.extra["disruption"] = {"ports": ports, "user": USER, "trials": trials}
    flip = random.random() < 0.5
    for i in range(n):
        order = trees if (i % 2 == 0) != flip else trees[::-1]
        for tree in order:
            out: dict = {"subject": tree.subject, "trial": i + 1}
            trials.append(out)
            try:
                trial(ctx, tree, i + 1, out)
            finally:
                ctx.log(f"  disruption {i + 1}/{n} {tree.subject}: "
                        + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in out.items() if k not in ("subject", "trial")))  # fmt: skip
            ctx.record("jh_user_outage", tree.subject, [out["outage"]])
            ctx.record("jh_user_hub_restart", tree.subject, [out["hub_restart"]])
            if "hub_down" in out:
                ctx.record("jh_user_hub_down", tree.subject, [out["hub_down"]])
            if "hub_gap" in out:
                ctx.record("jh_user_hub_gap", tree.subject, [out["hub_gap"]])
            time.sleep(0.5)
