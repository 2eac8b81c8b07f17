"""Scale and idle cost: 100 services under svctl (one supervisor each) and under one supervisord.

1. start 100: svctl = 100 `svctl start` commands launched at once (as a parallel boot would), each
   for its own service, start_seconds = 0 (running = spawned and alive at the supervisor's next look);
   supervisord = `supervisorctl start all` (autostart=false, startsecs=0). Two figures each: until
   every child has written its marker, and until the control command(s) returned.
2. idle: with everything up, sample CPU time, context switches (all threads), RSS and PSS of the
   supervisor processes over a window (20 s; 5 s with --quick), for svctl with 1 and 100 services,
   supervisord with 1 and 100 programs, and the floor parent, all in the same window.
3. crash→respawn while 100 are supervised: one victim service among the 100, interleaved like
   bench_respawn (svctl, svctl up and the floor fill supervisord's settle time).
4. `svctl up` (issue 14), the same 100 services in ONE foreground process, side by side with the
   above in the same run: start-all = Popen(`svctl up`) until every child has written its marker
   (a fresh up process each trial, SIGTERMed between trials); it is in the idle sample (PSS, wake-ups)
   and in crash→respawn; at the end SIGTERM must make it stop everything and exit 0, leaving nothing.
"""

from __future__ import annotations

import subprocess
import time

from bench_respawn import SUPERVISORD_SETTLE, interleave
from harness import MarkerDir, alive, proc_cost
from subjects import Floor, Supervisord, Svctl, SvctlUp, marker_command

N = 100  # --quick: 30 (see run())
VICTIM = "s010"


def names() -> list[str]:
    return [f"s{i:03d}" for i in range(N)]


def count(markers: MarkerDir) -> int:
    return sum(1 for p in markers.path.iterdir() if p.name.isdigit())


def start_svctl_all(svc: Svctl, markers: MarkerDir, vmarkers: MarkerDir) -> tuple[float, float, list[str]]:
    for d in (markers, vmarkers):
        for p in d.path.iterdir():
            p.unlink()
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            svc.cmd("start", name), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for name in names()
    ]
    all_markers = None
    failures = []
    pending = list(procs)
    while pending or all_markers is None:
        if all_markers is None and count(markers) + count(vmarkers) >= N:
            all_markers = time.perf_counter() - t0
        for proc in list(pending):
            if proc.poll() is not None:
                pending.remove(proc)
                if proc.returncode != 0:
                    failures.append(proc.stdout.read().decode(errors="replace").strip()[-200:])
        if time.perf_counter() - t0 > 120:
            raise TimeoutError(f"svctl start x{N}: {count(markers)} markers after 120 s")
        time.sleep(0.001)
    return all_markers, time.perf_counter() - t0, failures


def stop_svctl_all(svc: Svctl) -> None:
    procs = [
        subprocess.Popen(
            svc.cmd("stop", name),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names()
    ]
    for proc in procs:
        proc.wait(120)


def start_supd_all(supd: Supervisord, markers: MarkerDir, vmarkers: MarkerDir) -> tuple[float, float]:
    for d in (markers, vmarkers):
        for p in d.path.iterdir():
            p.unlink()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        supd.ctl_cmd("start", "all"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    all_markers = None
    while proc.poll() is None or all_markers is None:
        if all_markers is None and count(markers) + count(vmarkers) >= N:
            all_markers = time.perf_counter() - t0
        if time.perf_counter() - t0 > 120:
            raise TimeoutError("supervisorctl start all: 120 s")
        time.sleep(0.001)
    return all_markers, time.perf_counter() - t0


def start_up_all(up: SvctlUp, markers: MarkerDir, vmarkers: MarkerDir) -> float:
    """Popen `svctl up`; seconds until all N children have written their markers."""
    for d in (markers, vmarkers):
        for p in d.path.iterdir():
            p.unlink()
    t0 = time.perf_counter()
    up.boot()
    while count(markers) + count(vmarkers) < N:
        early = up.exited_early()
        if early:
            raise RuntimeError(early)
        if time.perf_counter() - t0 > 120:
            raise TimeoutError(f"svctl up x{N}: {count(markers) + count(vmarkers)} markers after 120 s")
        time.sleep(0.001)
    return time.perf_counter() - t0


def stop_up(ctx, up: SvctlUp, problems: list[str]) -> dict:
    """SIGTERM `svctl up`: it must stop every service and exit 0; kill by PID whatever it left."""
    supervised = len(up.children())
    rc, seconds, left = up.terminate(timeout=60)
    ctx.log(f"  svctl up SIGTERM: exit {rc} after {seconds * 1000:.0f} ms, {len(left)} of {supervised} left alive")
    if rc != 0:
        problems.append(f"svctl up exited {rc} on SIGTERM (expected 0)")
    if left:
        problems.append(f"svctl up left {len(left)} process(es) alive after SIGTERM (SIGKILLed): {left[:5]}")
    return {"rc": rc, "seconds": seconds, "descendants_before": supervised, "left_alive": left}


def sample(groups: dict[tuple[str, int], list[int]]) -> dict:
    out = {}
    for key, pids in groups.items():
        out[key] = [proc_cost(pid) for pid in pids if alive(pid)]
    return out


def run(ctx) -> None:
    global N
    N = 30 if ctx.quick else 100
    ctx.extra["scale_n"] = N
    trials = 1 if ctx.quick else 2
    window = 5.0 if ctx.quick else 20.0
    root = ctx.root / "scale"
    # supervisord with 100 programs (autostart false: `start all` is timed) and with 1 program
    sd_m, sd_v = MarkerDir(root / "supd100"), MarkerDir(root / "supd100-victim")
    programs = {
        name: {
            "command": " ".join(marker_command((sd_v if name == VICTIM else sd_m).path)),
            "autostart": False,
        }
        for name in names()
    }
    supd = ctx.keep(Supervisord(programs, tag="supd100"))
    supd.boot()
    sd1_m = MarkerDir(root / "supd1")
    supd1 = ctx.keep(Supervisord({"one": {"command": " ".join(marker_command(sd1_m.path))}}, tag="supd1"))
    supd1.boot()
    floor = ctx.keep(Floor())
    floor.boot()

    svc = None
    if ctx.svctl_ok:
        svc = ctx.keep(Svctl("svctl100"))
        sv_m, sv_v = MarkerDir(root / "svctl100"), MarkerDir(root / "svctl100-victim")
        for name in names():
            # start_seconds = 0: running when spawned and alive at the next look (supervisord's startsecs=0)
            svc.define(name, marker_command((sv_v if name == VICTIM else sv_m).path), stop="TERM/5/KILL/1",
                       start_seconds=0)
        svc1 = ctx.keep(Svctl("svctl1"))
        sv1_m = svc1.markers("one")
        svc1.define("one", marker_command(sv1_m.path), stop="TERM/5/KILL/1", start_seconds=0)
        wall, rc, out = svc1.start("one")
        if rc != 0:
            ctx.note(f"scale: svctl start one exited {rc}: {out.strip()[-200:]}")
    up_problems: list[str] = []
    up_data: dict = {"n": N, "start_ms": [], "stops": []}
    ctx.extra["up"] = up_data
    # up is tried even when `svctl start` is not usable (svctl_ok): another code path
    up: SvctlUp | None = ctx.keep(SvctlUp("up100"))
    up_m, up_v = MarkerDir(root / "up100"), MarkerDir(root / "up100-victim")
    for name in names():
        up.define(name, marker_command((up_v if name == VICTIM else up_m).path), stop="TERM/5/KILL/1")

    for t in range(trials):
        last = t == trials - 1
        markers_s, cmd_s = start_supd_all(supd, sd_m, sd_v)
        ctx.record("start100", "supervisord", [markers_s * 1000])
        ctx.record("start100_cmd", "supervisord", [cmd_s * 1000])
        line = f"  start {N}: supervisord markers {markers_s * 1000:.0f} ms, command {cmd_s * 1000:.0f} ms"
        if up:
            try:
                markers_u = start_up_all(up, up_m, up_v)
            except (RuntimeError, OSError) as exc:  # up not there yet / broken: measure the rest
                ctx.note(f"scale: svctl up not measurable: {exc}")
                up_data["unavailable"] = str(exc)
                up.kill_all()
                up = None
            else:
                ctx.record("start100", "svctl up", [markers_u * 1000])
                up_data["start_ms"].append(markers_u * 1000)
                line += f"; svctl up markers {markers_u * 1000:.0f} ms"
        if svc:
            try:
                markers_v, cmd_v, failures = start_svctl_all(svc, sv_m, sv_v)
            except TimeoutError as exc:  # a loaded machine: keep the other subjects' figures
                ctx.note(f"scale: per-service svctl dropped from this run: {exc}")
                svc.kill_all()
                svc = None
            else:
                ctx.record("start100", "svctl", [markers_v * 1000])
                ctx.record("start100_cmd", "svctl", [cmd_v * 1000])
                if failures:
                    ctx.note(f"scale: {len(failures)} svctl start failed, e.g. {failures[0]}")
                line += f"; svctl markers {markers_v * 1000:.0f} ms, commands {cmd_v * 1000:.0f} ms"
        ctx.log(line)
        if not last:
            supd.ctl("stop", "all")
            if svc:
                stop_svctl_all(svc)
            if up:
                up_data["stops"].append(stop_up(ctx, up, up_problems))

    # idle window, everything sampled together
    time.sleep(1.0)
    groups: dict[tuple[str, int], list[int]] = {
        ("supervisord", 1): [supd1.pid],
        ("supervisord", N): [supd.pid],
        ("floor", 1): [floor.proc.pid],
    }
    if svc:
        groups[("svctl", 1)] = [p for p in [svc1.supervisor_pid("one")] if p]
        groups[("svctl", N)] = [p for p in (svc.supervisor_pid(n) for n in names()) if p]
    if up:
        groups[("svctl up", N)] = [up.pid]
        up_data["descendants_idle"] = len(up.children())
    before = sample(groups)
    t0 = time.monotonic()
    time.sleep(window)
    after = sample(groups)
    seconds = time.monotonic() - t0
    rows = []
    for subject, services in groups:
        a, b = after[(subject, services)], before[(subject, services)]
        if not a or len(a) != len(b):
            ctx.note(f"idle: {subject} x{services}: {len(b)} processes before, {len(a)} after")
            continue
        cpu = sum(x["cpu"] for x in a) - sum(x["cpu"] for x in b)
        wake = sum(x["vol"] + x["invol"] for x in a) - sum(x["vol"] + x["invol"] for x in b)
        rss = sum(x["rss"] for x in a)
        pss = sum(x["pss"] for x in a)
        uss = sum(x["uss"] for x in a)
        rows.append(
            {
                "subject": subject,
                "services": services,
                "processes": len(a),
                "seconds": seconds,
                "cpu_s": cpu,
                "wakeups_per_s_per_process": wake / seconds / len(a),
                "rss_mb_per_service": rss / services,
                "pss_mb_per_service": pss / services,
                "pss_mb_total": pss,
                "uss_mb_total": uss,
                "wakeups": wake,
                "threads": [x["threads"] for x in a][:3],
            }
        )
        ctx.log(
            f"  idle {subject} x{services}: cpu {cpu:.3f} s,"
            f" {wake / seconds / len(a):.2f} wake-ups/s/process,"
            f" RSS {rss / services:.1f} MB/service, PSS total {pss:.1f} MB"
        )
    ctx.extra["idle"] = rows

    # crash→respawn with 100 supervised
    fast, slow = {}, {}
    if svc:
        pid = sv_v.latest_pid()
        fast["svctl"] = (sv_v, pid)
    if up:
        fast["svctl up"] = (up_v, up_v.latest_pid())
    fast["floor"] = (floor.markers, floor.markers.latest_pid())
    pid = sd_v.latest_pid()
    slow["supervisord"] = (sd_v, pid)
    time.sleep(SUPERVISORD_SETTLE)
    results = interleave(fast, slow, 20 if ctx.quick else 40, 2 if ctx.quick else 8, ctx.log)
    for name, values in results.items():
        ctx.record("respawn100", name, values)

    if up:
        up_data["stops"].append(stop_up(ctx, up, up_problems))
    if svc:
        stop_svctl_all(svc)
        svc1.stop("one")
    supd.shutdown()
    supd1.shutdown()
    floor.shutdown()
    up_data["problems"] = up_problems
    if up_problems:  # after every figure is recorded: the run reports scale as failed
        raise AssertionError("; ".join(up_problems))
