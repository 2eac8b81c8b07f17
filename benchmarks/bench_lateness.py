"""KILL lateness on a long schedule: a TERM-ignoring child, TERM/30/KILL/5 (the seed's own).

The value is SIGTERM→child gone − 30 s: how late the KILL step comes after a 30 s wait. One epoll
wait of 30 s gets the kernel's 0.1 % timer slack (~30 ms late); then start-stop-daemon's own
`--retry=TERM/30/KILL/5` KILLs the supervisor before the supervisor KILLs the service (issue 12
item 2). svctl splits long waits (supervisor/core/deadline.py). Target: ≤ 5 ms.
"""

from __future__ import annotations

from bench_stop import run_metric


def run(ctx) -> None:
    run_metric(ctx, "lateness", "TERM/30/KILL/5", ignore_term=True, n=1 if ctx.quick else 2,
               subtract_ms=30000.0, floor=False, kill_metric="lateness_kill")
