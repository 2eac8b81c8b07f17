"""May root believe what a file says? Owner and write permissions of files and their directories.

Shared by PID files, state.json and the supervisor's identity file: each names processes that
root will signal, so each is believed only if nobody but root (or the caller) could have written it.
"""

from __future__ import annotations

import os
import stat


def trusted_owner(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def insecure_reason(info: os.stat_result, what: str, path: str) -> str | None:
    """Why a file or directory cannot be trusted to name a process for root, or None."""
    if not trusted_owner(info.st_uid):
        return f"{what} {path} is owned by uid {info.st_uid}, not root"
    if info.st_mode & stat.S_IWOTH:
        return f"{what} {path} is world-writable"
    if info.st_mode & stat.S_IWGRP:
        return f"{what} {path} is group-writable"
    return None


def directory_problem(directory: str) -> str | None:
    try:
        info = os.stat(directory)
    except OSError as exc:
        return f"cannot stat {directory}: {exc.strerror}"
    return insecure_reason(info, "directory", directory)
