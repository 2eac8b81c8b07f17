"""Stop schedules in start-stop-daemon ``--retry`` syntax, parsed and formatted (pure).

Grammar (dpkg's start-stop-daemon(8), --retry):
  ``30``               a bare timeout: TERM, wait 30 s, KILL, wait 30 s
  ``TERM/30/KILL/5``   items separated by ``/``; an item is a timeout (it starts with a digit),
                       a signal (``TERM``, ``-TERM``, ``-15``) or ``forever``
  ``forever``          at most once and not last: the items after it repeat until the process is gone
svctl extensions: timeouts may have a fractional part (``TERM/0.5/KILL/1``, handy in tests), and a
schedule must end with a timeout, so that every stop has an observed outcome.
"""

from __future__ import annotations

from supervisor.core.record import Record
from supervisor.core.signals import parse_signal, signal_name


# Records (core/record.py), not namedtuples or dataclasses: `svctl status` imports this module and
# must start in a few milliseconds (collections, or dataclasses with inspect and typing, cost more
# than the rest of its imports). `kind` names the step in what status and the events show.
class Send(Record):
    """Send this signal (int) to what is left of the service."""

    __slots__ = ("signal", "kind")
    defaults = {"kind": "send"}


class Wait(Record):
    """Wait up to this many seconds (float) for the service to be gone."""

    __slots__ = ("seconds", "kind")
    defaults = {"kind": "wait"}


Step = Send | Wait


class Schedule(Record):
    """steps: tuple[Step, ...]; repeat_from: index of the first step after ``forever``, or None."""

    __slots__ = ("steps", "repeat_from")
    defaults = {"repeat_from": None}

    def step_after(self, index: int) -> int | None:
        """Index of the step that follows ``index``, or None when the schedule is exhausted."""
        if index + 1 < len(self.steps):
            return index + 1
        return self.repeat_from

    @property
    def total_seconds(self) -> float | None:
        """Longest time the schedule can take (None for ``forever``)."""
        if self.repeat_from is not None:
            return None
        return sum(step.seconds for step in self.steps if isinstance(step, Wait))


class ScheduleError(ValueError):
    pass


# The longest wait the supervisor's event loop can sleep through in one call: epoll takes its
# timeout in milliseconds as a C int (2**31 ms is 24.8 days); longer raises OverflowError there.
# Every timeout in a service file is bounded by this, so a typo cannot crash the supervisor later.
MAX_SECONDS = 24 * 86400
MAX_ITEMS = 64  # a stop schedule is a handful of steps; this bounds total_seconds too


def _parse_timeout(item: str) -> float:
    whole, _, fraction = item.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or item.endswith("."):
        raise ScheduleError(f"{item!r} is not a timeout in seconds")
    seconds = float(item)  # digits only: finite, though perhaps huge
    if seconds > MAX_SECONDS:
        shown = item if len(item) <= 20 else item[:17] + "..."
        raise ScheduleError(f"timeout {shown} is longer than {MAX_SECONDS} s (24 days), the most svctl waits")
    return seconds


def parse_schedule(text: str) -> Schedule:
    """Parse a ``--retry`` schedule; raises ScheduleError saying what is wrong."""
    text = text.strip()
    if not text:
        raise ScheduleError("the schedule is empty")
    items = text.split("/")
    if len(items) > MAX_ITEMS:
        raise ScheduleError(f"{len(items)} items; a schedule has at most {MAX_ITEMS}")
    if len(items) == 1:
        if not items[0][:1].isdigit():
            raise ScheduleError(f"a one-item schedule must be a timeout (like 30), not {items[0]!r}")
        seconds = _parse_timeout(items[0])
        return Schedule((Send(15), Wait(seconds), Send(9), Wait(seconds)))
    steps: list[Step] = []
    repeat_from = None
    for item in items:
        if item == "forever":
            if repeat_from is not None:
                raise ScheduleError("'forever' may appear only once")
            repeat_from = len(steps)
        elif item[:1].isdigit():
            steps.append(Wait(_parse_timeout(item)))
        elif item:
            try:
                steps.append(Send(parse_signal(item)))
            except ValueError as exc:
                raise ScheduleError(str(exc)) from None
        else:
            raise ScheduleError(f"empty item in {text!r}")
    if repeat_from is not None and repeat_from >= len(steps):
        raise ScheduleError("'forever' cannot be the last item")
    if not isinstance(steps[-1], Wait):
        raise ScheduleError("the schedule must end with a timeout, so that the stop has an outcome")
    if not any(isinstance(step, Send) for step in steps):
        raise ScheduleError("the schedule sends no signal")
    return Schedule(tuple(steps), repeat_from)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def _format_signal(number: int) -> str:
    name = signal_name(number)
    return name if not name.isdigit() else f"-{name}"  # a bare number would read as a timeout


def format_schedule(schedule: Schedule) -> str:
    """The canonical text of a schedule: ``parse_schedule(format_schedule(s)) == s``."""
    items = [_format_signal(step.signal) if isinstance(step, Send) else _format_seconds(step.seconds)
             for step in schedule.steps]
    if schedule.repeat_from is not None:
        items.insert(schedule.repeat_from, "forever")
    return "/".join(items)
