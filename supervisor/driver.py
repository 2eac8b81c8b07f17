"""One service's driver: its state machine and the adapters that carry out the machine's effects.

The driver turns what happens to its service (the child exited, a timer is due, a probe passed, a
client asked) into events for its ``Machine`` (core/machine.py) and performs the effects the
machine returns. It owns the service's child, process group, log capture, events file, state file,
file watcher, probes, failure hook and leftovers; it never waits, sleeps or selects: the process
loop (loop.py) does, for any number of drivers. Its timers are the loop's, keyed by this driver and
a purpose ("stop", "watch", "hook", ...).

Front ends: runtime.py (the per-service daemon of `svctl start` / `svctl run`: one loop, one
driver, the PID file) and up.py (`svctl up`: one loop, many drivers, no PID files). Everything a
front end differs in is a constructor argument: the loop, the lock (None: no PID file), the
mode written to state.json, and, under `up`, which of the loop's children belong to this service.
"""

from __future__ import annotations

import collections
import os
import selectors
import time

from supervisor.adoption import Adoption
from supervisor.clients import Requests
from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy
from supervisor.core.deadline import stop_lead
from supervisor.core.machine import IllegalTransition, Machine, Policy
from supervisor.faults import Faults, Guard, describe
from supervisor.log import EventLog, redact, secrets_of
from supervisor.presets import preset_for
from supervisor.unix import identity, proc, rundir
from supervisor.unix.escapees import Leftovers, ReapLog, kill_group, send_stop_signal, service_uid
from supervisor.unix.health import HealthProbes, health_policy, is_health_event
from supervisor.unix.hooks import FailureHooks
from supervisor.unix.logcapture import LogCapture
from supervisor.unix.spawn import Child, decode_wait_status, spawn
from supervisor.unix.statefile import PrivateReasons, StateFile, public_record, public_status

PUBLISH_DELAY = 1.0  # a problem's counter that moved between events reaches state.json this soon
PUBLISH_RETRY = 2.0  # a state.json that could not be written is tried again this soon
DRAIN_READS = 4  # reads of the output pipe per wake-up (256 KiB): then the others' turn


def spawn_first(effects: list) -> list:
    """EFFECTS with their log lines after a Spawn among them: a crash-restart forks the new child
    before it writes "exited" to the events file and the console (the order in the file stays:
    "spawned" is logged by the next event)."""
    if not any(isinstance(effect, ev.Spawn) for effect in effects):
        return effects
    return ([effect for effect in effects if not isinstance(effect, ev.Log)]
            + [effect for effect in effects if isinstance(effect, ev.Log)])


def policy_for(config: ServiceConfig) -> Policy:
    return Policy(
        schedule=config.stop, restart=config.restart,
        ready_timeout=config.ready_timeout if config.ready else None, start_seconds=config.start_seconds,
        reload_signal=config.reload_signal, has_check=bool(config.check or config.watch),
        backoff=BackoffPolicy(config.min_uptime, config.backoff_initial, config.backoff_max,
                              config.give_up_after, config.give_up_window, config.give_up_cooldown),
        health=health_policy(config),
    )


class ServiceDriver(Guard, Requests, Adoption):
    """LOOP: the process loop. LOCK: the PID file's writer (None under `svctl up`). MEMBERSHIP:
    under `up`, (belongs(pid), foreign children, the other drivers' PIDs) for the leftovers;
    None for the per-service daemon, whose children are all its service's."""

    def __init__(self, config: ServiceConfig, run_dir: str, loop, *, console: bool = False, lock=None,
                 mode: str = "daemon", membership=None, on_run_dir_recreated=None,
                 name_on_console: bool = False, clock=time.monotonic, spawner=spawn) -> None:
        self.config, self.run_dir, self.loop, self.lock, self.mode = config, run_dir, loop, lock, mode
        self.clock, self.spawner = clock, spawner  # (unit tests give a fake clock and spawner)
        self.on_run_dir_recreated = on_run_dir_recreated
        self.directory = rundir.ensure(run_dir, config.name)
        self.machine = Machine(policy_for(config))
        self.selector = loop.selector
        self.timers = loop.timers_for(self)
        self.events: collections.deque = collections.deque()  # posted by the loop and by helper threads
        self.child: Child | None = None
        self.pgid: int | None = None
        self.sessions: set[int] = set()  # the sessions this service led: an escapee still in one is its
        self.service_identity: identity.Identity | None = None
        self.awaiting_group = False
        self.probe = None
        self.health = HealthProbes(config.health, self.post) if config.health else None  # liveness
        self.reloader = None
        self.exit_code: int | None = None
        self.last_words: list = []  # replies held back until the PID file is gone
        self.round_replies: list | None = None  # replies of the round being processed (see process)
        self.cleaned_up = False
        self.hold_publish = False  # `svctl up` writes state.json once its first services run
        self.adopted_pipes: set[int] = set()
        self.me = identity.identify(os.getpid(), allow_init=True)  # PID 1: `up` as a container's init
        self.pid_namespace = identity.pid_namespace()  # the PIDs in state.json mean processes of this one
        self.config_record = public_record(config)  # lets `svctl status` skip the TOML parser
        self.faults = Faults(config.name)
        self.secrets = secrets_of(config.environment)
        self.log = EventLog(config.events_file, config.name, console, self.secrets, self.faults, name_on_console)
        self.hooks = FailureHooks(config, self.log, self.selector, self.timers)  # on_failure
        self.preset = preset_for(config.preset)
        self.uid = service_uid(config) or 0  # who the service runs as (0: root)
        belongs, foreign, others = membership or (None, None, lambda: ())
        self.leftovers = Leftovers(self.preset, lambda: (*self.known_pids(), *others()),  # no escapees
            service_uid(config), self.log, belongs=belongs and (lambda pid: belongs(pid, self)), foreign=foreign)
        self.reaps = ReapLog(self.log, self.timers)  # "reaped" lines, a few a second at most
        self.output = LogCapture(config.log_file, config.log_max_bytes, config.log_backups, self.faults)
        self.state_file = StateFile(self.directory, rundir.STATE)
        self.private_reasons = PrivateReasons(config, self.directory)
        self.selector.register(self.output.read_fd, selectors.EVENT_READ, self.drain_output)

    def begin(self) -> None:
        """Before the first event: the file watcher (its inotify descriptor joins the loop's selector)."""
        if self.config.watch or self.config.check:
            from supervisor.reloader import ConfigReloader

            self.reloader = ConfigReloader(self.config, self.directory, self.log, self.wake_for_watch, self.loop)
            self.guarded("starting the file watcher", self.reloader.start)

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    def owns(self, fileobj) -> bool:
        """Still a descriptor of ours: not closed meanwhile (its number may now be something else's)."""
        return (fileobj == self.output.read_fd or fileobj in self.adopted_pipes
                or (self.child is not None and fileobj == self.child.pidfd) or fileobj == self.hooks.pipe
                or (self.reloader is not None and self.reloader.watcher is not None
                    and fileobj == self.reloader.watcher.fileno()))

    def known_pids(self) -> tuple:
        """This service's own children: the service, the check, the hook (no escapees of anyone)."""
        return (self.child and self.child.pid, self.reloader and self.reloader.check_pid, self.hooks.pid)

    def post(self, event: ev.Event) -> None:
        """Thread-safe: queue an event and wake the loop."""
        self.events.append(event)
        self.loop.wake()

    def process(self) -> None:
        """Every queued event, then one state.json write if anything changed (not one per event:
        a start is three events, and 100 services under `svctl up` start in one round), then the
        round's replies: a client told "started" that runs `svctl status` next must find it so
        in state.json, and one told "failed to start" must find no PID file (a reply made in a
        round that ends the supervisor waits for its cleanup, as last words)."""
        self.round_replies = []
        try:
            self._process_events()
        finally:
            replies, self.round_replies = self.round_replies, None
            for token, code, message in replies:
                self.answer(token, code, message)

    def _process_events(self) -> None:
        changed = False
        while self.events and self.exit_code is None:
            event = self.events.popleft()
            before = self.machine.status() if is_health_event(event) else None
            try:
                effects = self.machine.handle(event, self.clock())
            except Exception as exc:
                if isinstance(exc, IllegalTransition):
                    self.log.event("illegal_transition", level="error", detail=str(exc))
                    self.answer(getattr(event, "token", None), 1, f"refused: {exc}")
                else:
                    self.faults.internal(f"handling {type(event).__name__}", exc)
                    self.answer(getattr(event, "token", None), 1, f"internal error: {describe(exc)}")
                continue
            for effect in spawn_first(effects):
                try:
                    self.perform(effect)
                except Exception as exc:
                    self.faults.internal(f"performing {type(effect).__name__}", exc)
            # a probe that changed nothing: no write
            changed = changed or before is None or self.machine.status() != before
        if changed and not self.hold_publish:
            self.publish()

    def settle(self) -> None:
        """After each round of the loop: a new problem reaches state.json at once, a moved counter
        within a second."""
        if self.faults.changed and not self.cleaned_up:
            soon = self.clock() + (0.0 if self.faults.urgent else PUBLISH_DELAY)
            self.timers["publish"] = min(self.timers.get("publish", soon), soon)

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
        else:
            self.events.append(ev.Timer(name))

    # ---- children ---------------------------------------------------------------------------

    def claims(self, pid: int) -> bool:
        return pid in self.known_pids()

    def before_reap(self, pid: int) -> None:
        """PID is ours and a zombie still (the loop peeked): what a hook or a check left in its
        group dies now, while the zombie holds the group's ID."""
        self.hooks.before_reap(pid)
        if self.reloader is not None and pid == self.reloader.check_pid:
            kill_group(pid)  # what the check left in its group: gone, never an escapee

    def reaped(self, pid: int, status: int) -> None:
        if self.child is not None and pid == self.child.pid:
            self.child_exited(status)
        elif self.hooks.owns(pid):
            self.hooks.exited(pid, status)
        elif self.reloader is not None and pid == self.reloader.check_pid:
            self.timers.pop("check", None)
            self.events.append(self.reloader.finish_check(status))

    def after_reap(self) -> None:
        if self.awaiting_group and not self.leftovers.alive(self.pgid):
            self.group_gone()

    def child_exited(self, status: int | None) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        if child.popen is not None and status is not None:
            child.popen.returncode = status
        if child.pidfd is not None:
            self.loop.forget(child.pidfd)
            os.close(child.pidfd)
        reason, clean = decode_wait_status(status) if status is not None else ("exited (status unknown: adopted)", False)
        self.guarded("draining the output", self.output.drain, 64)  # its last words (an escapee may write on)
        self.service_identity = None
        self.events.append(ev.Exited(child.pid, reason, clean, self.leftovers.alive(self.pgid)))

    def on_pidfd(self, _fd) -> None:
        self.child_exited(None)

    def drain_output(self, _fd) -> None:
        self.output.drain(most=DRAIN_READS)

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
                self.timers[name] = at - stop_lead(at - self.clock()) if name == "stop" else at
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
            case ev.StopHealthProbe():
                if self.health is not None:
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
                if self.mode == "daemon":  # under `up`, one service's READY=1 is not the process's
                    proc.sd_notify(message)
            case ev.Log(event=name, fields=fields):
                self.log.event(name, **fields)
                if name == "stop_failed" and self.child is not None:  # the stop is over, the service runs on:
                    self.leftovers.take_all = False  # a stop-all's intent must not reach later respawns
                self.hooks.fire_for(name, fields)  # gave_up, rolled_back, health_restart: never raises
            case ev.SaveGood() | ev.RestoreGood():
                if self.reloader is not None:
                    self.reloader.snapshot("save" if isinstance(effect, ev.SaveGood) else "restore")
            case ev.ExitSupervisor(code=code):
                self.exit_code = code
            case _:  # a new effect the machine emits must get a case here, not vanish
                raise TypeError(f"no handler for the effect {effect!r}")

    def start_service(self, attempt: str) -> None:
        """Always ends in Spawned or SpawnFailed: the machine must never wait for a start forever."""
        self.leftovers.take_all = False  # a stop-all that did not end in exiting is over
        lines, refusal = self.guarded("the preset's clean-up", self.preset.before_start, self.config) or ((), None)
        for line in lines:
            self.log.event("preset_cleanup", detail=line)
        if refusal:  # say, another hub holds the ports: a start would only crash-loop
            self.events.append(ev.SpawnFailed(refusal))
            return
        if self.reloader is not None:  # the watched files' bytes this start may promote
            self.guarded("recording the watched files", self.reloader.before_spawn, attempt)
        try:
            self.child = self.spawner(self.config, self.output.write_fd, keep_fds=(self.output.read_fd,))
        except Exception as exc:
            reason = f"cannot run {self.config.command[0]}: {getattr(exc, 'strerror', None) or exc}"
            self.events.append(ev.SpawnFailed(reason))
            return
        self.pgid = self.child.pid  # the service leads its own session and process group
        if self.sessions and self.leftovers.belongs is not None:  # under `up`; after the spawn: not in its way
            self.guarded("forgetting empty sessions", self.forget_empty_sessions)
        self.sessions.add(self.child.pid)
        self.service_identity = identity.identify(self.child.pid)
        self.events.append(ev.Spawned(self.child.pid))

    def forget_empty_sessions(self) -> None:
        """Keep only the sessions of ours that still have a member. An empty session's ID is a free
        PID again, and another service's new session may get it: then its processes would look like
        ours. A live member's chain of parents in the session ends at our child (its leader, or a
        process re-parented to us when the leader died), so our children's sessions are all of them."""
        from supervisor.unix.escapees import sessions_of_children

        self.sessions &= sessions_of_children(set(self.leftovers.known()))  # known: services, checks, hooks

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
        """A watched file's event: from the loop's thread (inotify) or, in the watchdog fallback,
        from its thread; call_soon is safe from both, and the loop does the rest in its own."""
        self.loop.call_soon(self.watch_kicked)

    def watch_kicked(self) -> None:
        if self.reloader is not None:
            self.timers["watch"] = self.reloader.kick()

    # ---- state for `svctl status` -----------------------------------------------------------

    def publish(self) -> None:
        """Write state.json; never raises. If it can't be written, the last good one stays and
        this is tried again soon (a lost write must not leave `status` on a dead PID)."""
        try:
            now_wall = time.time()
            status = public_status(self.machine.status(), now_wall, self.clock(), self.secrets)
            status["rejected"] = self.private_reasons.publish(status["rejected"])
            self.faults.changed = self.faults.urgent = False
            reserve_used = self.state_file.write({
                "version": 1, "name": self.config.name, "updated": now_wall, "mode": self.mode,
                "pid_namespace": self.pid_namespace,
                "supervisor": self.me.to_dict() if self.me else None,
                "service": self.service_identity.to_dict() if self.service_identity else None,
                "pgid": self.pgid, "output_fd": self.output.read_fd, "machine": status,
                "problems": redact(self.faults.problems(), self.secrets), "config": self.config_record,
            })
        except Exception as exc:
            self.timers["publish"] = self.clock() + PUBLISH_RETRY
            self.faults.report("state", f"state file in {self.directory}: {describe(exc)}; status may be out of date")
            if isinstance(exc, FileNotFoundError) and not os.path.isdir(self.directory) and not self.cleaned_up:
                if self.guarded("recreating the run directory", self.recreate_run_dir) is not None:
                    self.timers["publish"] = self.clock()
            return
        self.timers.pop("publish", None)
        self.faults.report("state", None if reserve_used is None else
                           f"state file in {self.directory}: {reserve_used}; written into space reserved for it")

    def recreate_run_dir(self) -> bool:
        """The run directory went away under us (rm -r, a remounted /run): without it `status` sees
        nothing and `stop` can't reach us, so make it again, with all that was in it."""
        self.directory = rundir.ensure(self.run_dir, self.config.name)
        if self.on_run_dir_recreated is not None:
            self.on_run_dir_recreated(self)  # the front end's entries: identity file, control socket
        self.state_file.close()
        self.state_file = StateFile(self.directory, rundir.STATE)
        self.log.event("run_directory_recreated", level="warning", directory=self.directory)
        return True

    def shutdown(self) -> None:
        """Clean up; each step on its own, so no failure skips the rest. Answers are sent by
        send_last_words, once the front end has removed what it must first (the PID file)."""
        self.guarded("logging the reaped count", self.reaps.flush)  # the held-back count: not lost
        if self.reloader is not None:
            self.guarded("stopping the reloader", self.reloader.stop)
        if self.probe is not None:
            self.guarded("stopping the probe", self.probe.cancel)
        if self.health is not None:
            self.guarded("stopping the health probe", self.health.close)
        self.guarded("stopping the failure hook", self.hooks.close)
        self.guarded("answering the last requests", self.answer_the_rest)
        self.loop.forget(self.output.read_fd)
        for fd in list(self.adopted_pipes):
            self.loop.forget(fd)
            os.close(fd)
        self.adopted_pipes.clear()
        self.guarded("closing the output", self.output.close)
        self.publish()
        self.state_file.close()
        self.timers.clear()

    def send_last_words(self) -> None:
        self.cleaned_up = True
        for token, code, message in self.last_words:
            self.guarded("answering", self.answer, token, code, message)
        self.last_words.clear()
