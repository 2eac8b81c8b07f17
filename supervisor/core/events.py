"""What the runtime tells the machine (events) and what the machine asks of it (effects).

Plain frozen dataclasses: easy to build in tests, to compare, and to log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    token: Any = None  # who to answer (a control connection, the launcher's pipe); None: nobody


@dataclass(frozen=True)
class Adopt:
    """The service from an earlier supervisor is still alive (identity already verified).

    started_at: when it really started, on the machine's clock (the runtime reads it from the
    kernel); None when unknown, and the uptime then counts from the adoption.
    """

    pid: int
    token: Any = None
    started_at: float | None = None


@dataclass(frozen=True)
class Stop:
    token: Any = None
    # processes the service left outside its group are still there (the runtime looked): a stop of
    # a service that has already exited (backoff, gave up) still gives them the stop schedule
    leftovers: bool = False


@dataclass(frozen=True)
class Reload:
    token: Any = None
    source: str = "signal"  # signal | cli | watch
    unchanged: bool = False  # the watched files hold exactly the bytes the service was started on


@dataclass(frozen=True)
class Spawned:
    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    reason: str


@dataclass(frozen=True)
class Exited:
    pid: int
    reason: str  # "exit status 1", "killed by SIGKILL"
    clean: bool  # exit status 0
    group_alive: bool = False  # other members of the service's process group remain


@dataclass(frozen=True)
class GroupGone:
    pass


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class Timer:
    name: str


@dataclass(frozen=True)
class CheckDone:
    ok: bool
    summary: str


@dataclass(frozen=True)
class HealthResult:
    """A liveness probe's answer. PROBE: the number StartHealthProbe gave it (a late answer of an
    earlier probe is ignored)."""

    ok: bool
    reason: str = ""  # why it failed: "HTTP 503", "connection refused", "timed out"
    probe: int = 0


Event = (Start | Adopt | Stop | Reload | Spawned | SpawnFailed | Exited | GroupGone | Ready | Timer | CheckDone
         | HealthResult)

# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    attempt: str  # initial | restart | reload | rollback | retry


@dataclass(frozen=True)
class Signal:
    signal: int
    group: bool = False  # False: the main process; True: its whole process group
    # followed by SIGCONT (a frozen process must wake to act on it): the stop schedule's signals
    # only; a reload signal must not wake a service the admin froze
    cont: bool = False


@dataclass(frozen=True)
class ArmTimer:
    name: str
    at: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class StartProbe:
    pass


@dataclass(frozen=True)
class StopProbe:
    pass


@dataclass(frozen=True)
class StartHealthProbe:
    """Probe the health URL once, off the loop: post HealthResult(ok, reason, probe), giving up
    after TIMEOUT seconds (the machine's own deadline counts a late answer as a failure anyway)."""

    probe: int
    timeout: float


@dataclass(frozen=True)
class StopHealthProbe:
    """Cancel the probe in flight: its answer, if any, is never posted."""


@dataclass(frozen=True)
class RunCheck:
    pass


@dataclass(frozen=True)
class AwaitGroup:
    """Report GroupGone once the service's process group is empty (maybe at once)."""


@dataclass(frozen=True)
class Reply:
    token: Any
    code: int
    message: str


@dataclass(frozen=True)
class Notify:
    """An sd_notify message (READY=1, RELOADING=1, STOPPING=1)."""

    message: str


@dataclass(frozen=True)
class Log:
    event: str
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SaveGood:
    """The watched files now in place are known good: snapshot them."""


@dataclass(frozen=True)
class RestoreGood:
    """Put the last known good watched files back."""


@dataclass(frozen=True)
class ExitSupervisor:
    code: int


Effect = (Spawn | Signal | ArmTimer | CancelTimer | StartProbe | StopProbe | StartHealthProbe | StopHealthProbe
          | RunCheck | AwaitGroup | Reply | Notify | Log | SaveGood | RestoreGood | ExitSupervisor)
