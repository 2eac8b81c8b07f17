"""config edit → reload applied: the overhead svctl adds beyond starting the service and validating.

The service watches one config file (watch = [CONF]), validates it with `check` (a /bin/sh grep)
and applies it by graceful restart (reload = "restart"). A trial atomically replaces CONF (write a
temp file, rename) and waits for the new child's marker:

    overhead = (edit → new child's marker) − (median wall of the check command, run directly)
               − (median of spawning the child directly: Popen → marker)

so what remains is svctl's own cost: noticing the edit, debouncing, hashing, running the check,
stopping the old child (a TERM-obedient sleep) and spawning. The `svctl reload NAME` path is timed the
same way (command wall, minus check, minus spawn, minus start_seconds, which it waits by design).
"""

from __future__ import annotations

import os
import subprocess
import time

from harness import SH, MarkerDir, now_ns, quantile
from harness import run as run_cmd
from subjects import Svctl, marker_command


def spawn_time(markers: MarkerDir, n: int) -> float:
    """Median ms from Popen of the marker child to its marker (the service's own start time)."""
    values = []
    for _ in range(n):
        markers.clear()
        t0 = now_ns()
        proc = subprocess.Popen(marker_command(markers.path), stdin=subprocess.DEVNULL)
        _, t1 = markers.wait_new(None, 5)
        values.append((t1 - t0) / 1e6)
        proc.kill()
        proc.wait()
    return quantile(values, 0.5)


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("reload: skipped, svctl not measurable")
        return
    n = 3 if ctx.quick else 10
    svc = ctx.keep(Svctl("reload"))
    conf = svc.root / "app.conf"
    conf.write_text("ok 0\n")
    check = [SH, "-c", f"grep -q '^ok' {conf}"]
    markers = svc.markers("app")
    start_seconds = 0.05
    svc.define(
        "app",
        marker_command(markers.path),
        stop="TERM/5/KILL/1",
        watch=[str(conf)],
        check=check,
        reload="restart",
        start_seconds=start_seconds,
        check_timeout=10,
    )
    wall, rc, out = svc.start("app")
    if rc != 0:
        ctx.note(f"reload: svctl start exited {rc}: {out.strip()[-300:]}")
        return
    pid, _ = markers.wait_new(None, 10)
    probe = MarkerDir(svc.root / "spawn-probe")
    spawn_ms = spawn_time(probe, 10)
    check_ms = quantile([run_cmd(check)[0] * 1000 for _ in range(10)], 0.5)
    ctx.extra.setdefault("reload", {}).update(
        {"spawn_ms": spawn_ms, "check_ms": check_ms, "start_seconds_ms": start_seconds * 1000}
    )
    time.sleep(1.0)
    for i in range(n):
        # 1. edit the watched file (atomic rename, as editors and config management do)
        markers.clear()
        tmp = conf.with_suffix(".tmp")
        tmp.write_text(f"ok {i + 1}\n")
        t0 = now_ns()
        os.rename(tmp, conf)
        try:
            new_pid, t1 = markers.wait_new(pid, 30)
        except TimeoutError:
            ctx.note(f"reload: edit {i + 1} was not applied within 30 s")
            continue
        total = (t1 - t0) / 1e6
        ctx.record("reload_total", "svctl", [total])
        ctx.record("reload", "svctl", [total - check_ms - spawn_ms])
        pid = new_pid
        time.sleep(1.2)  # past the debouncer's max_delay, so the next edit is a new burst
        # 2. `svctl reload NAME`
        markers.clear()
        wall, rc, out = run_cmd(svc.cmd("reload", "app"), timeout=60)
        if rc != 0:
            ctx.note(f"reload: svctl reload exited {rc}: {out.strip()[-200:]}")
        else:
            ctx.record("reload_cmd", "svctl", [wall * 1000 - check_ms - spawn_ms - start_seconds * 1000])
            try:
                pid, _ = markers.wait_new(pid, 5)
            except TimeoutError:
                ctx.note("reload: `svctl reload` returned 0 but no new child appeared")
        time.sleep(0.3)
        ctx.log(
            f"  reload {i + 1}/{n}: edit→applied {total:.0f} ms (overhead {total - check_ms - spawn_ms:.0f});"
            f" svctl reload {wall * 1000:.0f} ms"
        )
    svc.stop("app")
