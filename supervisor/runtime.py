"""The supervisor's loop: turns OS happenings into events for the machine and performs its effects.

Everything that can wake the supervisor is a file descriptor in one selector: the signal wake-up
pipe (SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGUSR1 via ``signal.set_wakeup_fd``, plus a zero byte when
a helper thread posts an event), the control socket, the service's output pipe and, for a service
adopted from a dead supervisor, its pidfd. The loop sleeps until one is readable or the next
deadline; there is no polling tick.

Only the machine ends the loop. A full disk, the fd limit or a lost directory must not (issue 10
item 8): every handler, effect and timer runs under a guard, an error becomes an event and a
problem that state.json shows (supervisor/faults.py), and a descriptor whose handler failed is
left alone for a moment, so that a lasting failure (accept at the fd limit) can't spin the loop.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import socket
import time

from supervisor.adoption import Adoption
from supervisor.clients import Requests
from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy
from supervisor.core.deadline import sleep_for, stop_lead
from supervisor.core.machine import IllegalTransition, Machine, Policy
from supervisor.faults import Faults, Guard, describe
from supervisor.log import EventLog, redact, secrets_of
from supervisor.unix import identity, proc, rundir
from supervisor.unix.escapees import Leftovers, ReapLog, kill_group, send_stop_signal, service_uid
from supervisor.unix.health import HealthProbes, health_policy, is_health_event
from supervisor.unix.hooks import FailureHooks
from supervisor.unix.logcapture import LogCapture
from supervisor.unix.spawn import Child, decode_wait_status, spawn
from supervisor.unix.statefile import PrivateReasons, StateFile, public_record, public_status

HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1)
WATCH_BYTE = 0xFE  # written to the wake-up pipe by the file watcher's thread (signal numbers are < 65)
PUBLISH_DELAY = 1.0  # a problem's counter that moved between events reaches state.json this soon
PUBLISH_RETRY = 2.0  # a state.json that could not be written is tried again this soon


def policy_for(config: ServiceConfig) -> Policy:
    return Policy(
        schedule=config.stop, restart=config.restart,
        ready_timeout=config.ready_timeout if config.ready else None, start_seconds=config.start_seconds,
        reload_signal=config.reload_signal, has_check=bool(config.check or config.watch),
        backoff=BackoffPolicy(config.min_uptime, config.backoff_initial, config.backoff_max,
                              config.give_up_after, config.give_up_window, config.give_up_cooldown),
        health=health_policy(config),
    )


class Runtime(Guard, Requests, Adoption):
    def __init__(self, config: ServiceConfig, run_dir: str, console: bool = False, lock=None) -> None:
        self.config, self.run_dir, self.lock = config, run_dir, lock
        self.directory = rundir.ensure(run_dir, config.name)
        self.machine = Machine(policy_for(config))
        self.selector = selectors.DefaultSelector()
        self.events: collections.deque = collections.deque()  # posted by the loop and by helper threads
        self.timers: dict[str, float] = {}
        self.child: Child | None = None
        self.pgid: int | None = None
        self.service_identity: identity.Identity | None = None
        self.awaiting_group = False
        self.probe = None
        self.health = HealthProbes(config.health, self.post) if config.health else None  # liveness
        self.reloader = None
        self.exit_code: int | None = None
        self.last_words: list = []  # replies held back until the PID file is gone
        self.cleaned_up = False
        self.paused: dict = {}  # descriptor -> handler, while its handler's failure is cooling off
        self.adopted_pipes: set[int] = set()
        self.me = identity.identify(os.getpid())
        self.config_record = public_record(config)  # lets `svctl status` skip the TOML parser
        self.faults = Faults(config.name)
        self.secrets = secrets_of(config.environment)
        self.log = EventLog(config.events_file, config.name, console, self.secrets, self.faults)
        self.hooks = FailureHooks(config, self.log, self.selector, self.timers)  # on_failure
        self.leftovers = Leftovers(config.preset, lambda: (  # who among our children is no escapee
            self.child and self.child.pid, self.reloader and self.reloader.check_pid, self.hooks.pid),
            service_uid(config), self.log)
        self.reaps = ReapLog(self.log, self.timers)  # "reaped" lines, a few a second at most
        self.output = LogCapture(config.log_file, config.log_max_bytes, config.log_backups, self.faults)
        self.state_file = StateFile(self.directory, rundir.STATE)
        self.private_reasons = PrivateReasons(config, self.directory)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.open_to_clients()
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        self.selector.register(self.output.read_fd, selectors.EVENT_READ, self.drain_output)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, *first: ev.Event) -> int:
        for number in HANDLED_SIGNALS:
            signal.signal(number, lambda *_: None)  # the C handler writes the number to wake_w
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        proc.become_subreaper()
        if self.config.watch or self.config.check:
            from supervisor.reloader import ConfigReloader

            self.reloader = ConfigReloader(self.config, self.directory, self.log, self.wake_for_watch)
            self.guarded("starting the file watcher", self.reloader.start)
        self.events.extend(first)
        self.process()  # publishes state.json; only then the PID file (see launch.supervise)
        if self.lock is not None and self.exit_code is None:
            self.guarded("writing the PID file", self.lock.write, os.getpid())
        while self.exit_code is None:
            name, deadline = min(self.timers.items(), key=lambda item: item[1], default=(None, None))
            wait = None if deadline is None else deadline - time.monotonic()
            # a long wait is split so that the kernel's timer slack can't make a deadline late; not
            # a liveness probe's: a few ms don't matter to it, a second wake-up per probe would (and
            # no stop timer runs beside it: probes end when a stop begins)
            self.dispatch(max(0.0, wait) if name == "health" else sleep_for(wait))
            self.fire_timers()
            self.process()
            if self.faults.changed:  # a new problem at once, a counter that moved within a second
                soon = time.monotonic() + (0.0 if self.faults.urgent else PUBLISH_DELAY)
                self.timers["publish"] = min(self.timers.get("publish", soon), soon)
        self.shutdown()
        return self.exit_code

    def owns(self, fileobj) -> bool:
        """Still a descriptor of ours: not closed meanwhile (its number may now be something else's)."""
        if isinstance(fileobj, socket.socket):
            return fileobj is self.server and fileobj.fileno() >= 0
        return (fileobj in (self.wake_r, self.output.read_fd) or fileobj in self.adopted_pipes
                or (self.child is not None and fileobj == self.child.pidfd))

    def post(self, event: ev.Event) -> None:
        """Thread-safe: queue an event and wake the loop."""
        self.events.append(event)
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def process(self) -> None:
        while self.events and self.exit_code is None:
            event = self.events.popleft()
            before = self.machine.status() if is_health_event(event) else None
            try:
                effects = self.machine.handle(event, time.monotonic())
            except Exception as exc:
                if isinstance(exc, IllegalTransition):
                    self.log.event("illegal_transition", level="error", detail=str(exc))
                    self.answer(getattr(event, "token", None), 1, f"refused: {exc}")
                else:
                    self.faults.internal(f"handling {type(event).__name__}", exc)
                    self.answer(getattr(event, "token", None), 1, f"internal error: {describe(exc)}")
                continue
            for effect in effects:
                try:
                    self.perform(effect)
                except Exception as exc:
                    self.faults.internal(f"performing {type(effect).__name__}", exc)
            if before is None or self.machine.status() != before:  # a probe that changed nothing: no write
                self.publish()

    def fire(self, name: str) -> None:
        if name == "check":
            self.reloader.kill_check()
        elif name == "watch":
            wanted, later = self.reloader.fire()
            if later is not None:
                self.timers["watch"] = later
            if wanted:
                self.request_reload(None, "watch")
        elif name == "stop" and self.awaiting_group and not self.leftovers.alive(self.pgid):
            self.group_gone()
        elif name == "hook":
            self.hooks.deadline()
        elif name == "reaped":
            self.reaps.flush()
        elif name == "publish":
            self.publish()
        elif name == "resume":
            self.resume()
        else:
            self.events.append(ev.Timer(name))

    # ---- wake-ups ---------------------------------------------------------------------------

    def on_wake(self, _fd) -> None:
        try:
            data = os.read(self.wake_r, 4096)
        except BlockingIOError:
            return
        for number in data:  # each on its own: a failure must not swallow the SIGTERM after it
            try:
                self.on_signal(number)
            except Exception as exc:
                self.faults.internal(f"handling signal {number}", exc)

    def on_signal(self, number: int) -> None:
        if number == signal.SIGCHLD:
            self.reap()
        elif number in (signal.SIGTERM, signal.SIGINT):
            self.events.append(ev.Stop())
        elif number == signal.SIGHUP:
            self.request_reload(None, "signal")
        elif number == signal.SIGUSR1:
            self.reopen_logs()
        elif number == WATCH_BYTE and self.reloader is not None:
            self.timers["watch"] = self.reloader.kick()

    def reap(self) -> None:
        while True:
            try:  # a peek first: a hook's group is killed while its zombie still holds the group's ID
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if found is None or not found.si_pid:
                    break
                self.hooks.before_reap(found.si_pid)
                if self.reloader is not None and found.si_pid == self.reloader.check_pid:
                    kill_group(found.si_pid)  # what the check left in its group: gone, never an escapee
                pid, status = os.waitpid(found.si_pid, 0)  # a zombie: no wait
            except ChildProcessError:
                break
            if self.child is not None and pid == self.child.pid:
                self.child_exited(status)
            elif self.hooks.owns(pid):
                self.hooks.exited(pid, status)
            elif self.reloader is not None and pid == self.reloader.check_pid:
                self.timers.pop("check", None)
                self.events.append(self.reloader.finish_check(status))
            else:
                self.reaps.reaped(pid, decode_wait_status(status)[0])
        if self.awaiting_group and not self.leftovers.alive(self.pgid):
            self.group_gone()

    def child_exited(self, status: int | None) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        if child.popen is not None and status is not None:
            child.popen.returncode = status
        if child.pidfd is not None:
            try:
                self.selector.unregister(child.pidfd)
            except (KeyError, ValueError):
                pass
            self.paused.pop(child.pidfd, None)
            os.close(child.pidfd)
        reason, clean = decode_wait_status(status) if status is not None else ("exited (status unknown: adopted)", False)
        self.guarded("draining the output", self.output.drain)
        self.service_identity = None
        self.events.append(ev.Exited(child.pid, reason, clean, self.leftovers.alive(self.pgid)))

    def on_pidfd(self, _fd) -> None:
        self.child_exited(None)

    def drain_output(self, _fd) -> None:
        self.output.drain()

    def group_gone(self) -> None:
        self.awaiting_group = False
        self.leftovers.reset()
        self.events.append(ev.GroupGone())

    # ---- effects ----------------------------------------------------------------------------

    def perform(self, effect) -> None:
        match effect:
            case ev.Spawn():
                self.start_service(effect.attempt)
            case ev.Signal(signal=number, group=group, cont=cont):
                self.send(number, group, cont)
            case ev.ArmTimer(name=name, at=at):
                self.timers[name] = at - stop_lead(at - time.monotonic()) if name == "stop" else at
            case ev.CancelTimer(name=name):
                self.timers.pop(name, None)
            case ev.StartProbe():
                from supervisor.unix.probe import Probe

                self.probe = Probe(self.config.ready, lambda: self.post(ev.Ready()))
            case ev.StopProbe():
                if self.probe is not None:
                    self.probe.cancel()
                    self.probe = None
            case ev.StartHealthProbe(probe=probe, timeout=timeout):
                self.health.start(probe, timeout)
            case ev.StopHealthProbe() if self.health is not None:
                self.health.cancel()
            case ev.RunCheck():
                verdict = self.reloader.begin_check()
                if verdict is not None:
                    self.events.append(verdict)
                else:
                    self.timers["check"] = self.reloader.check_deadline
            case ev.AwaitGroup():
                self.awaiting_group = True
                self.leftovers.reset()
                if not self.leftovers.alive(self.pgid):
                    self.group_gone()
            case ev.Reply(token=token, code=code, message=message):
                self.answer(token, code, message)
            case ev.Notify(message=message):
                proc.sd_notify(message)
            case ev.Log(event=name, fields=fields):
                self.log.event(name, **fields)
                if name == "stop_failed" and self.child is not None:  # the stop is over, the service runs on:
                    self.leftovers.take_all = False  # a stop-all's intent must not reach later respawns
                self.hooks.fire_for(name, fields)  # gave_up, rolled_back, health_restart: never raises
            case ev.SaveGood() | ev.RestoreGood() if self.reloader is not None:
                self.reloader.snapshot("save" if isinstance(effect, ev.SaveGood) else "restore")
            case ev.ExitSupervisor(code=code):
                self.exit_code = code

    def start_service(self, attempt: str) -> None:
        """Always ends in Spawned or SpawnFailed: the machine must never wait for a start forever."""
        self.leftovers.take_all = False  # a stop-all that did not end in exiting is over
        if self.config.preset == "jupyterhub":
            from supervisor.jupyterhub.preset import before_start

            lines, refusal = self.guarded("the preset's clean-up", before_start, self.config) or ((), None)
            for line in lines:
                self.log.event("preset_cleanup", detail=line)
            if refusal:  # another hub holds the ports: a start would only crash-loop
                self.events.append(ev.SpawnFailed(refusal))
                return
        if self.reloader is not None:  # the watched files' bytes this start may promote
            self.guarded("recording the watched files", self.reloader.before_spawn, attempt)
        try:
            self.child = spawn(self.config, self.output.write_fd, keep_fds=(self.output.read_fd,))
        except Exception as exc:
            reason = f"cannot run {self.config.command[0]}: {getattr(exc, 'strerror', None) or exc}"
            self.events.append(ev.SpawnFailed(reason))
            return
        self.pgid = self.child.pid  # the service leads its own session and process group
        self.service_identity = identity.identify(self.child.pid)
        self.events.append(ev.Spawned(self.child.pid))

    def send(self, number: int, group: bool, cont: bool) -> None:
        """NUMBER, then SIGCONT if CONT (a stop schedule's) and a stopped process could not act on it."""
        child = self.child
        if not group and child is not None:
            send_stop_signal(lambda each: proc.send_signal(child.pidfd, child.pid, each), number, cont)
        elif self.pgid is not None and self.pgid > 1:
            send_stop_signal(lambda each: os.killpg(self.pgid, each), number, cont)
        if group:  # and the escapees (unix/escapees.py)
            self.leftovers.signal(number, cont)

    def wake_for_watch(self) -> None:
        """Runs in the watcher's thread: only a byte down the pipe, the loop does the rest."""
        try:
            os.write(self.wake_w, bytes([WATCH_BYTE]))
        except BlockingIOError:
            pass

    # ---- state for `svctl status` -----------------------------------------------------------

    def publish(self) -> None:
        """Write state.json; never raises. If it can't be written, the last good one stays and
        this is tried again soon (a lost write must not leave `status` on a dead PID)."""
        try:
            now_wall = time.time()
            status = public_status(self.machine.status(), now_wall, time.monotonic(), self.secrets)
            status["rejected"] = self.private_reasons.publish(status["rejected"])
            self.faults.changed = self.faults.urgent = False
            reserve_used = self.state_file.write({
                "version": 1, "name": self.config.name, "updated": now_wall,
                "supervisor": self.me.to_dict() if self.me else None,
                "service": self.service_identity.to_dict() if self.service_identity else None,
                "pgid": self.pgid, "output_fd": self.output.read_fd, "machine": status,
                "problems": redact(self.faults.problems(), self.secrets), "config": self.config_record,
            })
        except Exception as exc:
            self.timers["publish"] = time.monotonic() + PUBLISH_RETRY
            self.faults.report("state", f"state file in {self.directory}: {describe(exc)}; status may be out of date")
            if isinstance(exc, FileNotFoundError) and not os.path.isdir(self.directory) and not self.cleaned_up:
                if self.guarded("recreating the run directory", self.recreate_run_dir) is not None:
                    self.timers["publish"] = time.monotonic()
            return
        self.timers.pop("publish", None)
        self.faults.report("state", None if reserve_used is None else
                           f"state file in {self.directory}: {reserve_used}; written into space reserved for it")

    def shutdown(self) -> None:
        """Clean up and answer everyone waiting; each step on its own, so no failure skips the rest."""
        self.guarded("logging the reaped count", self.reaps.flush)  # the held-back count: not lost
        if self.reloader is not None:
            self.guarded("stopping the reloader", self.reloader.stop)
        if self.probe is not None:
            self.guarded("stopping the probe", self.probe.cancel)
        if self.health is not None:
            self.guarded("stopping the health probe", self.health.close)
        self.guarded("stopping the failure hook", self.hooks.close)
        self.guarded("answering the last requests", self.close_to_clients)
        self.guarded("closing the output", self.output.close)
        self.publish()
        self.state_file.close()
        if self.lock is not None:
            self.guarded("removing the PID file", self.lock.remove)  # before "stopped": the file is gone too
        self.cleaned_up = True
        for token, code, message in self.last_words:
            self.guarded("answering", self.answer, token, code, message)
