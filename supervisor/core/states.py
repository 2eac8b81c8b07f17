"""The supervisor's states, shared by the machine and the handlers it is assembled from (pure)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    EXITED = "exited"
    GAVE_UP = "gave-up"


class IllegalTransition(Exception):
    pass
