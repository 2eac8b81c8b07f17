"""stop of a TERM-obedient child: wall time of the control command until it returns.

svctl stop (schedule TERM/30/KILL/5) vs `start-stop-daemon --stop --retry TERM/30/KILL/5 --pidfile`
vs `supervisorctl stop` vs the floor (floor_stop.py: a Python command that reads the pidfile, sends
SIGTERM and blocks on a pidfd until the process is gone). Starting the service is not timed.
"""

from __future__ import annotations

import random
import time

from harness import FLOOR_STOP, PYTHON, GoneStamps, MarkerDir, TermToGone, now_ns
from harness import run as run_cmd
from subjects import StartStopDaemon, Supervisord, Svctl, marker_command

SCHEDULE = "TERM/30/KILL/5"


def run_metric(
    ctx, metric: str, schedule: str, ignore_term: bool, n: int, subtract_ms: float = 0.0, floor: bool = True,
    kill_metric: str = "overshoot_kill",
) -> None:
    trials = {}

    ssd = ctx.keep(StartStopDaemon())

    def t_ssd():
        pid = ssd.start(ignore_term)
        watch = TermToGone(ssd.markers, pid) if ignore_term else None
        return (*run_cmd(ssd.stop_cmd(schedule)), watch)

    trials["start-stop-daemon"] = t_ssd

    if floor:

        def t_floor():
            ssd.start(ignore_term)
            return (*run_cmd([PYTHON, str(FLOOR_STOP), str(ssd.pidfile)]), None)

        trials["floor"] = t_floor

    stopwait = int(schedule.split("/")[1])
    supd_markers = ctx.root / f"supd-{metric}-markers"
    supd = ctx.keep(
        Supervisord(
            {
                "svc": {
                    "command": " ".join(marker_command(supd_markers / "svc", ignore_term)),
                    "autostart": False,
                    "stopwaitsecs": stopwait,
                }
            }
        )
    )
    sm = MarkerDir(supd_markers / "svc")
    supd.boot()

    def t_supd():
        sm.clear()
        wall, rc, out = supd.ctl("start", "svc")
        if rc != 0:
            raise RuntimeError(f"supervisorctl start: {out}")
        pid, _ = sm.wait_new(None, 10)
        watch = TermToGone(sm, pid) if ignore_term else None
        return (*run_cmd(supd.ctl_cmd("stop", "svc")), watch)

    trials["supervisorctl"] = t_supd

    if ctx.svctl_ok:
        svc = ctx.keep(Svctl())
        markers = svc.markers("svc")
        svc.define("svc", marker_command(markers.path, ignore_term), stop=schedule)

        def t_svctl():
            markers.clear()
            wall, rc, out = svc.start("svc")
            if rc != 0:
                raise RuntimeError(f"svctl start: {out}")
            pid, _ = markers.wait_new(None, 10)
            watch = TermToGone(markers, pid) if ignore_term else None
            supervisor = svc.supervisor_pid("svc")
            stamps = GoneStamps([pid, supervisor])
            t0 = now_ns()
            result = svc.stop("svc")
            t_end = now_ns()
            stamps.join(5)
            if pid in stamps.gone and supervisor in stamps.gone:  # where the time of `svctl stop` goes
                ctx.record(f"{metric}_phase1", "svctl", [(stamps.gone[pid] - t0) / 1e6])
                ctx.record(f"{metric}_phase2", "svctl", [(stamps.gone[supervisor] - stamps.gone[pid]) / 1e6])
                ctx.record(f"{metric}_phase3", "svctl", [(t_end - stamps.gone[supervisor]) / 1e6])
            return (*result, watch)

        trials["svctl"] = t_svctl

    for i in range(n):
        for name in random.sample(list(trials), len(trials)):
            wall, rc, out, watch = trials[name]()
            if rc != 0:
                ctx.note(f"{metric} {name}: exit {rc}: {out.strip()[-200:]}")
                continue
            ctx.record(metric, name, [wall * 1000 - subtract_ms])
            if watch is not None:
                value = watch.overshoot_ms(stopwait)
                if value is None:
                    ctx.note(f"{metric} {name}: SIGTERM or exit of the child not observed")
                else:
                    ctx.record(kill_metric, name, [value])
            time.sleep(0.05)
        ctx.log(
            f"  {metric} round {i + 1}/{n}: "
            + ", ".join(f"{k} {v[-1]:.1f}" for k, v in ctx.latency.get(metric, {}).items())
        )
    supd.shutdown()
    sm.close()


def run(ctx) -> None:
    run_metric(ctx, "stop", SCHEDULE, ignore_term=False, n=5 if ctx.quick else 15)
