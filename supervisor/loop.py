"""The process loop: one selector, one wake-up pipe, timers and reaping for any number of services.

Everything that can wake the supervisor is a file descriptor in one selector: the signal wake-up
pipe (SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGUSR1 via ``signal.set_wakeup_fd``, plus a zero byte when
a helper thread posts an event or a call), the control socket, each service's output pipe and, for
a service adopted from a dead supervisor, its pidfd. The loop sleeps until one is readable or the
next deadline; there is no polling tick, and an idle loop makes no system call at all.

The loop knows nothing of what a service is. Its owners (the per-service drivers, driver.py, and
the front end that runs them: runtime.py for one service, up.py for many) give it:

- timers keyed by (owner, purpose): ``loop.timers_for(owner)`` is a dict-like view the owner uses
  with its own purpose names; a due timer calls ``owner.fire(purpose)``;
- reaping by PID: each exited child is offered to the drivers (``claims(pid)``); the one that
  started it gets ``before_reap`` (while it is still a zombie, so its group ID can't be reused)
  and ``reaped``; a child nobody claims (an orphan re-parented to us) goes to the front end;
- signals: SIGCHLD is the loop's own, the others go to the front end's ``on_signal``.

A full disk, the fd limit or a lost directory must not end the loop (issue 10 item 8): every
handler and timer runs under a guard, an error becomes a problem (supervisor/faults.py), and a
descriptor whose handler failed is left alone for a moment, so that a lasting failure (accept at
the fd limit) can't spin the loop.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import time

from supervisor.core.deadline import sleep_for
from supervisor.faults import PAUSE_SECONDS

HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1)
# a liveness probe's timer is not split (see Loop.run): a few ms don't matter to it, a second wake-up would
UNSPLIT_TIMERS = ("health",)


class OwnerTimers:
    """One owner's timers in the loop's table, used like a dict of purpose -> deadline."""

    __slots__ = ("table", "owner")

    def __init__(self, table: dict, owner) -> None:
        self.table, self.owner = table, owner

    def __setitem__(self, purpose: str, at: float) -> None:
        self.table[(self.owner, purpose)] = at

    def __getitem__(self, purpose: str) -> float:
        return self.table[(self.owner, purpose)]

    def __contains__(self, purpose: str) -> bool:
        return (self.owner, purpose) in self.table

    def get(self, purpose: str, default=None):
        return self.table.get((self.owner, purpose), default)

    def pop(self, purpose: str, default=None):
        return self.table.pop((self.owner, purpose), default)

    def items(self) -> list[tuple[str, float]]:
        return [(purpose, at) for (owner, purpose), at in self.table.items() if owner is self.owner]

    def clear(self) -> None:
        for key in [key for key in self.table if key[0] is self.owner]:
            del self.table[key]


class Loop:
    """FRONT: on_signal(number), orphan_reaped(pid, status), finished() -> bool, after_round(),
    drivers (a list: what may claim a child and has events to process), owns(fileobj) and faults."""

    def __init__(self, front) -> None:
        self.front = front
        self.selector = selectors.DefaultSelector()
        self.table: dict[tuple, float] = {}  # (owner, purpose) -> monotonic deadline
        self.timers = OwnerTimers(self.table, self)  # the loop's own: "resume"
        self.calls: collections.deque = collections.deque()  # posted by helper threads
        self.paused: dict = {}  # descriptor -> handler, while its handler's failure is cooling off
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)

    def timers_for(self, owner) -> OwnerTimers:
        return OwnerTimers(self.table, owner)

    # ---- what helper threads may call -------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: make the loop look at its queues."""
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def call_soon(self, function) -> None:
        """Thread-safe: run FUNCTION in the loop's thread, soon."""
        self.calls.append(function)
        self.wake()

    # ---- the loop ---------------------------------------------------------------------------

    def install_signals(self) -> None:
        for number in HANDLED_SIGNALS:
            signal.signal(number, lambda *_: None)  # the C handler writes the number to wake_w
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def run(self) -> None:
        """Until the front end is finished."""
        self.process()
        while not self.front.finished():
            key, deadline = min(self.table.items(), key=lambda item: item[1], default=(None, None))
            wait = None if deadline is None else deadline - time.monotonic()
            # a long wait is split so that the kernel's timer slack can't make a deadline late
            # (core/deadline.py); not a liveness probe's, and no stop timer runs beside one
            self.dispatch(max(0.0, wait) if key and key[1] in UNSPLIT_TIMERS else sleep_for(wait))
            self.fire_timers()
            self.process()

    def process(self) -> None:
        """Every driver's queued events, then the front end's own bookkeeping (start and stop order)."""
        while True:
            busy = [driver for driver in self.front.drivers if driver.events]
            for driver in busy:
                driver.process()
            self.front.after_round()
            if not any(driver.events for driver in self.front.drivers):
                return

    def dispatch(self, timeout: float | None) -> None:
        """Wait for the descriptors (at most TIMEOUT seconds) and run the handlers of those ready."""
        try:
            ready = self.selector.select(timeout)
        except Exception as exc:  # never seen; should it happen, don't spin on it
            self.front.faults.internal("waiting for events", exc)
            time.sleep(PAUSE_SECONDS)
            return
        for key, _ in ready:
            try:
                key.data(key.fileobj)
            except Exception as exc:
                self.front.faults.internal(f"in {getattr(key.data, '__name__', 'a handler')}", exc)
                self.pause(key.fileobj, key.data)

    def fire_timers(self) -> None:
        now = time.monotonic()
        for key, at in sorted(self.table.items(), key=lambda item: item[1]):
            if at > now:
                break
            if self.table.get(key) != at:  # an earlier one cancelled or moved it
                continue
            del self.table[key]
            owner, purpose = key
            try:
                self.resume() if owner is self else owner.fire(purpose)
            except Exception as exc:
                getattr(owner, "faults", self.front.faults).internal(f"at the {purpose} timer", exc)

    def pause(self, fileobj, handler) -> None:
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            return  # it was unregistered (closed) on the way
        self.paused[fileobj] = handler
        self.timers["resume"] = time.monotonic() + PAUSE_SECONDS

    def resume(self) -> None:
        paused, self.paused = self.paused, {}
        for fileobj, handler in paused.items():
            if fileobj == self.wake_r or self.front.owns(fileobj):  # not closed meanwhile, its number reused
                try:
                    self.selector.register(fileobj, selectors.EVENT_READ, handler)
                except (KeyError, ValueError, OSError):
                    pass

    def forget(self, fileobj) -> None:
        """FILEOBJ is about to be closed: out of the selector and of the paused ones."""
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass
        self.paused.pop(fileobj, None)

    # ---- wake-ups ---------------------------------------------------------------------------

    def on_wake(self, _fd) -> None:
        try:
            data = os.read(self.wake_r, 4096)
        except BlockingIOError:
            data = b""
        while self.calls:
            function = self.calls.popleft()
            try:
                function()
            except Exception as exc:
                self.front.faults.internal("a posted call", exc)
        for number in data:  # each on its own: a failure must not swallow the SIGTERM after it
            if not number:
                continue  # a thread's wake-up: its events are in a driver's queue
            try:
                self.reap() if number == signal.SIGCHLD else self.front.on_signal(number)
            except Exception as exc:
                self.front.faults.internal(f"handling signal {number}", exc)

    def reap(self) -> None:
        drivers = self.front.drivers
        while True:
            try:  # a peek first: a hook's group is killed while its zombie still holds the group's ID
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if found is None or not found.si_pid:
                    break
                owner = next((driver for driver in drivers if driver.claims(found.si_pid)), None)
                if owner is not None:
                    owner.before_reap(found.si_pid)
                pid, status = os.waitpid(found.si_pid, 0)  # a zombie: no wait
            except ChildProcessError:
                break
            if owner is not None:
                owner.reaped(pid, status)
            else:
                self.front.orphan_reaped(pid, status)
        for driver in drivers:
            driver.after_reap()

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
