"""stop overshoot: a TERM-ignoring child, schedule TERM/2/KILL/1; time beyond the 2 s TERM wait.

The value recorded is (control command wall time − 2000 ms): how late the KILL step comes and how
long the command then takes to notice the process is gone.
"""

from __future__ import annotations

from bench_stop import run_metric


def run(ctx) -> None:
    run_metric(
        ctx,
        "overshoot",
        "TERM/2/KILL/1",
        ignore_term=True,
        n=2 if ctx.quick else 5,
        subtract_ms=2000.0,
        floor=False,
    )
