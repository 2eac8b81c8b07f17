"""Every service at a glance: `svctl status` (no NAME) and `svctl list --json` over 20 defined
services, 30 runs each (--quick: 10), interleaved.

The 20 services: 10 running (real supervisors, each supervising a `sleep`) and 10 stopped after a
run (their state.json stays, so the TOML parser is not even imported). Next to them:
`supervisorctl status` of 20 programs (10 running) and the venv's `python -c pass`, the
interpreter start-up every svctl command pays. Target: svctl's median ≤ 50 ms for both commands.
Then, as after a reboot, 5 of the stopped services lose their state.json (never started since
boot): their files are parsed, which imports tomllib; `svctl status` is timed again (reported).
Every service is stopped at the end; the runner's cleanup SIGKILLs by PID whatever a failure left.
"""

from __future__ import annotations

import random
import subprocess

from harness import PYTHON, SVCTL
from harness import run as run_cmd
from subjects import Supervisord, Svctl

SERVICES = 20
RUNNING = 10
NEVER_STARTED = 5  # of the stopped ones, in the second round
PARSED = f"svctl status, {NEVER_STARTED} never started"
SLEEP = ["/bin/sleep", "600"]  # outlives the run; stopped (or killed by PID) at the end


def run(ctx) -> None:
    trials = 10 if ctx.quick else 30
    ctx.extra["status_all_n"] = SERVICES
    cmds: dict[str, list[str]] = {"venv python -c pass": [PYTHON, "-c", "pass"]}
    supd = ctx.keep(Supervisord({f"svc{i:02d}": {"command": " ".join(SLEEP), "autostart": i < RUNNING}
                                 for i in range(SERVICES)}, tag="supd-status-all"))
    supd.boot()
    cmds["supervisorctl status"] = supd.ctl_cmd("status")
    svc = running = None
    if ctx.svctl_ok:
        svc = ctx.keep(Svctl("svctl-status-all"))
        names = [f"svc{i:02d}" for i in range(SERVICES)]
        for name in names:
            svc.define(name, SLEEP, stop="TERM/2/KILL/1", start_seconds=0.1)
        running = names[:RUNNING]
        if not _all_ok(ctx, svc, "start", names) or not _all_ok(ctx, svc, "stop", names[RUNNING:]):
            running = None
        else:
            base = [SVCTL, "--config-dir", str(svc.config_dir), "--run-dir", str(svc.run_dir)]
            cmds["svctl status"] = [*base, "status"]
            cmds["svctl list --json"] = [*base, "list", "--json"]
            ctx.extra.setdefault("samples", {})["svctl status (all)"] = run_cmd(cmds["svctl status"])[2][-3000:]
    expected = {"svctl status": 1, "svctl list --json": 1, "venv python -c pass": 0}
    for name, cmd in cmds.items():  # warm the page cache, check the exit codes once
        wall, rc, out = run_cmd(cmd)
        if name in expected and rc != expected[name]:
            ctx.note(f"status_all: {name} exited {rc}, expected {expected[name]}: {out.strip()[-300:]}")
    for _ in range(trials):
        for name in random.sample(list(cmds), len(cmds)):
            wall, rc, out = run_cmd(cmds[name])
            ctx.record("status_all", name, [wall * 1000])
    if "svctl status" in cmds:  # as after a reboot: no state.json, so these files are parsed
        for name in names[-NEVER_STARTED:]:
            (svc.run_dir / name / "state.json").unlink(missing_ok=True)
        again = {PARSED: cmds["svctl status"], "venv python -c pass": cmds["venv python -c pass"]}
        for _ in range(trials):
            for name in random.sample(list(again), len(again)):
                wall, rc, out = run_cmd(again[name])
                ctx.record("status_all", name, [wall * 1000])
    ctx.log("  " + ", ".join(f"{k} {sorted(v)[len(v) // 2]:.1f}" for k, v in ctx.latency["status_all"].items()))
    if svc is not None and running:
        _all_ok(ctx, svc, "stop", running)
    supd.shutdown()


def _all_ok(ctx, svc: Svctl, verb: str, names: list[str]) -> bool:
    """`svctl VERB NAME` for every NAME at once (as a boot would); True if every one exited 0."""
    procs = [(name, subprocess.Popen(svc.cmd(verb, name), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)) for name in names]
    ok = True
    for name, proc in procs:
        try:
            out = proc.communicate(timeout=60)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0:
            ctx.note(f"status_all: svctl {verb} {name} exited {proc.returncode}: {out.strip()[-200:]}")
            ok = False
    return ok
