"""The machine's reload handlers (pure): a reload asked for by a signal, `svctl reload` or the file
watcher, the config check before it, and applying it by signal or by a validated graceful restart.

A mixin of Machine (supervisor/core/machine.py): it uses the machine's state, waiters and stop.
"""

from __future__ import annotations

from supervisor.core import events as ev
from supervisor.core.signals import signal_name
from supervisor.core.states import State


class ReloadHandlers:
    def on_reload(self, event: ev.Reload, now: float) -> None:
        if event.unchanged and self.policy.reload_signal is None and not self.checking:
            # a restart would only cost an outage: the service already runs on these bytes (a
            # logrotate postrotate reload, or a rejected edit put back as it was)
            self.rejected = None
            self.emit(ev.Log("reload_unchanged", {"source": event.source}))
            return self.emit(ev.Reply(event.token, 0, "unchanged: the service already runs this config"))
        self.wait_for("reload", event.token)
        self.emit(ev.Log("reload_requested", {"source": event.source}))
        if self.checking:
            self.check_again = True
        elif self.policy.has_check:
            self.checking = True
            self.emit(ev.RunCheck())
        else:
            self.apply_reload(now)

    def on_reload_later(self, event: ev.Reload, now: float) -> None:
        self.wait_for("reload", event.token)
        self.reload_queued = True

    def on_reload_not_running(self, event: ev.Reload, now: float) -> None:
        self.emit(ev.Reply(event.token, 7, f"not running ({self.state.value})"),
                  ev.Log("reload_ignored", {"source": event.source, "state": self.state.value}))

    def on_check_done(self, event: ev.CheckDone, now: float) -> None:
        self.checking = False
        if self.check_again:  # the files changed again while we checked: the newest content decides
            self.check_again = False
            self.checking = True
            return self.emit(ev.RunCheck())
        if not event.ok:
            self.rejected = (event.summary, now)
            self.emit(ev.Log("reload_refused", {"reason": event.summary}))
            return self.reply("reload", 6, f"config rejected: {event.summary}")
        self.rejected = None
        if self.state is State.RUNNING and self.pid is not None:
            return self.apply_reload(now)
        if self.state is State.STARTING:
            self.reload_queued = True
        else:
            self.reply("reload", 7, f"not running ({self.state.value})")

    def apply_reload(self, now: float) -> None:
        if self.policy.reload_signal is not None:
            # the service stays up: liveness starts over, so a probe that straddles the reload
            # (its answer may be the old config's or the reloading service's) never counts
            self.unwatch_health()
            self.watch_health(now)
            self.emit(ev.Signal(self.policy.reload_signal), ev.SaveGood())
            self.emit(ev.Log("reload_applied", {"signal": signal_name(self.policy.reload_signal)}))
            return self.reply("reload", 0, f"reloaded (sent {signal_name(self.policy.reload_signal)})")
        self.emit(ev.Notify("RELOADING=1"))
        self.begin_stop("reload", now)
