"""One cell of the real-boot matrix: a Debian release booted with one init system.

    install   apt-get install ./svctl.deb (with its dependencies) inside the root, two services
              defined and registered (`svctl install NAME`, plus --systemd and `systemctl enable`)
    boot      both services up (`service NAME status` 0, rb-web answering on [::1]:8181 inside)
    shutdown  each service's SIGTERM from its own supervisor (sender PID recorded by the service
              against /run/NAME.pid), rb-stubborn's SIGKILL ~2 s later by its stop schedule, and
              the container gone cleanly within the bound
    removed   `apt-get remove svctl`, boot again: no failed unit, no shim errors, status not 0
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rb_machine import Container, HarnessError, run_in_root
from rb_roots import POLICY_RC_D, Workspace, dpkg_versions, write

SERVICE_PROGRAM = Path(__file__).with_name("rb_service.py")
IN_ROOT_PROGRAM = "/usr/local/lib/realboot/rb_service.py"
WEB, STUBBORN = "rb-web", "rb-stubborn"
WEB_PORT = 8181
SERVICES = {
    WEB: {"stop": "TERM/10/KILL/5", "args": ["--port", str(WEB_PORT)],
          "extra": f'ready = "http://[::1]:{WEB_PORT}/"\nready_timeout = 30\n'},
    STUBBORN: {"stop": "TERM/2/KILL/2", "args": ["--ignore-term"], "extra": "start_seconds = 1\n"},
}
KILL_AFTER = 2.0  # the TERM/2/KILL/2 schedule's wait
# Past systemd's default start limit (5 starts in 10 s) for a unit restarting every second.
SETTLE_SECONDS = 8.0
VERSIONS = ["svctl", "python3", "python3-daemon", "python3-lockfile", "python3-psutil",
            "python3-structlog", "python3-watchdog", "python3-cryptography", "systemd", "sysvinit-core"]
HTTP_GET = ("import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen('http://[::1]:{WEB_PORT}/', timeout=5).read().decode())")
SHIM_WORDS = ("error", "fail", "not found", "no such file", "traceback", "cannot", "denied")


@dataclass
class Check:
    stage: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Case:
    release: str
    init: str
    deb: Path
    logs: Path
    shutdown_bound: float = 60
    boot_timeout: float = 90
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    workspace: Workspace | None = None

    @property
    def label(self) -> str:
        return f"{self.release}-{self.init}"

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def stage_ok(self, stage: str) -> bool | None:
        mine = [check for check in self.checks if check.stage == stage]
        return None if not mine else all(check.ok for check in mine)

    def check(self, stage: str, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(stage, name, bool(ok), detail))
        self.note(f"{'ok' if ok else 'FAILED'}: [{stage}] {name}" + (f"\n{detail}" if detail and not ok else ""))
        return bool(ok)

    def note(self, text: str) -> None:
        with open(self.logs / "steps.log", "a") as log:
            log.write(text.rstrip() + "\n")

    # ---- the stages --------------------------------------------------------------------------------

    def run(self, roots, keep: bool) -> None:
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        workspace = self.workspace = Workspace(roots, self.release, self.init)
        cache = f"{roots.apt_cache(self.release)}:/var/cache/apt/archives"
        try:
            with workspace:
                self.root = workspace.root
                # The removal boot runs even when the first boot failed: it tells something else.
                if self.install(cache):
                    self.boot("installed")
                    if self.remove():
                        self.boot("removed")
                for problem in workspace.unmount():
                    self.check("cleanup", problem, False)
        except HarnessError as exc:
            self.check("harness", str(exc).splitlines()[0], False, str(exc))
        finally:
            if not self.failed and not keep:
                workspace.discard()
            else:
                self.note(f"root kept (unmounted): {workspace.directory}/upper on {workspace.lower}")

    def in_root(self, stage: str, name: str, script: str, network: bool = False, cache: str = "") -> bool:
        result = run_in_root(self.root, f"rb-{self.label}", script, network=network,
                             binds=(cache,) if cache else ())
        self.note(f"$ {script.strip()}\n{result.out.rstrip()}\n(exit {result.code}, {result.seconds:.1f} s)")
        return self.check(stage, name, result.ok, result.tail())

    def install(self, cache: str) -> bool:
        write(self.root / "root/realboot/svctl.deb", "")
        shutil.copyfile(self.deb, self.root / "root/realboot/svctl.deb")
        write(self.root / IN_ROOT_PROGRAM.lstrip("/"), SERVICE_PROGRAM.read_text(), 0o755)
        (self.root / "var/lib/realboot").mkdir(parents=True, exist_ok=True)
        for name, spec in SERVICES.items():
            write(self.root / f"etc/svctl/{name}.toml", service_file(name, spec))
        write(self.root / "usr/sbin/policy-rc.d", POLICY_RC_D, 0o755)
        started = time.monotonic()
        if not self.in_root("install", "apt-get install ./svctl.deb pulls its dependencies",
                            "apt-get -q update\napt-get -q -y install /root/realboot/svctl.deb\n"
                            "rm -f /usr/sbin/policy-rc.d\nsvctl --version", network=True, cache=cache):
            return False
        self.timings["install"] = time.monotonic() - started
        self.versions = dpkg_versions(self.root, VERSIONS)
        self.note(f"versions: {json.dumps(self.versions)}")
        for name in SERVICES:
            if not self.in_root("install", f"svctl check {name}", f"svctl check {name}"):
                return False
            if self.init == "systemd":
                script = f"svctl install {name} --systemd\nsystemctl enable {name}.service"
            else:
                script = f"svctl install {name}"
            if not self.in_root("install", f"svctl install {name} ({self.init})", script):
                return False
        if self.init == "systemd":
            wants = self.root / "etc/systemd/system/multi-user.target.wants"
            return self.check("install", "units enabled in multi-user.target.wants",
                              all((wants / f"{name}.service").is_symlink() for name in SERVICES))
        links = [list((self.root / "etc").glob(f"rc{level}.d/[SK][0-9][0-9]{name}"))
                 for name in SERVICES for level in (0, 2)]
        return self.check("install", "update-rc.d links in rc2.d (S) and rc0.d (K)", all(links))

    def remove(self) -> bool:
        ok = self.in_root("remove", "apt-get remove svctl (not purged)", "apt-get -q -y remove svctl")
        left = [f"etc/init.d/{name}" for name in SERVICES]
        if self.init == "systemd":
            left += [f"etc/systemd/system/{name}.service" for name in SERVICES]
        return ok and self.check("remove", "/usr/bin/svctl gone, the generated boot files left in place",
                                 not (self.root / "usr/bin/svctl").exists()
                                 and all((self.root / path).exists() for path in left))

    def boot(self, stage: str) -> bool:
        for name in SERVICES:
            clear_file(self.root / f"var/lib/realboot/{name}.jsonl")
            clear_file(self.root / f"var/log/svctl/{name}.json")
        console = self.logs / f"boot-{stage}.console"
        container = Container(self.root, f"rb-{self.label}", console)
        wall_start = time.time()
        try:
            container.start()
            if stage == "installed":
                supervisors = self.wait_up(container, wall_start)
                ready = self.wait_settled(container, stage)
                if supervisors is not None:
                    self.note_status(container)
            else:
                supervisors = None
                ready = self.wait_settled(container, stage)
                self.removed_checks(container)
            self.timings[f"{stage}:ready"] = ready
            if supervisors is not None:
                now = {name: read_pid(container.read(f"/run/{name}.pid")) for name in SERVICES}
                self.check(stage, "the PID files still name the same supervisors before shutdown",
                           now == supervisors, f"at start {supervisors}, now {now}")
            self.shutdown(container, stage)
        finally:
            for problem in container.close() + self.workspace.remount():
                self.check(stage, problem, False)
        if stage == "installed" and supervisors is not None:
            self.shutdown_checks(supervisors)
        self.console_checks(console, stage)
        return self.stage_ok(stage)

    def wait_up(self, container: Container, wall_start: float) -> dict[str, int] | None:
        """Both services running (`service NAME status` is 0) and rb-web answering inside."""
        deadline = time.monotonic() + self.boot_timeout
        last = ""
        while time.monotonic() < deadline:
            time.sleep(0.1)
            pids = {name: read_pid(container.read(f"/run/{name}.pid")) for name in SERVICES}
            if None in pids.values() or not all(records(self.root, name, "started") for name in SERVICES):
                continue
            statuses = {name: container.nsenter("service", name, "status") for name in SERVICES}
            http = container.nsenter("python3", "-c", HTTP_GET, timeout=10)
            last = "\n".join(f"service {n} status: exit {r.code}: {r.tail(3)}" for n, r in statuses.items())
            last += f"\nGET http://[::1]:{WEB_PORT}/: exit {http.code}: {http.tail(3)}"
            if all(r.ok for r in statuses.values()) and http.ok and http.out.startswith(f"{WEB} "):
                self.timings["installed:up"] = container.elapsed()
                self.timings["installed:spawned"] = max(
                    records(self.root, name, "started")[-1]["time"] for name in SERVICES) - wall_start
                self.check("installed", "both services up after boot (service NAME status 0, "
                           f"rb-web answers on [::1]:{WEB_PORT} inside)", True)
                for name, pid in pids.items():
                    started = records(self.root, name, "started")
                    self.check("installed", f"{name} is a child of its supervisor (pid {pid}), started once",
                               len(started) == 1 and started[0]["ppid"] == pid, json.dumps(started))
                return pids
        self.check("installed", f"both services up within {self.boot_timeout:.0f} s", False,
                   last or "no PID file or no start record: " + self.where(container))
        return None

    def where(self, container: Container) -> str:
        listing = "\n".join(f"{ns:>6} {cmd}" for _host, ns, cmd in sorted(container.processes(), key=lambda p: p[1]))
        return f"processes in the container:\n{listing}"

    def wait_settled(self, container: Container, stage: str) -> float:
        """systemd: `systemctl is-system-running --wait` says running; sysvinit: runlevel 2 and no
        rc script left running. Returns the seconds since boot."""
        deadline = time.monotonic() + self.boot_timeout
        if self.init == "systemd":
            # systemctl talks to PID 1 through this socket; before it exists it says "offline".
            while not container.exists("/run/systemd/private") and time.monotonic() < deadline:
                time.sleep(0.05)
            result = container.nsenter("systemctl", "is-system-running", "--wait", timeout=self.boot_timeout)
            state = result.out.strip().splitlines()[-1] if result.out.strip() else "?"
            detail = ""
            if state != "running":
                failed = container.nsenter("systemctl", "--failed", "--no-legend", "--plain")
                detail = f"failed units:\n{failed.out.strip()}"
                for name in SERVICES:
                    detail += "\n" + container.nsenter("systemctl", "status", "--no-pager", "-n", "5", name).out
            self.check(stage, f"systemctl is-system-running: {state} (wanted running)", state == "running", detail)
            return container.elapsed()
        while time.monotonic() < deadline:
            commands = [cmd for _h, _n, cmd in container.processes()]
            if not any("/etc/init.d/rc " in cmd or cmd.startswith("startpar") for cmd in commands):
                level = container.nsenter("runlevel").out.split()
                if level and level[-1] == "2":
                    self.check(stage, "sysvinit reached runlevel 2, rc scripts done", True)
                    return container.elapsed()
            time.sleep(0.1)
        self.check(stage, "sysvinit reached runlevel 2", False, self.where(container))
        return container.elapsed()

    def note_status(self, container: Container) -> None:
        for name in SERVICES:
            self.note(container.nsenter("svctl", "status", name).out)
        if self.init == "systemd":
            for name in SERVICES:
                main = container.nsenter("systemctl", "show", "-p", "MainPID", "--value", f"{name}.service")
                pid = read_pid(container.read(f"/run/{name}.pid"))
                self.check("installed", f"{name}.service's MainPID is the supervisor ({pid})",
                           main.out.strip() == str(pid), main.out.strip())

    def shutdown(self, container: Container, stage: str) -> None:
        started = time.monotonic()
        said = container.poweroff(self.init)
        code = container.wait(self.shutdown_bound)
        seconds = time.monotonic() - started
        self.timings[f"{stage}:shutdown"] = seconds
        how = "telinit 0" if self.init == "sysvinit" else "SIGRTMIN+4 to its PID 1"
        detail = said.tail() if said is not None and not said.ok else ""
        if code is None:
            detail += f"\nstill running after {self.shutdown_bound:.0f} s:\n{self.where(container)}"
        self.check(stage, f"{how}: container exits 0 within {self.shutdown_bound:.0f} s "
                   f"(exit {code}, {seconds:.1f} s)", code == 0, detail.strip())

    def shutdown_checks(self, supervisors: dict[str, int]) -> None:
        for name in SERVICES:
            signals = records(self.root, name, "signal")
            terms = [s for s in signals if s["signal"] == "SIGTERM"]
            foreign = [s for s in signals if s["sender"] != supervisors[name]]
            self.check("installed", f"{name}: its SIGTERM came from its own supervisor (pid {supervisors[name]})",
                       len(terms) == 1 and not foreign, "signals recorded: " + json.dumps(signals))
        events = read_events(self.root, STUBBORN)
        term = (records(self.root, STUBBORN, "signal") or [{}])[0].get("time")
        stopping = [e for e in events if e.get("event") == "stopping"]
        exited = [e for e in events if e.get("event") == "exited"]
        stopped = [e for e in events if e.get("event") == "stopped"]
        detail = "events: " + json.dumps(events[-4:])
        killed = bool(exited) and "KILL" in str(exited[-1].get("status")) and not exited[-1].get("clean")
        delay = event_time(exited[-1]) - term if exited and term else None
        if delay is not None:
            self.timings["term_to_kill"] = delay
        self.check("installed", f"{STUBBORN}: SIGKILL by its schedule {SERVICES[STUBBORN]['stop']} ~{KILL_AFTER:.0f} s "
                   "after the TERM" + (f" ({delay:.2f} s)" if delay is not None else ""),
                   bool(stopping) and killed and delay is not None and KILL_AFTER - 0.3 <= delay <= KILL_AFTER + 2,
                   detail)
        self.check("installed", f"{STUBBORN}: its supervisor finished the schedule (event 'stopped')",
                   bool(stopped) and (not exited or event_time(stopped[-1]) >= event_time(exited[-1])), detail)
        web = read_events(self.root, WEB)
        web_exit = [e for e in web if e.get("event") == "exited"]
        self.check("installed", f"{WEB}: exited cleanly on its TERM, supervisor 'stopped'",
                   bool(web_exit) and web_exit[-1].get("clean") and any(e.get("event") == "stopped" for e in web),
                   "events: " + json.dumps(web[-3:]))

    def removed_checks(self, container: Container) -> None:
        want = 4 if self.init == "sysvinit" else 3
        why = "the shim: status unknown" if self.init == "sysvinit" else "systemctl: inactive"
        for name in SERVICES:
            result = container.nsenter("service", name, "status")
            self.check("removed", f"service {name} status exits {want} ({why}), never 0 (exit {result.code})",
                       result.code == want, result.tail(5))
            if self.init == "systemd":
                # Not failed *yet* is not enough: Restart=on-failure keeps a unit whose ExecStart is
                # gone in "activating (auto-restart)" until the start limit fails it, seconds later.
                shown = container.nsenter("systemctl", "show", "-p", "ActiveState,ConditionResult,NRestarts",
                                          f"{name}.service")
                props = dict(line.split("=", 1) for line in shown.out.splitlines() if "=" in line)
                self.check("removed", f"{name}.service skipped by its condition (inactive, "
                           "ConditionResult=no, NRestarts=0)",
                           props == {"ActiveState": "inactive", "ConditionResult": "no", "NRestarts": "0"},
                           shown.out + container.nsenter("systemctl", "status", "--no-pager", "-n", "5", name).out)
        if self.init == "systemd":
            while container.elapsed() < SETTLE_SECONDS:
                time.sleep(0.2)
            state = container.nsenter("systemctl", "is-system-running").out.strip()
            failed = container.nsenter("systemctl", "--failed", "--no-legend", "--plain").out.strip()
            self.check("removed", f"is-system-running still {state} {SETTLE_SECONDS:.0f} s after boot "
                       "(wanted running)", state == "running", f"failed units:\n{failed}")

    def console_checks(self, console: Path, stage: str) -> None:
        """The shims' lines in the boot console: nothing that reads like an error."""
        text = console.read_text(errors="replace") if console.exists() else ""
        ours = [line for line in text.splitlines()
                if any(word in line for word in (*SERVICES, "svctl"))
                and any(bad in line.lower() for bad in SHIM_WORDS)]
        self.check(stage, "no errors about svctl or its services in the boot console", not ours, "\n".join(ours[:20]))


def service_file(name: str, spec: dict) -> str:
    command = ["/usr/bin/python3", IN_ROOT_PROGRAM, "--name", name, *spec["args"]]
    return (f'description = "realboot test service {name}"\ncommand = {json.dumps(command)}\n'
            f'stop = "{spec["stop"]}"\nrestart = "on-failure"\n{spec["extra"]}')


def read_pid(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def records(root: Path, name: str, event: str) -> list[dict]:
    path = root / f"var/lib/realboot/{name}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["event"] == event]


def read_events(root: Path, name: str) -> list[dict]:
    path = root / f"var/log/svctl/{name}.json"
    found = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def event_time(event: dict) -> float:
    return datetime.fromisoformat(str(event.get("timestamp")).replace("Z", "+00:00")).timestamp()


def clear_file(path: Path) -> None:
    if path.exists():
        path.unlink()

