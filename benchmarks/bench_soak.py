"""Soak: 1000 crash-restarts (200 with --quick) of one svctl service; the supervisor's open fds,
RSS and thread count are sampled every 100 crashes and must not grow. The respawn latencies of the
soak are kept too (a large sample of crash→respawn)."""

from __future__ import annotations

import time

from bench_respawn import crash_once
from harness import proc_cost
from subjects import Svctl, marker_command


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("soak: skipped, svctl not measurable")
        return
    total = getattr(ctx, "soak_crashes", 0) or (200 if ctx.quick else 1000)
    every = max(1, total // (4 if ctx.quick else 10))
    svc = ctx.keep(Svctl("soak"))
    markers = svc.markers("soak")
    svc.define("soak", marker_command(markers.path), stop="TERM/5/KILL/1")
    wall, rc, out = svc.start("soak")
    if rc != 0:
        ctx.note(f"soak: svctl start exited {rc}: {out.strip()[-300:]}")
        return
    pid, _ = markers.wait_new(None, 10)
    sup = svc.supervisor_pid("soak")
    samples = []

    def take(crashes: int) -> None:
        cost = proc_cost(sup)
        samples.append(
            {
                "crashes": crashes,
                "fds": cost["fds"],
                "rss": cost["rss"],
                "threads": cost["threads"],
                "cpu": cost["cpu"],
            }
        )

    take(0)
    t0 = time.monotonic()
    latencies, missed = [], 0
    for i in range(1, total + 1):
        try:
            ms, pid = crash_once(markers, pid, timeout=10)
            latencies.append(ms)
        except TimeoutError:
            missed += 1
            pid = markers.latest_pid()
        time.sleep(0.01)
        if i % every == 0:
            time.sleep(0.05)
            take(i)
            ctx.log(
                f"  soak {i}/{total}: fds {samples[-1]['fds']}, RSS {samples[-1]['rss']:.1f} MB, "
                f"median so far {sorted(latencies)[len(latencies) // 2]:.1f} ms"
            )
    ctx.record("soak_respawn", "svctl", latencies)
    ctx.extra["soak"] = {
        "crashes": total,
        "seconds": time.monotonic() - t0,
        "missed": missed,
        "samples": samples,
    }
    svc.stop("soak")
