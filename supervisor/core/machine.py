"""The supervisor of one service as a deterministic state machine (pure).

``Machine.handle(event, now)`` updates the state and returns the effects the runtime must perform;
it never performs them. ``now`` is monotonic seconds. Every (state, event) pair is either listed in
TRANSITIONS or raises IllegalTransition, like s6-supervise's total action table. The reload
handlers (reloads.py) and liveness (liveness.py) are mixins of Machine, each in its own module.
"""

from __future__ import annotations

from collections.abc import Callable

from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy, FailureHistory, GiveUp, decide
from supervisor.core.liveness import Liveness, LivenessHandlers
from supervisor.core.record import Factory, Record
from supervisor.core.reloads import ReloadHandlers
from supervisor.core.schedule import Send, format_schedule
from supervisor.core.states import IllegalTransition, State

__all__ = ["IllegalTransition", "Machine", "Policy", "State", "StopRun", "TRANSITIONS"]


class Policy(Record):
    # schedule: Schedule; restart: always | on-failure | never; ready_timeout: None: no readiness
    # probe, use start_seconds; reload_signal: None: reload = validated graceful restart;
    # health: HealthPolicy, None: no liveness probe
    __slots__ = ("schedule", "restart", "ready_timeout", "start_seconds", "reload_signal", "has_check", "backoff",
                 "health")
    defaults = {"restart": "on-failure", "ready_timeout": None, "start_seconds": 0.5, "reload_signal": None,
                "has_check": False, "backoff": Factory(BackoffPolicy), "health": None}


class StopRun(Record, frozen=False):
    # purpose: exit | reload | failed_start | after_exit | health; group: the main process is gone:
    # signal what is left of its group; pending: the failure reason or Exited event to resume with
    __slots__ = ("purpose", "index", "group", "exhausted", "pending")
    defaults = {"index": 0, "group": False, "exhausted": False, "pending": None}


class Machine(ReloadHandlers, LivenessHandlers):
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state = State.STOPPED
        self.goal = "up"
        self.pid: int | None = None
        self.attempt: str | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.last_exit_at: float | None = None
        self.next_retry_at: float | None = None
        self.gave_up_reason: str | None = None
        self.rejected: tuple[str, float] | None = None
        self.degraded_at: float | None = None
        self.stop_failed: str | None = None
        self.history = FailureHistory()
        self.waiters: dict[str, list] = {"start": [], "stop": [], "reload": []}
        self.stop_run: StopRun | None = None
        self.checking = False
        self.check_again = False
        self.reload_queued = False
        self.liveness = Liveness(policy.health) if policy.health is not None else None
        self._out: list = []

    # ---- entry point ------------------------------------------------------------------------

    def handle(self, event: ev.Event, now: float) -> list:
        method = TRANSITIONS.get((self.state, type(event)))
        if method is None:
            raise IllegalTransition(f"{type(event).__name__} in state {self.state.value}")
        self._out = []
        method(self, event, now)
        return self._out

    def emit(self, *effects) -> None:
        self._out.extend(effects)

    def reply(self, kind: str, code: int, message: str) -> None:
        for token in self.waiters[kind]:
            self.emit(ev.Reply(token, code, message))
        self.waiters[kind].clear()

    def wait_for(self, kind: str, token: object) -> None:
        if token is not None:
            self.waiters[kind].append(token)

    # ---- starting ---------------------------------------------------------------------------

    def on_start(self, event: ev.Start, now: float) -> None:
        self.goal = "up"
        self.wait_for("start", event.token)
        self.emit(ev.CancelTimer("restart"), ev.CancelTimer("retry"))
        self.spawn("initial", now)

    def on_start_while_up(self, event: ev.Start, now: float) -> None:
        if self.state is State.RUNNING:
            self.emit(ev.Reply(event.token, 0, "already running"))
        else:
            self.wait_for("start", event.token)

    def on_start_while_stopping(self, event: ev.Start, now: float) -> None:
        self.emit(ev.Reply(event.token, 1, "is stopping; start it again once stopped"))

    def on_adopt(self, event: ev.Adopt, now: float) -> None:
        self.state, self.pid, self.attempt = State.RUNNING, event.pid, "adopted"
        self.started_at = now if event.started_at is None else min(event.started_at, now)  # its real start
        self.ready_at = now
        self.watch_health(now)
        self.emit(ev.Log("adopted", {"pid": event.pid}), ev.Notify("READY=1"))
        self.emit(ev.Reply(event.token, 0, f"adopted the running service (pid {event.pid})"))

    def spawn(self, attempt: str, now: float) -> None:
        self.state, self.attempt, self.pid = State.STARTING, attempt, None
        self.next_retry_at = None
        if attempt in ("restart", "retry"):
            self.restarts += 1
        self.emit(ev.Spawn(attempt))

    def on_spawned(self, event: ev.Spawned, now: float) -> None:
        self.pid, self.started_at, self.ready_at = event.pid, now, None
        self.emit(ev.Log("spawned", {"pid": event.pid, "attempt": self.attempt}))
        if self.policy.ready_timeout is not None:
            self.emit(ev.StartProbe(), ev.ArmTimer("ready", now + self.policy.ready_timeout))
        else:
            self.emit(ev.ArmTimer("started", now + self.policy.start_seconds))

    def on_spawn_failed(self, event: ev.SpawnFailed, now: float) -> None:
        self.started_at = now
        self.start_failed(event.reason, now, ran=False)

    def on_ready(self, event: ev.Ready | ev.Timer, now: float) -> None:
        self.state, self.ready_at, self.stop_failed = State.RUNNING, now, None
        self.emit(ev.StopProbe(), ev.CancelTimer("ready"), ev.CancelTimer("started"))
        self.emit(ev.Log("ready" if isinstance(event, ev.Ready) else "running", {"pid": self.pid}))
        self.emit(ev.Notify("READY=1"))
        self.watch_health(now)
        self.reply("start", 0, "started")
        if self.attempt in ("initial", "reload"):
            self.degraded_at = None
            self.emit(ev.SaveGood())
        if self.attempt == "reload":
            self.reply("reload", 0, "reloaded: the new config is running")
            self.emit(ev.Log("reload_applied", {"pid": self.pid}))
        elif self.attempt == "rollback":
            self.degraded_at = now
            self.reply("reload", 1, f"reload failed ({self.last_exit}); rolled back to the last known good config")
            self.emit(ev.Log("rolled_back", {"pid": self.pid, "reason": self.last_exit}))
        if self.reload_queued:
            self.reload_queued = False
            self.on_reload(ev.Reload(source="queued"), now)

    def on_starting_timer(self, event: ev.Timer, now: float) -> None:
        if event.name == "started" and self.pid is not None:
            self.on_ready(event, now)
        elif event.name == "ready" and self.pid is not None:
            reason = f"not ready within {self.policy.ready_timeout:g}s"
            self.last_exit = reason
            self.emit(ev.StopProbe(), ev.Log("not_ready", {"pid": self.pid, "reason": reason}))
            self.begin_stop("failed_start", now, pending=reason)

    def start_failed(self, reason: str, now: float, ran: bool = True) -> None:
        self.pid = None
        self.last_exit, self.last_exit_at = reason, now
        self.emit(ev.Log("start_failed", {"attempt": self.attempt, "reason": reason}))
        if self.attempt == "initial":
            self.reply("start", 1, f"failed to start: {reason}")
            self.reply("reload", 1, f"failed to start: {reason}")
            self.state = State.STOPPED
            self.emit(ev.ExitSupervisor(1))
        elif self.attempt == "reload":
            self.emit(ev.RestoreGood())
            self.spawn("rollback", now)
        else:
            if self.attempt == "rollback":
                self.reply("reload", 1, f"reload failed ({reason}) and so did the rollback")
            self.after_failure(now, ran)

    # ---- exits ------------------------------------------------------------------------------

    def on_exited(self, event: ev.Exited, now: float) -> None:
        self.pid = None
        self.last_exit, self.last_exit_at = event.reason, now
        self.emit(ev.Log("exited", {"pid": event.pid, "status": event.reason, "clean": event.clean}))
        self.unwatch_health()
        if self.state is State.STARTING:
            self.emit(ev.StopProbe(), ev.CancelTimer("ready"), ev.CancelTimer("started"))
            if event.group_alive:
                return self.begin_stop("failed_start", now, pending=event.reason, group=True)
            return self.start_failed(event.reason, now)
        if self.goal == "down":  # a stop that ran out of schedule; the process finally went
            return self.finish_stop(now) if not event.group_alive else self.begin_stop("exit", now, group=True)
        if event.group_alive:
            return self.begin_stop("after_exit", now, pending=event, group=True)
        self.after_exit(event, now)

    def after_exit(self, event: ev.Exited, now: float) -> None:
        restart = self.policy.restart
        if restart == "never" or (restart == "on-failure" and event.clean):
            self.state = State.EXITED
            self.reply("reload", 7, "the service exited")
            return
        self.after_failure(now)

    def after_failure(self, now: float, ran: bool = True) -> None:
        decision = decide(self.policy.backoff, self.history, self.started_at or now, now, ran)
        if isinstance(decision, GiveUp):
            self.give_up(decision.reason, decision.retry_at)
        elif decision.delay == 0:
            self.spawn("restart", now)
        else:
            self.state, self.next_retry_at = State.BACKOFF, decision.at
            self.emit(ev.ArmTimer("restart", decision.at), ev.Log("backoff", {"delay": decision.delay}))
        self.reply("reload", 1, f"the service failed: {self.last_exit}")

    def give_up(self, reason: str, retry_at: float) -> None:
        self.state, self.gave_up_reason, self.next_retry_at = State.GAVE_UP, reason, retry_at
        self.emit(ev.ArmTimer("retry", retry_at), ev.Log("gave_up", {"reason": reason, "retry_at": retry_at}))

    def on_retry_timer(self, event: ev.Timer, now: float) -> None:
        if event.name in ("restart", "retry"):
            if event.name == "retry":
                self.gave_up_reason = None
            self.spawn(event.name, now)

    # ---- stopping ---------------------------------------------------------------------------

    def on_stop(self, event: ev.Stop, now: float) -> None:
        self.goal = "down"
        self.wait_for("stop", event.token)
        if self.state in (State.STARTING, State.RUNNING) and self.pid is not None:
            self.emit(ev.StopProbe(), ev.CancelTimer("ready"), ev.CancelTimer("started"))
            self.reply("start", 1, "stopped before it was ready")
            return self.begin_stop("exit", now)
        if self.state is State.STOPPING:
            self.reply("reload", 1, "stop requested")
            self.stop_run.purpose = "exit"
            if self.stop_run.exhausted:
                self.begin_stop("exit", now, group=self.stop_run.group)
            return
        self.emit(ev.CancelTimer("restart"), ev.CancelTimer("retry"))
        if event.leftovers:  # the service is gone, what it left is not: the schedule, group-wide
            return self.begin_stop("exit", now, group=True)
        self.finish_stop(now)

    def begin_stop(self, purpose: str, now: float, pending: object = None, group: bool = False) -> None:
        self.unwatch_health()
        if self.state is not State.STOPPING and purpose == "exit":
            self.emit(ev.Notify("STOPPING=1"))
        self.state = State.STOPPING
        self.stop_run = StopRun(purpose, 0, group, False, pending)
        if group:
            self.emit(ev.AwaitGroup())
        self.emit(ev.Log("stopping", {"pid": self.pid, "schedule": format_schedule(self.policy.schedule),
                                      "purpose": purpose, "group": group}))
        self.run_steps(now)

    def run_steps(self, now: float) -> None:
        run, steps = self.stop_run, self.policy.schedule.steps
        while True:
            step = steps[run.index]
            if not isinstance(step, Send):
                self.emit(ev.ArmTimer("stop", now + step.seconds))
                return
            self.emit(ev.Signal(step.signal, group=run.group, cont=True))
            following = self.policy.schedule.step_after(run.index)
            if following is None:
                return self.stop_exhausted(now)
            run.index = following

    def on_running_timer(self, event: ev.Timer, now: float) -> None:
        if event.name == "health":
            return self.on_health_timer(now)
        self.on_stop_timer(event, now)  # a stop whose schedule ran out may be retried

    def on_stop_timer(self, event: ev.Timer, now: float) -> None:
        if event.name != "stop" or self.stop_run is None or self.stop_run.exhausted:
            return
        following = self.policy.schedule.step_after(self.stop_run.index)
        if following is None:
            return self.stop_exhausted(now)
        self.stop_run.index = following
        self.run_steps(now)

    def stop_exhausted(self, now: float) -> None:
        run = self.stop_run
        run.exhausted = True
        what = "its process group" if run.group else f"pid {self.pid}"
        self.stop_failed = f"{what} still running after the stop schedule {format_schedule(self.policy.schedule)}"
        self.emit(ev.Log("stop_failed", {"reason": self.stop_failed}))
        self.reply("stop", 1, self.stop_failed)
        self.reply("reload", 1, self.stop_failed)
        if run.purpose != "exit":
            self.goal = "down" if run.purpose == "failed_start" else self.goal
        self.state = State.RUNNING if self.pid is not None else State.STOPPING

    def on_stopping_exit(self, event: ev.Exited, now: float) -> None:
        self.pid = None
        self.emit(ev.Log("exited", {"pid": event.pid, "status": event.reason, "clean": event.clean}))
        run = self.stop_run
        if event.group_alive and not run.group and not run.exhausted:
            # What is left of the group gets the rest of the *same* schedule, not a new one: a
            # start-stop-daemon --retry with the same schedule must not outlast us (issue 12).
            run.group = True
            self.emit(ev.AwaitGroup(), ev.Log("stopping", {"pid": event.pid, "group": True, "continuing": True}))
            sent = [step for step in self.policy.schedule.steps[:run.index] if isinstance(step, Send)]
            if sent:
                self.emit(ev.Signal(sent[-1].signal, group=True, cont=True))
            return
        self.emit(ev.CancelTimer("stop"))
        if event.group_alive and not run.group:
            return self.begin_stop(run.purpose, now, run.pending, group=True)
        self.finish_stop(now)

    def on_group_gone(self, event: ev.GroupGone, now: float) -> None:
        if self.state is State.STOPPING and self.stop_run and self.stop_run.group:
            self.emit(ev.CancelTimer("stop"))
            self.finish_stop(now)

    def finish_stop(self, now: float) -> None:
        run, self.stop_run = self.stop_run, None
        self.stop_failed = None
        purpose = run.purpose if run else "exit"
        if purpose == "exit" or self.goal == "down":
            self.state = State.STOPPED
            # exit first: the runtime answers "stopped" only once the PID file is gone
            self.emit(ev.Log("stopped", {}), ev.ExitSupervisor(0))
            self.reply("stop", 0, "stopped")
            self.reply("reload", 1, "stopped")
        elif purpose == "reload":
            self.spawn("reload", now)
        elif purpose == "failed_start":
            self.start_failed(run.pending, now)
        elif purpose == "health":
            self.after_health_stop(run.pending, now)
        else:
            self.after_exit(run.pending, now)

    def ignore(self, event: ev.Event, now: float) -> None:
        """Explicit no-op: a late timer, a probe result after the fact (like s6's &nop)."""

    def status(self) -> dict:
        return {
            "state": self.state.value, "pid": self.pid, "attempt": self.attempt, "started_at": self.started_at,
            "ready_at": self.ready_at, "restarts": self.restarts, "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at, "next_retry_at": self.next_retry_at,
            "gave_up_reason": self.gave_up_reason, "rejected": self.rejected, "degraded_at": self.degraded_at,
            "stop_failed": self.stop_failed, "goal": self.goal,
            "health": self.liveness.status() if self.liveness is not None else None,
        }


S = State
M = Machine
_Handler = Callable[[Machine, ev.Event, float], None]
TRANSITIONS: dict[tuple[State, type], _Handler] = {}
for _state in S:
    TRANSITIONS[(_state, ev.Stop)] = M.on_stop
    TRANSITIONS[(_state, ev.Ready)] = M.ignore
    TRANSITIONS[(_state, ev.GroupGone)] = M.ignore
    TRANSITIONS[(_state, ev.Timer)] = M.ignore
    TRANSITIONS[(_state, ev.HealthResult)] = M.ignore  # cancelled by a stop or reload: too late
    TRANSITIONS[(_state, ev.CheckDone)] = M.on_check_done
    TRANSITIONS[(_state, ev.Reload)] = M.on_reload_not_running
for _state in (S.STOPPED, S.EXITED, S.GAVE_UP, S.BACKOFF):
    TRANSITIONS[(_state, ev.Start)] = M.on_start
TRANSITIONS.update({
    (S.STOPPED, ev.Adopt): M.on_adopt,
    (S.STARTING, ev.Start): M.on_start_while_up,
    (S.RUNNING, ev.Start): M.on_start_while_up,
    (S.STOPPING, ev.Start): M.on_start_while_stopping,
    (S.STARTING, ev.Spawned): M.on_spawned,
    (S.STARTING, ev.SpawnFailed): M.on_spawn_failed,
    (S.STARTING, ev.Ready): M.on_ready,
    (S.STARTING, ev.Timer): M.on_starting_timer,  # "started" (no probe) or "ready" (probe timed out)
    (S.STARTING, ev.Exited): M.on_exited,
    (S.STARTING, ev.Reload): M.on_reload_later,
    (S.RUNNING, ev.Exited): M.on_exited,
    (S.RUNNING, ev.Reload): M.on_reload,
    (S.RUNNING, ev.Timer): M.on_running_timer,  # "health", or "stop" (an exhausted stop retried)
    (S.RUNNING, ev.HealthResult): M.on_health_result,
    (S.STOPPING, ev.Exited): M.on_stopping_exit,
    (S.STOPPING, ev.GroupGone): M.on_group_gone,
    (S.STOPPING, ev.Timer): M.on_stop_timer,
    (S.STOPPING, ev.Reload): M.on_reload_later,
    (S.BACKOFF, ev.Timer): M.on_retry_timer,
    (S.GAVE_UP, ev.Timer): M.on_retry_timer,
})
