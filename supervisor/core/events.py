"""What the runtime tells the machine (events) and what the machine asks of it (effects).

Plain frozen records (core/record.py, not dataclasses: those cost the supervisor's start ~30 ms):
easy to build in tests, to compare, and to log. Each lists its fields in __slots__.
"""

from __future__ import annotations

from supervisor.core.record import Factory, Record

# ---- events ---------------------------------------------------------------------------------


class Start(Record):
    __slots__ = ("token",)  # who to answer (a control connection, the launcher's pipe); None: nobody
    defaults = {"token": None}


class Adopt(Record):
    """The service from an earlier supervisor is still alive (identity already verified).

    started_at: when it really started, on the machine's clock (the runtime reads it from the
    kernel); None when unknown, and the uptime then counts from the adoption.
    """

    __slots__ = ("pid", "token", "started_at")  # int, object, float | None
    defaults = {"token": None, "started_at": None}


class Stop(Record):
    # leftovers: processes the service left outside its group are still there (the runtime looked):
    # a stop of a service that has already exited (backoff, gave up) still gives them the stop schedule
    __slots__ = ("token", "leftovers")
    defaults = {"token": None, "leftovers": False}


class Reload(Record):
    # source: signal | cli | watch; unchanged: the watched files hold exactly the bytes the service
    # was started on
    __slots__ = ("token", "source", "unchanged")
    defaults = {"token": None, "source": "signal", "unchanged": False}


class Spawned(Record):
    __slots__ = ("pid",)


class SpawnFailed(Record):
    __slots__ = ("reason",)


class Exited(Record):
    # reason: "exit status 1", "killed by SIGKILL"; clean: exit status 0; group_alive: other
    # members of the service's process group remain
    __slots__ = ("pid", "reason", "clean", "group_alive")
    defaults = {"group_alive": False}


class GroupGone(Record):
    __slots__ = ()


class Ready(Record):
    __slots__ = ()


class Timer(Record):
    __slots__ = ("name",)


class CheckDone(Record):
    __slots__ = ("ok", "summary")


class HealthResult(Record):
    """A liveness probe's answer. PROBE: the number StartHealthProbe gave it (a late answer of an
    earlier probe is ignored). REASON: why it failed: "HTTP 503", "connection refused", "timed out"."""

    __slots__ = ("ok", "reason", "probe")
    defaults = {"reason": "", "probe": 0}


Event = (Start | Adopt | Stop | Reload | Spawned | SpawnFailed | Exited | GroupGone | Ready | Timer | CheckDone
         | HealthResult)

# ---- effects --------------------------------------------------------------------------------


class Spawn(Record):
    __slots__ = ("attempt",)  # initial | restart | reload | rollback | retry


class Signal(Record):
    # group: False: the main process; True: its whole process group. cont: followed by SIGCONT (a
    # frozen process must wake to act on it): the stop schedule's signals only; a reload signal
    # must not wake a service the admin froze
    __slots__ = ("signal", "group", "cont")
    defaults = {"group": False, "cont": False}


class ArmTimer(Record):
    __slots__ = ("name", "at")


class CancelTimer(Record):
    __slots__ = ("name",)


class StartProbe(Record):
    __slots__ = ()


class StopProbe(Record):
    __slots__ = ()


class StartHealthProbe(Record):
    """Probe the health URL once, off the loop: post HealthResult(ok, reason, probe), giving up
    after TIMEOUT seconds (the machine's own deadline counts a late answer as a failure anyway)."""

    __slots__ = ("probe", "timeout")


class StopHealthProbe(Record):
    """Cancel the probe in flight: its answer, if any, is never posted."""

    __slots__ = ()


class RunCheck(Record):
    __slots__ = ()


class AwaitGroup(Record):
    """Report GroupGone once the service's process group is empty (maybe at once)."""

    __slots__ = ()


class Reply(Record):
    __slots__ = ("token", "code", "message")


class Notify(Record):
    """An sd_notify message (READY=1, RELOADING=1, STOPPING=1)."""

    __slots__ = ("message",)


class Log(Record):
    __slots__ = ("event", "fields")
    defaults = {"fields": Factory(dict)}


class SaveGood(Record):
    """The watched files now in place are known good: snapshot them."""

    __slots__ = ()


class RestoreGood(Record):
    """Put the last known good watched files back."""

    __slots__ = ()


class ExitSupervisor(Record):
    __slots__ = ("code",)


Effect = (Spawn | Signal | ArmTimer | CancelTimer | StartProbe | StopProbe | StartHealthProbe | StopHealthProbe
          | RunCheck | AwaitGroup | Reply | Notify | Log | SaveGood | RestoreGood | ExitSupervisor)
