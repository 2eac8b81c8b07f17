"""start → running and start → ready: wall time of the start command until it returns.

svctl: `svctl start` with start_seconds = 0 (spawned and alive at the supervisor's next look counts
as running: the meaning of supervisord's startsecs=0, so the two are timed to the same point) and, for
"ready", a `tcp://[::1]:PORT` probe against listener.py (a Python child that listens at once).
Peers, for reference: `start-stop-daemon --start --background` (returns after forking; waits for
nothing) and `supervisorctl start` (startsecs=0: returns when supervisord's loop marks RUNNING).
Stopping between trials is not timed.
"""

from __future__ import annotations

import random
import time

from harness import LISTENER_CHILD, PYTHON, SSD, MarkerDir
from harness import run as run_cmd
from subjects import StartStopDaemon, Supervisord, Svctl, marker_command

PORT = 19345


def run(ctx) -> None:
    n = 3 if ctx.quick else 10
    trials = {}
    ssd = ctx.keep(StartStopDaemon())

    def t_ssd_cmd():
        cmd = [
            SSD,
            "--start",
            "--background",
            "--make-pidfile",
            "--pidfile",
            str(ssd.pidfile),
            "--startas",
            "/bin/sh",
            "--",
            *marker_command(ssd.markers.path)[1:],
        ]
        wall, rc, out = run_cmd(cmd)
        ssd.markers.wait_new(None, 5)
        run_cmd(ssd.stop_cmd())
        return ("start_running", wall, rc, out)

    trials["start-stop-daemon"] = t_ssd_cmd

    supd_markers = ctx.root / "supd-start-markers"
    supd = ctx.keep(
        Supervisord({"svc": {"command": " ".join(marker_command(supd_markers / "svc")), "autostart": False}})
    )
    sm = MarkerDir(supd_markers / "svc")
    supd.boot()

    def t_supd():
        wall, rc, out = run_cmd(supd.ctl_cmd("start", "svc"))
        supd.ctl("stop", "svc")
        return ("start_running", wall, rc, out)

    trials["supervisorctl"] = t_supd

    if ctx.svctl_ok:
        svc = ctx.keep(Svctl())
        markers = svc.markers("svc")
        svc.define("svc", marker_command(markers.path), stop="TERM/5/KILL/1", start_seconds=0)
        rmarkers = svc.markers("ready")
        svc.define(
            "ready",
            [PYTHON, str(LISTENER_CHILD), str(rmarkers.path), str(PORT)],
            stop="TERM/5/KILL/1",
            ready=f"tcp://[::1]:{PORT}",
            ready_timeout=20,
        )

        def t_svctl():
            wall, rc, out = svc.start("svc")
            svc.stop("svc")
            return ("start_running", wall, rc, out)

        def t_svctl_ready():
            wall, rc, out = svc.start("ready")
            svc.stop("ready")
            return ("start_ready", wall, rc, out)

        trials["svctl"] = t_svctl
        trials["svctl ready"] = t_svctl_ready

    for i in range(n):
        for name in random.sample(list(trials), len(trials)):
            metric, wall, rc, out = trials[name]()
            subject = name.split()[0]
            if rc != 0:
                ctx.note(f"{metric} {subject}: exit {rc}: {out.strip()[-200:]}")
                continue
            ctx.record(metric, subject, [wall * 1000])
            time.sleep(0.05)
        ctx.log(
            f"  start round {i + 1}/{n}: "
            + ", ".join(
                f"{m}/{k} {v[-1]:.1f}"
                for m in ("start_running", "start_ready")
                for k, v in ctx.latency.get(m, {}).items()
            )
        )
    supd.shutdown()
    sm.close()
