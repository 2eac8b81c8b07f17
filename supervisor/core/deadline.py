"""How long to sleep until a deadline so that the wake-up is on time (pure).

The kernel may fire a poll/epoll timeout late by its timer slack, which for an ordinary task is
0.1 % of the timeout, up to 100 ms: one 30 s wait wakes ~30 ms late, and a `TERM/30/KILL/5`
schedule sends KILL after start-stop-daemon's own `--retry=TERM/30/KILL/5` has already given up
on the supervisor. So a long wait is split: first sleep to a little before the deadline (early by
more than the slack), then sleep the short rest, whose slack is microseconds.
"""

from __future__ import annotations

SLACK_FRACTION = 1 / 500  # twice the kernel's 0.1 %
MAX_EARLY = 0.11  # the kernel's slack never exceeds 100 ms: wake a little before even that
SHORT = 0.01  # below this, one wait is precise enough (its slack is ~10 µs)


def sleep_for(remaining: float | None) -> float | None:
    """The timeout for the next wait, REMAINING seconds before the deadline (None: no deadline)."""
    if remaining is None:
        return None
    if remaining <= SHORT:
        return max(0.0, remaining)
    return remaining - min(MAX_EARLY, max(remaining * SLACK_FRACTION, 0.002))


def stop_lead(wait: float) -> float:
    """How much earlier than its nominal end a stop-schedule wait fires: up to 60 ms (2 %).

    `start-stop-daemon --stop --retry=TERM/30/KILL/5 --pidfile` (the seed's init script) runs the
    same schedule against the supervisor that the supervisor runs against the service, starting a
    moment earlier: were the supervisor's KILL on time to the millisecond, s-s-d's KILL would still
    reach the supervisor first and leave a TERM-ignoring service running unsupervised. The lead
    also covers what the supervisor does after its KILL (reap, publish, remove the PID file,
    exit: ~30 ms), so s-s-d finds it gone rather than KILLing it mid-clean-up.
    """
    return min(0.06, max(0.0, wait) * 0.02)
