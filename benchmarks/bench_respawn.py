"""crash→respawn: SIGKILL the trivial child; time until the new child has created its marker.

Subjects: svctl, the floor (waitpid + fork/exec in Python) and supervisord, interleaved. The clock
starts just before kill(2) and stops when inotify reports the new child's marker, so the figure
includes the child's own exec of /bin/sh (the same for every subject).

supervisord needs its child to have reached RUNNING (one main-loop tick after spawn) before the next
kill, or it counts the exit as a failed start and backs off; so each round kills supervisord's child
once and fills the wait with svctl and floor trials.
"""

from __future__ import annotations

import os
import random
import signal
import time

from harness import MarkerDir, now_ns
from subjects import Floor, Supervisord, Svctl, marker_command

SUPERVISORD_SETTLE = 1.25  # seconds after a supervisord respawn before its child may be killed again
GAP = 0.04  # seconds between two trials of the fast subjects


def crash_once(markers: MarkerDir, pid: int, timeout: float = 10.0) -> tuple[float, int]:
    """SIGKILL ``pid``; return (ms until a new marker appears, new pid)."""
    markers.clear()
    t0 = now_ns()
    os.kill(pid, signal.SIGKILL)
    new_pid, t1 = markers.wait_new(pid, timeout)
    return (t1 - t0) / 1e6, new_pid


def interleave(
    fast: dict[str, tuple[MarkerDir, int]],
    slow: dict[str, tuple[MarkerDir, int]],
    n_fast: int,
    n_slow: int,
    log,
) -> dict[str, list[float]]:
    """Round-robin trials: one kill per slow subject per round, fast subjects fill the settle time."""
    results: dict[str, list[float]] = {name: [] for name in [*fast, *slow]}
    current = {name: pid for name, (_, pid) in {**fast, **slow}.items()}
    markers = {name: m for name, (m, _) in {**fast, **slow}.items()}
    rounds = max(n_slow, 1) if slow else 1
    per_round = -(-n_fast // rounds)
    for r in range(rounds):
        busy_until = time.monotonic()
        for name in random.sample(list(slow), len(slow)):
            ms, current[name] = crash_once(markers[name], current[name])
            results[name].append(ms)
            busy_until = time.monotonic() + SUPERVISORD_SETTLE
        done = 0
        while done < per_round or time.monotonic() < busy_until:
            if done < per_round:
                for name in random.sample(list(fast), len(fast)):
                    if len(results[name]) < n_fast:
                        ms, current[name] = crash_once(markers[name], current[name])
                        results[name].append(ms)
                        time.sleep(GAP)
                done += 1
            else:
                time.sleep(0.01)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in results.items() if v))
    return results


def run(ctx) -> None:
    n_fast = 20 if ctx.quick else 60
    n_slow = 3 if ctx.quick else 12
    fast: dict[str, tuple[MarkerDir, int]] = {}
    slow: dict[str, tuple[MarkerDir, int]] = {}

    floor = ctx.keep(Floor())
    fast["floor"] = (floor.markers, floor.boot())

    if ctx.svctl_ok:
        svc = ctx.keep(Svctl())
        markers = svc.markers("crash")
        svc.define("crash", marker_command(markers.path))
        wall, rc, out = svc.start("crash")
        if rc == 0:
            pid, _ = markers.wait_new(None, 10)
            fast["svctl"] = (markers, pid)
        else:
            ctx.note(f"svctl start for crash→respawn exited {rc}: {out.strip()[-300:]}")

    supd_markers = ctx.root / "supd-crash-markers"
    supd = ctx.keep(Supervisord({"crash": {"command": " ".join(marker_command(supd_markers / "crash"))}}))
    sm = MarkerDir(supd_markers / "crash")
    supd.boot()
    pid, _ = sm.wait_new(None, 10)
    time.sleep(SUPERVISORD_SETTLE)
    slow["supervisord"] = (sm, pid)

    results = interleave(fast, slow, n_fast, n_slow, ctx.log)
    for name, values in results.items():
        ctx.record("respawn", name, values)
    if "svctl" in fast:
        svc.stop("crash")
    supd.shutdown()
    floor.shutdown()
