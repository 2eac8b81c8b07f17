"""Liveness (pure): probe a running service every health_interval; restart it after health_failures
consecutive failures.

Probes run only while the service is RUNNING and not being stopped or reloaded: the cycle starts
one interval after the service became running (ready, adopted, or reloaded by signal) and ends
when it leaves RUNNING. One timer, "health", drives it: while no probe is in flight it is the next
probe's time; while one is in flight it is that probe's deadline (health_timeout), so a probe that
hangs is a failure on time whatever the probe itself does, and the idle cost is one timer and one
answer per interval. Probes start at a fixed rate (one interval after the previous one started, or
at once when that probe took longer), so N failures are noticed within N x interval + timeout.

Every probe has a number; an answer for any probe but the one in flight (it was cancelled by a
stop or a reload, or it came after its deadline) is ignored.

The service is restarted whatever `restart` says (that key is about exits of its own; `health`
asks for this restart). A liveness restart is a failure like a crash, and counts toward the crash
backoff and giving up:
  - a run that passed a probe was healthy until it hung: like a crash after a run, the backoff
    decides by its uptime (min_uptime);
  - a run that never passed a probe is a quick failure whatever its uptime (noticing a hang takes
    health_failures x health_interval, longer than min_uptime): it backs off, and counts toward
    give_up_after. Since each such failure takes that long to notice, give_up_window could never
    hold give_up_after of them with the usual settings; so give_up_after liveness restarts in a row
    whose runs never passed a probe also give the service up. A passing probe ends the streak.

A mixin of Machine (supervisor/core/machine.py), like reloads.py; the record is Liveness.
"""

from __future__ import annotations

from supervisor.core import events as ev
from supervisor.core.record import Record


class HealthPolicy(Record):
    __slots__ = ("interval", "timeout", "failures")
    defaults = {"interval": 30.0, "timeout": 5.0, "failures": 3}


class Liveness:
    """What `status` shows of the health checks, and the probe in flight."""

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self.state = "pending"  # pending (no answer yet in this run) | passing | failing
        self.failures = 0  # consecutive
        self.last_failure: str | None = None
        self.last_failure_at: float | None = None  # monotonic
        self.restarts = 0
        self.watching = False  # probes are due: RUNNING, not stopping or reloading
        self.probe = 0  # the number of the last probe started
        self.in_flight = False
        self.probe_started = 0.0
        self.passed = False  # a probe passed in this run
        self.hung_streak = 0  # liveness restarts in a row whose runs never passed a probe

    def status(self) -> dict:
        return {"state": self.state, "failures": self.failures, "last_failure": self.last_failure,
                "last_failure_at": self.last_failure_at, "restarts": self.restarts}


class LivenessHandlers:
    liveness: Liveness | None

    def watch_health(self, now: float) -> None:
        """The service is running (again): a fresh cycle, its first probe one interval from now."""
        live = self.liveness
        if live is None:
            return
        live.watching, live.in_flight, live.passed = True, False, False
        live.state, live.failures = "pending", 0
        self.emit(ev.ArmTimer("health", now + live.policy.interval))

    def unwatch_health(self) -> None:
        """Leaving RUNNING (stop, restart, reload, exit): no more probes, the one in flight cancelled."""
        live = self.liveness
        if live is None or not live.watching:
            return
        live.watching = False
        self.emit(ev.CancelTimer("health"))
        if live.in_flight:
            live.in_flight = False
            self.emit(ev.StopHealthProbe())

    def on_health_timer(self, now: float) -> None:
        live = self.liveness
        if live is None or not live.watching:
            return  # a late timer
        if live.in_flight:
            live.in_flight = False
            self.emit(ev.StopHealthProbe())
            return self.health_failed(f"no answer within {live.policy.timeout:g}s", now)
        live.probe += 1
        live.in_flight, live.probe_started = True, now
        self.emit(ev.StartHealthProbe(live.probe, live.policy.timeout),
                  ev.ArmTimer("health", now + live.policy.timeout))

    def on_health_result(self, event: ev.HealthResult, now: float) -> None:
        live = self.liveness
        if live is None or not live.watching or not live.in_flight or event.probe != live.probe:
            return  # cancelled, or after its deadline
        live.in_flight = False
        if not event.ok:
            return self.health_failed(event.reason or "failed", now)
        live.state, live.failures, live.passed, live.hung_streak = "passing", 0, True, 0
        self.arm_next_probe(now)

    def arm_next_probe(self, now: float) -> None:
        live = self.liveness
        self.emit(ev.ArmTimer("health", max(live.probe_started + live.policy.interval, now)))

    def health_failed(self, reason: str, now: float) -> None:
        live = self.liveness
        live.state, live.failures = "failing", live.failures + 1
        live.last_failure, live.last_failure_at = reason, now
        self.emit(ev.Log("health_failed", {"pid": self.pid, "reason": reason, "failures": live.failures}))
        if live.failures < live.policy.failures:
            return self.arm_next_probe(now)
        live.restarts += 1
        self.emit(ev.Log("health_restart", {"reason": reason, "failures": live.failures}))
        self.begin_stop("health", now, pending=reason)

    def after_health_stop(self, reason: str, now: float) -> None:
        """The unhealthy service is gone: restart it, as after a crash (see the module's docstring)."""
        live = self.liveness
        self.last_exit, self.last_exit_at = f"unhealthy: {reason}", now
        if live.passed:
            return self.after_failure(now)
        live.hung_streak += 1
        give_up_after = self.policy.backoff.give_up_after
        if give_up_after and live.hung_streak >= give_up_after:
            live.hung_streak = 0
            self.history.reset()
            self.give_up(f"{give_up_after} liveness restarts in a row without a passing probe",
                         now + self.policy.backoff.cooldown)
            return self.reply("reload", 1, f"the service failed: {self.last_exit}")
        self.after_failure(now, ran=False)
