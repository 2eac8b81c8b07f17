"""status wall time, 30 runs each, interleaved, against a running service.

svctl status vs `supervisorctl status NAME` vs `start-stop-daemon --status --pidfile` vs LSB
`status_of_proc -p PIDFILE DAEMON NAME` (sourced from /lib/lsb/init-functions by /bin/sh) vs
`python3 -c pass` (the bare interpreter every Python command pays) and the venv's python -c pass (plus
the venv's site-packages .pth files, e.g. an editable install's finder).
"""

from __future__ import annotations

import os
import random

from harness import PYTHON, SH, MarkerDir
from harness import run as run_cmd
from subjects import StartStopDaemon, Supervisord, Svctl, marker_command


def run(ctx) -> None:
    n = 10 if ctx.quick else 30
    cmds: dict[str, list[str]] = {}
    ssd = ctx.keep(StartStopDaemon())
    ssd.start()
    cmds["start-stop-daemon"] = ssd.status_cmd()
    cmds["status_of_proc"] = [
        SH,
        "-c",
        '. /lib/lsb/init-functions; status_of_proc -p "$1" /bin/sleep svc',
        "sh",
        str(ssd.pidfile),
    ]
    bare = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else os.path.realpath(PYTHON)
    cmds["python3 -c pass"] = [bare, "-c", "pass"]  # the system interpreter, no venv
    cmds["venv python -c pass"] = [PYTHON, "-c", "pass"]  # plus the venv's site (editable-install finder)
    supd_markers = ctx.root / "supd-status-markers"
    supd = ctx.keep(Supervisord({"svc": {"command": " ".join(marker_command(supd_markers / "svc"))}}))
    sm = MarkerDir(supd_markers / "svc")
    supd.boot()
    sm.wait_new(None, 10)
    cmds["supervisorctl"] = supd.ctl_cmd("status", "svc")
    if ctx.svctl_ok:
        svc = ctx.keep(Svctl())
        markers = svc.markers("svc")
        svc.define("svc", marker_command(markers.path), stop="TERM/5/KILL/1")
        wall, rc, out = svc.start("svc")
        if rc == 0:
            cmds["svctl"] = svc.cmd("status", "svc")
            ctx.extra.setdefault("samples", {})["svctl status"] = svc.status("svc")[2][-2000:]
        else:
            ctx.note(f"status: svctl start exited {rc}: {out.strip()[-200:]}")
    for name, cmd in cmds.items():  # warm the page cache, check the exit codes once
        wall, rc, out = run_cmd(cmd)
        if rc != 0:
            ctx.note(f"status: {name} exited {rc} for a running service: {out.strip()[-200:]}")
    for _ in range(n):
        for name in random.sample(list(cmds), len(cmds)):
            wall, rc, out = run_cmd(cmds[name])
            ctx.record("status", name, [wall * 1000])
    ctx.log("  " + ", ".join(f"{k} {sorted(v)[len(v) // 2]:.1f}" for k, v in ctx.latency["status"].items()))
    if "svctl" in cmds:
        svc.stop("svc")
    ssd.kill()
    supd.shutdown()
    sm.close()
