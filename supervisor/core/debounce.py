"""Turn a burst of file-change notifications into one reload (pure; times are monotonic seconds).

Each notification calls ``kick(now)``. The debouncer becomes due ``delay`` seconds after the *last*
kick (editors and ``sed -i`` produce several events per save, a deploy script several saves), but
never later than ``max_delay`` seconds after the *first* kick of the burst, so a file that is
rewritten continuously still gets reloaded regularly instead of being starved forever.

With ``max_delay = 1.0`` a burst of any number of writes spread over one second fires at most twice:
once at ``first + max_delay`` and once ``delay`` after the last write that came later.

The runtime uses it like this (the core never sleeps or reads a clock)::

    debouncer.kick(clock.now())                # on every watch wake-up
    timeout = debouncer.deadline() - now       # include in the loop's next-deadline computation
    if debouncer.take(clock.now()):            # True once per burst
        paths = watcher.changed()
"""

from __future__ import annotations


class Debouncer:
    """Trailing-edge debounce with a bound on the total wait."""

    def __init__(self, delay: float = 0.3, max_delay: float = 1.0) -> None:
        if delay < 0 or max_delay < 0:
            raise ValueError("delay and max_delay must not be negative")
        self.delay = delay
        # A max_delay below delay would make the trailing delay meaningless; clamp rather than fail
        # so a config of "reload fast" cannot produce a debouncer that never waits for quiet.
        self.max_delay = max(delay, max_delay)
        self._first: float | None = None  # first kick of the pending burst
        self._last: float | None = None  # latest kick of the pending burst

    @property
    def pending(self) -> bool:
        return self._first is not None

    def kick(self, now: float) -> None:
        """Record a notification at ``now``; starts a burst if none is pending."""
        if self._first is None:
            self._first = now
        # max() because the loop may feed kicks whose timestamps were taken slightly out of order.
        self._last = now if self._last is None else max(self._last, now)

    def deadline(self) -> float | None:
        """When the pending burst becomes due, or None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.delay, self._first + self.max_delay)

    def due(self, now: float) -> bool:
        """True when a burst is pending and its deadline has passed (does not consume it)."""
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def take(self, now: float) -> bool:
        """If due, consume the pending burst and return True (exactly once per burst)."""
        if not self.due(now):
            return False
        self.cancel()
        return True

    def cancel(self) -> None:
        """Forget the pending burst (e.g. the service was stopped, so there is nothing to reload)."""
        self._first = None
        self._last = None
