"""The runtime's side of liveness (the logic is supervisor/core/liveness.py): one probe per
StartHealthProbe, off the loop (a slow or hung service must never hold it up), its answer posted
as HealthResult (one byte down the wake-up pipe). Nothing runs between probes: the worker sleeps
on its queue, and the only timer is the machine's "health".

A cancelled probe may still be in a connect or a read (at most the timeout, the resolver aside):
it finishes and posts nothing. The machine's own deadline fails a probe that is late for any
reason, so one stuck in the resolver costs failures, never a hung supervisor.
"""

from __future__ import annotations

from collections.abc import Callable

from supervisor.core import events as ev
from supervisor.core.liveness import HealthPolicy


def health_policy(config) -> HealthPolicy | None:
    if not config.health:
        return None
    return HealthPolicy(config.health_interval, config.health_timeout, config.health_failures)


def is_health_event(event) -> bool:
    """A probe's start or answer: when it changes nothing state.json shows (the service passes
    again), the runtime skips the write, so a healthy service costs no disk I/O per probe."""
    return isinstance(event, ev.HealthResult) or event == ev.Timer("health")


def shown(reason: str, limit: int = 200) -> str:
    """A reason fit for state.json: a bad status line quotes what the service sent (64 KiB of
    anything, at worst), so only its printable start."""
    text = "".join(char if char.isprintable() else "?" for char in reason[:limit])
    return text + "..." if len(reason) > limit else text


class HealthProbes:
    """One worker thread, started at the first probe, blocked on its queue between probes (no
    wake-up); a thread per probe would cost the loop a wait for each new thread to start."""

    def __init__(self, url: str, post: Callable[[ev.Event], None]) -> None:
        # imported here, like the thread and the probe code below: every supervisor imports
        # this module, only those with `health` pay for them (urllib's URL parsing, above all)
        import queue

        self.url, self.post = url, post
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.current: int | None = None  # the probe whose answer is wanted; None: none
        self.worker = None  # the threading.Thread, once started

    def start(self, probe: int, timeout: float) -> None:
        self.current = probe
        if self.worker is None:  # (a start that failed at the thread limit is tried again next time)
            import threading

            worker = threading.Thread(target=self._work, name="svctl-health", daemon=True)
            worker.start()
            self.worker = worker
        self.requests.put((probe, timeout))

    def _work(self) -> None:
        from supervisor.unix.probe import failure

        while (request := self.requests.get()) is not None:
            probe, timeout = request
            if probe != self.current:
                continue  # cancelled while a hung probe held the worker
            try:
                reason = failure(self.url, timeout)
            except Exception as exc:  # noqa: BLE001 - a bug here reads as a failed probe, not a hung one
                reason = f"probe error: {type(exc).__name__}: {exc}"
            if probe == self.current:
                self.post(ev.HealthResult(reason is None, shown(reason or ""), probe))

    def cancel(self) -> None:
        self.current = None

    def close(self) -> None:
        self.current = None
        self.requests.put(None)
