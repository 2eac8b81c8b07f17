"""When to restart a service that exited on its own (pure; times are monotonic seconds).

A run that lasted at least ``min_uptime`` was healthy: it resets the streak and restarts at once.
Quick failures back off exponentially (``initial * 2**(n-1)``, capped at ``maximum``). After
``give_up_after`` quick failures within ``window`` seconds the service is given up, and tried
again after ``cooldown``, so a host that recovers (a disk remounted, a port freed) gets its service
back without an operator.
"""

from __future__ import annotations

from supervisor.core.record import Factory, Record


class BackoffPolicy(Record):
    __slots__ = ("min_uptime", "initial", "maximum", "give_up_after", "window", "cooldown")
    defaults = {"min_uptime": 1.0, "initial": 0.1, "maximum": 30.0, "give_up_after": 5, "window": 60.0,
                "cooldown": 300.0}


class RestartAt(Record):
    __slots__ = ("at", "delay")


class GiveUp(Record):
    __slots__ = ("reason", "retry_at")


class FailureHistory(Record, frozen=False):
    """The quick failures that count towards giving up (TIMES: monotonic times; STREAK: in a row)."""

    __slots__ = ("times", "streak")
    defaults = {"times": Factory(list), "streak": 0}

    def reset(self) -> None:
        self.times.clear()
        self.streak = 0


def decide(policy: BackoffPolicy, history: FailureHistory, started: float, now: float,
           ran: bool = True) -> RestartAt | GiveUp:
    """Record an exit at ``now`` of a run that began at ``started`` and say what to do next.

    RAN is False when the service could not even be spawned (fd limit, exec failure): that is
    never a healthy run, whatever ``min_uptime`` says, so it always backs off instead of
    retrying in a tight loop.
    """
    if ran and now - started >= policy.min_uptime:
        history.reset()
        return RestartAt(now, 0.0)
    history.streak += 1
    history.times.append(now)
    history.times[:] = [t for t in history.times if now - t < policy.window]
    if policy.give_up_after and len(history.times) >= policy.give_up_after:
        reason = f"{len(history.times)} quick failures within {policy.window:g}s"
        history.reset()
        return GiveUp(reason, now + policy.cooldown)
    delay = min(policy.initial * 2 ** (history.streak - 1), policy.maximum)
    return RestartAt(now + delay, delay)
