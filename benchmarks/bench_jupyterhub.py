"""JupyterHub under svctl: start, crash and reload to a healthy hub, next to the hub's own start time.

A real JupyterHub (the venv's) and configurable-http-proxy, set up by `svctl init jupyterhub --prefix
TMP --ip ::1 --auth dummy` on three free ports of 19500-19599, HTTPS on [::1]. "Healthy" is HTTP 200
from https://[::1]:PORT/hub/health (through the proxy; the self-signed certificate is not verified),
polled every 10 ms. Each trial, the two in alternating order:

- bare: `jupyterhub -f CONFIG` run directly, with the service file's environment and working
  directory (the state directory) → first 200; then SIGTERM → hub and its proxy gone (the proxy's
  PID comes from its PID file, and is signalled only if it is our descendant running
  configurable-http-proxy). This is the hub's own start time, the floor for everything else.
- svctl: `svctl start jupyterhub` wall (it returns once /hub/health is 200; checked again after);
  SIGKILL the hub (the service PID in RUN_DIR/jupyterhub/state.json) → 200 from a new hub PID
  (svctl stops the orphaned proxy first); an edit of the watched jupyterhub_config.py (a comment
  and a new `c.JupyterHub.template_vars`, atomically renamed into place) → `reload_applied` in the
  events file and 200; `svctl stop` wall (then no hub and no proxy left).

During the reload /hub/health is polled every 10 ms from the edit on: the hub's outage is the last 200
before the first failure → the first 200 after reload_applied (answer times), next to the bare stop and
bare start of the same run (issue 15: outage ≤ bare stop + bare start + 300 ms).

The reload's validation time comes from the events file (reload_requested → check_finished: the
`jupyterhub --show-config` check svctl runs), and

    overhead = (edit → healthy) − (median bare start of this run) − (this trial's validation)

is what svctl adds: noticing and debouncing the edit, stopping the old hub, and its readiness polling.
Skipped, with a note, when jupyterhub, configurable-http-proxy or node is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import tomllib
from datetime import datetime
from pathlib import Path

from harness import (
    REPO,
    SVCTL,
    VENV,
    alive,
    descendants,
    ignore_esrch,
    now_ns,
    quantile,
    read_pid,
    tmpdir,
)
from harness import run as run_cmd

PORT_RANGE = range(19500, 19600)
POLL = 0.01  # health and state.json poll interval (s)
_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


def missing() -> str | None:
    """None when a real hub can run here, else why not."""
    if not (VENV / "bin" / "jupyterhub").exists() and not shutil.which("jupyterhub"):
        return "jupyterhub is not installed (pip install jupyterhub jupyter_server)"
    proxy = REPO / ".npm-prefix" / "node_modules" / ".bin" / "configurable-http-proxy"
    if not shutil.which("configurable-http-proxy") and not os.access(proxy, os.X_OK):
        return "configurable-http-proxy is not installed (npm install configurable-http-proxy)"
    if not shutil.which("node"):
        return "node is not installed"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback: {exc}"
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            sock.bind(("::1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 3) -> list[int] | None:
    """`count` consecutive ports of PORT_RANGE that nobody listens on."""
    for base in range(PORT_RANGE.start, PORT_RANGE.stop - count + 1, count):
        ports = list(range(base, base + count))
        if all(_port_free(p) for p in ports):
            return ports
    return None


def health(port: int, timeout: float = 2.0) -> int | None:
    """HTTP status of GET https://[::1]:PORT/hub/health (a fresh connection), None if no answer."""
    conn = http.client.HTTPSConnection("::1", port, timeout=timeout, context=_TLS)
    try:
        conn.request("GET", "/hub/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ours(pid: int | None, mark: str) -> bool:
    """True if pid is alive, descends from the harness and its command line contains mark."""
    return bool(pid) and alive(pid) and mark in _cmdline(pid) and pid in descendants()


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


class Hub:
    """One `svctl init jupyterhub --prefix` tree, driven bare and through svctl."""

    def __init__(self, ports: list[int]) -> None:
        self.prefix = tmpdir("jupyterhub")
        self.port, self.hub_port, self.api_port = ports
        self.config_dir = self.prefix / "etc" / "svctl"
        self.run_dir = self.prefix / "run" / "svctl"
        self.config = self.prefix / "etc" / "jupyterhub" / "jupyterhub_config.py"
        self.state_dir = self.prefix / "srv" / "jupyterhub"
        self.proxy_pidfile = self.state_dir / "jupyterhub-proxy.pid"
        self.bare: subprocess.Popen | None = None
        self.service: dict = {}
        self.original = ""

    def init(self) -> str | None:
        _, rc, out = run_cmd(
            [SVCTL, "init", "jupyterhub", "--prefix", str(self.prefix), "--ip", "::1",
             "--port", str(self.port), "--hub-port", str(self.hub_port), "--api-port", str(self.api_port),
             "--auth", "dummy"],
            timeout=120,
        )  # fmt: skip
        if rc != 0:
            return f"svctl init jupyterhub exited {rc}: {out.strip()[-300:]}"
        with open(self.config_dir / "jupyterhub.toml", "rb") as handle:
            self.service = tomllib.load(handle)
        self.original = self.config.read_text()
        if "ConfigurableHTTPProxy.command" not in self.original:
            return "svctl init found no configurable-http-proxy"
        self.events = Path(self.service["events_file"])
        return None

    # ---- svctl

    def cmd(self, verb: str, *extra: str) -> list[str]:
        dirs = ["--config-dir", str(self.config_dir), "--run-dir", str(self.run_dir)]
        return [SVCTL, *dirs, verb, "jupyterhub", *extra]

    def state(self) -> dict:
        try:
            return json.loads((self.run_dir / "jupyterhub" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def service_pid(self) -> int | None:
        pid = (self.state().get("service") or {}).get("pid")
        return int(pid) if pid else None

    def healthy(self) -> bool:
        return health(self.port) == 200

    # ---- bare

    def environment(self) -> dict[str, str]:
        """What svctl gives the service (supervisor/unix/spawn.py), plus the service file's."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": os.environ.get("HOME", "/root")}  # fmt: skip
        env.update(self.service.get("environment") or {})
        return env

    def bare_start(self) -> float:
        """ms from Popen of `jupyterhub -f CONFIG` to the first 200."""
        log = open(self.prefix / "var" / "log" / "bare-jupyterhub.log", "ab")  # noqa: SIM115
        t0 = now_ns()
        # Our own process group, so Popen.wait (not the harness's reaper) reaps it.
        self.bare = subprocess.Popen(
            list(self.service["command"]),
            cwd=self.service["working_directory"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 90
        while True:
            if self.healthy():
                return (now_ns() - t0) / 1e6
            if self.bare.poll() is not None:
                code = self.bare.returncode
                raise RuntimeError(f"bare jupyterhub exited {code} before /hub/health answered 200")
            if time.monotonic() > deadline:
                raise TimeoutError("bare jupyterhub: no 200 from /hub/health within 90 s")
            time.sleep(POLL)

    def bare_stop(self) -> float:
        """ms from SIGTERM to the hub and its proxy gone."""
        assert self.bare is not None
        proxy = read_pid(self.proxy_pidfile)
        proxy = proxy if _ours(proxy, "configurable-http-proxy") else None
        t0 = now_ns()
        self.bare.send_signal(signal.SIGTERM)
        try:
            self.bare.wait(40)
        except subprocess.TimeoutExpired:
            self.bare.kill()
            self.bare.wait()
            raise RuntimeError("bare jupyterhub ignored SIGTERM for 40 s") from None
        deadline = time.monotonic() + 10
        while proxy and alive(proxy) and time.monotonic() < deadline:
            time.sleep(0.002)
        gone = (now_ns() - t0) / 1e6
        self.bare = None
        if proxy and alive(proxy):
            if _ours(proxy, "configurable-http-proxy"):
                ignore_esrch(os.kill, proxy, signal.SIGKILL)
            raise RuntimeError("the bare hub's proxy outlived it by 10 s")
        return gone

    # ---- cleanup (Context.cleanup_subjects; kill_tree finishes the rest)

    def kill_all(self) -> None:
        if self.bare is not None and self.bare.poll() is None:
            self.bare.kill()
            self.bare.wait()
        supervisor = (self.state().get("supervisor") or {}).get("pid")
        for pid, mark in ((supervisor, "svctl"), (self.service_pid(), "jupyterhub"),
                          (read_pid(self.proxy_pidfile), "configurable-http-proxy")):  # fmt: skip
            if _ours(pid, mark):
                ignore_esrch(os.kill, pid, signal.SIGKILL)


def trial_svctl(ctx, hub: Hub, i: int, out: dict) -> None:
    """start → kill → healthy again → edit → healthy → stop, through svctl."""
    # 1. start
    wall, rc, text = run_cmd(hub.cmd("start"), timeout=120)
    if rc != 0:
        raise RuntimeError(f"svctl start jupyterhub exited {rc}: {text.strip()[-300:]}")
    code = health(hub.port)
    if code != 200:
        ctx.note(f"jupyterhub: /hub/health answered {code} right after `svctl start` returned")
    else:
        ctx.record("jh_start", "svctl", [wall * 1000])
    out["start"] = wall * 1000
    time.sleep(0.5)

    # 2. SIGKILL the hub → 200 from a new hub
    old = hub.service_pid()
    old_proxy = read_pid(hub.proxy_pidfile)
    if not _ours(old, "jupyterhub"):
        raise RuntimeError(f"state.json names no running hub of ours (pid {old})")
    t0 = now_ns()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        pid = hub.service_pid()
        if pid and pid != old and hub.healthy():
            break
        if time.monotonic() > deadline:
            raise TimeoutError("no healthy new hub within 90 s of SIGKILL")
        time.sleep(POLL)
    out["kill"] = (now_ns() - t0) / 1e6
    ctx.record("jh_kill", "svctl", [out["kill"]])
    if old_proxy and alive(old_proxy) and "configurable-http-proxy" in _cmdline(old_proxy):
        ctx.note(f"jupyterhub: the orphaned proxy {old_proxy} survived the restart after SIGKILL")
    time.sleep(0.5)

    # 3. edit the watched config → reload_applied and 200
    before = hub.service_pid()
    offset = hub.events.stat().st_size if hub.events.exists() else 0
    tmp = hub.config.with_name(hub.config.name + ".bench-tmp")
    tmp.write_text(f'{hub.original}\n# svctl bench edit {i}\nc.JupyterHub.template_vars = {{"x": "{i}"}}\n')
    t0, wall0 = now_ns(), time.time()
    os.rename(tmp, hub.config)
    events: dict[str, dict] = {}
    buf = b""
    # /hub/health answers, for the hub's outage (issue 15): the last 200 before the first failure, and
    # the first 200 of the final healthy stretch (reset by any later failure)
    last_ok = first_fail = recovered = back = None
    deadline = time.monotonic() + 120
    while True:
        with open(hub.events, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        offset += len(chunk)
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            events.setdefault(event.get("event", ""), event)
        if "reload_refused" in events or "rolled_back" in events:
            why = events.get("reload_refused") or events["rolled_back"]
            raise RuntimeError(f"the edit was not applied: {why}")
        ok = hub.healthy()
        stamp = now_ns()
        if not ok:
            first_fail = first_fail or stamp
            recovered = None
        elif first_fail is None:
            last_ok = stamp
        elif recovered is None:
            recovered = stamp
        if ok and "reload_applied" in events:
            back = stamp
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"edit not applied within 120 s (events: {sorted(events)})")
        time.sleep(POLL)
    total = (back - t0) / 1e6
    out["reload_total"] = total
    ctx.record("jh_reload_total", "svctl", [total])
    if first_fail is not None and last_ok is not None and recovered is not None:
        out["outage"] = (recovered - last_ok) / 1e6
        ctx.record("jh_reload_outage", "svctl", [out["outage"]])
    else:
        ctx.note(f"jupyterhub: reload {i}: no /hub/health outage seen (a 200 before the edit: {last_ok is not None})")
    if hub.service_pid() == before:
        ctx.note("jupyterhub: reload_applied but the hub PID did not change")
    if "check_finished" in events and "reload_requested" in events:
        out["check"] = (_stamp(events["check_finished"]) - _stamp(events["reload_requested"])) * 1000
        ctx.record("jh_reload_check", "svctl", [out["check"]])
    if "config_changed" in events:
        out["noticed"] = (_stamp(events["config_changed"]) - wall0) * 1000
    time.sleep(0.5)

    # 4. stop
    wall, rc, text = run_cmd(hub.cmd("stop"), timeout=120)
    if rc != 0:
        raise RuntimeError(f"svctl stop jupyterhub exited {rc}: {text.strip()[-300:]}")
    ctx.record("jh_stop", "svctl", [wall * 1000])
    out["stop"] = wall * 1000
    left = [p for p in (hub.service_pid(), read_pid(hub.proxy_pidfile)) if p and alive(p)]
    left = [p for p in left if "jupyterhub" in _cmdline(p) or "configurable-http-proxy" in _cmdline(p)]
    if left:
        ctx.note(f"jupyterhub: after `svctl stop`, still running: {left}")


def trial_bare(ctx, hub: Hub, out: dict) -> None:
    out["bare_start"] = hub.bare_start()
    ctx.record("jh_start", "bare hub", [out["bare_start"]])
    time.sleep(0.5)
    out["bare_stop"] = hub.bare_stop()
    ctx.record("jh_stop", "bare hub", [out["bare_stop"]])


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("jupyterhub: skipped, svctl not measurable")
        return
    reason = missing()
    if reason:
        ctx.note(f"jupyterhub: skipped, {reason}")
        return
    ports = free_ports()
    if ports is None:
        ctx.note(f"jupyterhub: skipped, no 3 free ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
        return
    n = 1 if ctx.quick else 5
    hub = ctx.keep(Hub(ports))
    reason = hub.init()
    if reason:
        ctx.note(f"jupyterhub: skipped, {reason}")
        return
    # Warm the page cache (the hub's imports) with the service's own check command, untimed by the trials.
    wall, rc, text = run_cmd(list(hub.service["check"]), timeout=120, env=hub.environment())
    if rc != 0:
        ctx.note(f"jupyterhub: skipped, the config's check fails ({rc}): {text.strip()[-300:]}")
        return
    ctx.extra["jupyterhub"] = {"ports": ports, "check_direct_ms": wall * 1000, "trials": []}
    flip = random.random() < 0.5
    try:
        for i in range(n):
            # Alternate which goes first (random start), so neither always runs right after a pause.
            trial(ctx, hub, i, n, ["bare", "svctl"] if (i % 2 == 0) != flip else ["svctl", "bare"])
    finally:
        _overhead(ctx)


def trial(ctx, hub: Hub, i: int, n: int, order: list[str]) -> None:
    """One interleaved trial: the bare hub and the svctl sequence, in the given order."""
    for port in (hub.port, hub.hub_port, hub.api_port):
        if not _port_free(port):
            raise RuntimeError(f"port {port} is taken before trial {i + 1}")
    out: dict[str, float] = {"bare_first": float(order[0] == "bare")}
    ctx.extra["jupyterhub"]["trials"].append(out)
    try:
        for step in order:
            if step == "bare":
                trial_bare(ctx, hub, out)
            else:
                trial_svctl(ctx, hub, i + 1, out)
            time.sleep(0.5)
    finally:
        ctx.log(
            f"  jupyterhub {i + 1}/{n} ({' first, '.join(order)} second): "
            + ", ".join(f"{k} {v:.0f}" for k, v in out.items())
        )


def _overhead(ctx) -> None:
    # overhead = edit → healthy − bare start (median of this run) − this trial's validation
    bare = quantile(ctx.latency.get("jh_start", {}).get("bare hub", []), 0.5)
    for out in ctx.extra["jupyterhub"]["trials"]:
        if bare and "reload_total" in out and "check" in out:
            ctx.record("jh_reload", "svctl", [out["reload_total"] - bare - out["check"]])
    ctx.extra["jupyterhub"]["bare_start_median_ms"] = bare
