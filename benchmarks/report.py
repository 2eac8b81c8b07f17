"""Turn one run's data into benchmarks/results/latest.{md,json,png}; return the Markdown text."""

from __future__ import annotations

from pathlib import Path

import report_light
import report_up
from harness import dump_json, quantile

DISRUPTION_SUBJECTS = ["hub-managed proxy", "external proxy"]

# metric id -> (title, floor subject or None, subjects in display order); a floor "metric:subject"
# takes the floor from another metric of the same run (the JupyterHub rows: the bare hub's start)
METRICS: dict[str, tuple[str, str | None, list[str]]] = {
    "respawn": ("crash→respawn", "floor", ["svctl", "floor", "supervisord"]),
    "respawn100": ("crash→respawn, 100 supervised", "floor", ["svctl", "svctl up", "floor", "supervisord"]),
    "stop": ("stop, TERM-obedient child", "floor", ["svctl", "floor", "start-stop-daemon", "supervisorctl"]),
    "overshoot_kill": (
        "stop overshoot: SIGTERM→child gone − 2 s (TERM-ignoring, TERM/2/KILL/1)",
        None,
        ["svctl", "start-stop-daemon", "supervisorctl"],
    ),
    "lateness_kill": (
        "KILL lateness: SIGTERM→child gone − 30 s (TERM-ignoring, TERM/30/KILL/5)",
        None,
        ["svctl", "start-stop-daemon", "supervisorctl"],
    ),
    "lateness": ("KILL lateness: command wall − 30 s (same trials)", None, ["svctl", "start-stop-daemon",
                                                                             "supervisorctl"]),
    "overshoot": (
        "stop overshoot: command wall − 2 s (same trials)",
        None,
        ["svctl", "start-stop-daemon", "supervisorctl"],
    ),
    "stop_phase1": ("`svctl stop` phase: command start → service gone", None, ["svctl"]),
    "stop_phase2": ("`svctl stop` phase: service gone → supervisor gone", None, ["svctl"]),
    "stop_phase3": ("`svctl stop` phase: supervisor gone → command returns", None, ["svctl"]),
    "overshoot_phase1": ("overshoot trials: command start → service gone", None, ["svctl"]),
    "overshoot_phase2": ("overshoot trials: service gone → supervisor gone", None, ["svctl"]),
    "overshoot_phase3": ("overshoot trials: supervisor gone → command returns", None, ["svctl"]),
    "start_running": ("start → running", None, ["svctl", "start-stop-daemon", "supervisorctl"]),
    "start_ready": ("start → ready (tcp://[::1] probe)", None, ["svctl"]),
    "status": (
        "status wall",
        "python3 -c pass",
        [
            "svctl",
            "supervisorctl",
            "start-stop-daemon",
            "status_of_proc",
            "python3 -c pass",
            "venv python -c pass",
        ],
    ),
    "status_all": (
        "status of every service (20 defined: 10 running, 10 stopped)",
        "venv python -c pass",
        ["svctl status", "svctl list --json", "svctl status, 5 never started", "supervisorctl status",
         "venv python -c pass"],
    ),
    "status_pip": ("status wall, non-editable pip install in a fresh venv", "pip venv python -c pass",
                   ["svctl (pip install)", "pip venv python -c pass"]),
    "status_deb": ("status wall, the .deb's wrapper (/usr/bin/python3 -I)", "python3 -I -c pass",
                   ["svctl (.deb wrapper)", "python3 -I -c pass"]),
    "start100": ("start 100 services (all markers written)", None, ["svctl", "svctl up", "supervisord"]),
    "start100_cmd": ("start 100 services (control commands return)", None, ["svctl", "supervisord"]),
    "reload": ("config edit → reload applied, overhead", None, ["svctl"]),
    "reload_total": ("config edit → new child serving, total", None, ["svctl"]),
    "reload_cmd": ("`svctl reload` → applied, overhead", None, ["svctl"]),
    "soak_respawn": ("crash→respawn during the soak", None, ["svctl"]),
    "jh_start": (
        "JupyterHub start → /hub/health 200 (svctl: `svctl start` wall; bare: `jupyterhub -f`)",
        "bare hub",
        ["svctl", "bare hub"],
    ),
    "jh_kill": ("JupyterHub SIGKILL hub → 200 from a new hub", "jh_start:bare hub", ["svctl"]),
    "jh_reload_total": (
        "JupyterHub config edit → reload_applied and 200",
        "jh_start:bare hub",
        ["svctl"],
    ),
    "jh_reload_check": (
        "JupyterHub reload validation (reload_requested → check_finished)",
        "jh_start:bare hub",
        ["svctl"],
    ),
    "jh_reload": (
        "JupyterHub config edit → 200, overhead (− bare start − validation)",
        "jh_start:bare hub",
        ["svctl"],
    ),
    "jh_reload_outage": (
        "JupyterHub config edit: hub's outage, last 200 before → first 200 after (/hub/health)",
        None,
        ["svctl"],
    ),
    "jh_stop": (
        "JupyterHub stop (svctl: `svctl stop` wall; bare: SIGTERM → hub and proxy gone)",
        None,
        ["svctl", "bare hub"],
    ),
    # bench_disruption: one config reload per trial, seen from a user's server (subjects: proxy modes)
    "jh_user_outage": (
        "JupyterHub reload, user's server: first failed request → 200 again",
        None,
        DISRUPTION_SUBJECTS,
    ),
    "jh_user_hub_down": (
        "JupyterHub reload, same trials: hub's outage, first failed /hub/health → 200",
        None,
        DISRUPTION_SUBJECTS,
    ),
    "jh_user_hub_gap": (
        "JupyterHub reload, same trials: hub's outage, last 200 before → first 200 after",
        None,
        DISRUPTION_SUBJECTS,
    ),
    "jh_user_hub_restart": (
        "JupyterHub reload, same trials: edit → reload_applied and /hub/health 200",
        None,
        DISRUPTION_SUBJECTS,
    ),
}


def _med(data, metric, subject):
    values = data["latency_ms"].get(metric, {}).get(subject)
    return quantile(values, 0.5) if values else None


def _fmt(value, digits=1):
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def latency_table(data) -> list[str]:
    lines = [
        "| metric | subject | n | median ms | p95 ms | × floor | supervisord ÷ subject |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for metric, (title, floor, order) in METRICS.items():
        subjects = data["latency_ms"].get(metric)
        if not subjects:
            continue
        names = [s for s in order if s in subjects] + [s for s in subjects if s not in order]
        title = title.replace("100", str(data["extra"].get("scale_n", 100)))
        floor_med = None
        if floor:
            floor_med = _med(data, *floor.split(":", 1)) if ":" in floor else _med(data, metric, floor)
        supd = _med(data, metric, "supervisord") or _med(data, metric, "supervisorctl")
        for name in names:
            values = subjects[name]
            med, p95 = quantile(values, 0.5), quantile(values, 0.95)
            ratio = f"{med / floor_med:.2f}×" if floor_med and name != floor and med and med > 0 else ""
            speed = (
                (f"{supd / med:.0f}×" if supd / med >= 10 else f"{supd / med:.2f}×")
                if supd and supd > 0 and med and med > 0 and name not in ("supervisord", "supervisorctl")
                else ""
            )
            lines.append(
                f"| {title} | {name} | {len(values)} | {_fmt(med)} | {_fmt(p95)} | {ratio} | {speed} |"
            )
    return lines


def idle_table(data) -> list[str]:
    rows = data["extra"].get("idle")
    if not rows:
        return []
    seconds = rows[0]["seconds"]
    lines = [
        f"Idle cost over {seconds:.0f} s (supervisor processes only; wake-ups = voluntary + involuntary "
        "context switches of all threads):",
        "",
        "| subject | services | supervisor processes | CPU s | wake-ups/s per process | RSS MB per service | "
        "PSS MB per service | PSS MB total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['subject']} | {row['services']} | {row['processes']} | {row['cpu_s']:.3f} | "
            f"{row['wakeups_per_s_per_process']:.2f} | {row['rss_mb_per_service']:.1f} | "
            f"{row['pss_mb_per_service']:.1f} | {row['pss_mb_total']:.1f} |"
        )
    return lines


def soak_table(data) -> list[str]:
    soak = data["extra"].get("soak")
    if not soak:
        return []
    lines = [
        f"Soak: {soak['crashes']} crash-restarts of one service in {soak['seconds']:.0f} s "
        f"({soak['missed']} not seen within 10 s).",
        "",
        "| after crashes | supervisor fds | supervisor RSS MB | supervisor threads |",
        "|---:|---:|---:|---:|",
    ]
    for point in soak["samples"]:
        lines.append(f"| {point['crashes']} | {point['fds']} | {point['rss']:.2f} | {point['threads']} |")
    return lines


def _disruption_by_subject(data) -> dict[str, list[dict]]:
    trials = (data["extra"].get("disruption") or {}).get("trials") or []
    out: dict[str, list[dict]] = {}
    for trial in trials:
        if "outage" in trial:  # a trial cut short by an error has no figures
            out.setdefault(trial["subject"], []).append(trial)
    return out


def disruption_table(data) -> list[str]:
    by_subject = _disruption_by_subject(data)
    if not by_subject:
        return []
    user = data["extra"]["disruption"].get("user", "the user")
    lines = [
        f"JupyterHub config reload as a user sees it: {user}'s server, GET /user/{user}/api/status "
        "through the proxy every 10 ms (bench_disruption):",
        "",
        "| proxy | trials | user outage median ms | failed user requests (each trial) | user requests | "
        "user server kept its PID | hub outage median ms | edit → hub healthy median ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in [s for s in DISRUPTION_SUBJECTS if s in by_subject] + [
        s for s in by_subject if s not in DISRUPTION_SUBJECTS
    ]:
        trials = by_subject[name]
        failed = ", ".join(str(t["failed"]) for t in trials)
        kept = sum(1 for t in trials if t.get("pid_kept"))
        down = [t["hub_down"] for t in trials if "hub_down" in t]
        lines.append(
            f"| {name} | {len(trials)} | {_fmt(quantile([t['outage'] for t in trials], 0.5))} | {failed} | "
            f"{sum(t['requests'] for t in trials)} | {kept}/{len(trials)} | {_fmt(quantile(down, 0.5))} | "
            f"{_fmt(quantile([t['hub_restart'] for t in trials], 0.5))} |"
        )
    return lines


def disruption_targets(data) -> list[tuple[str, str, str]]:
    """Issue 11: what a reload costs a user, in both proxy modes (zero with the external proxy)."""
    by_subject = _disruption_by_subject(data)
    out = []
    external = by_subject.get("external proxy")
    if external:
        failed, sent = sum(t["failed"] for t in external), sum(t["requests"] for t in external)
        out.append(
            (
                "JupyterHub reload, external proxy: no failed request to a user's server",
                f"{failed} of {sent} in {len(external)} trial(s)",
                "met" if failed == 0 else "**MISSED**",
            )
        )
    hub = by_subject.get("hub-managed proxy")
    if hub:
        out.append(
            (
                "JupyterHub reload, hub-managed proxy: user's outage, median (report)",
                f"{_fmt(quantile([t['outage'] for t in hub], 0.5))} ms, "
                f"{_fmt(quantile([t['failed'] for t in hub], 0.5), 0)} failed requests a trial",
                "report",
            )
        )
    trials = [t for group in by_subject.values() for t in group]
    if trials:
        kept = sum(1 for t in trials if t.get("pid_kept"))
        out.append(
            (
                "JupyterHub reload: the user's server keeps its PID (cleanup_servers = False), both modes",
                f"{kept}/{len(trials)} trials",
                "met" if kept == len(trials) else "**MISSED**",
            )
        )
    return out


def targets(data) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every svctl target of issue 7."""
    out: list[tuple[str, str, str]] = []
    med = lambda m, s: _med(data, m, s)  # noqa: E731

    def verdict(ok):
        return "–" if ok is None else ("met" if ok else "**MISSED**")

    s, f, d = med("respawn", "svctl"), med("respawn", "floor"), med("respawn", "supervisord")
    out.append(("crash→respawn median ≤ 20 ms", f"{_fmt(s)} ms", verdict(None if s is None else s <= 20)))
    out.append(
        (
            "crash→respawn ≤ 1.3× floor",
            f"{s / f:.2f}× ({_fmt(f)} ms floor)" if s and f else "–",
            verdict(None if not (s and f) else s <= 1.3 * f),
        )
    )
    out.append(
        (
            "crash→respawn ≥ 50× faster than supervisord",
            f"{d / s:.0f}× ({_fmt(d)} ms)" if s and d else "–",
            verdict(None if not (s and d) else d / s >= 50),
        )
    )
    s100 = med("respawn100", "svctl")
    out.append(
        (
            f"crash→respawn with {data['extra'].get('scale_n', 100)} supervised unchanged"
            " (≤ 1.3× of 1 service, or ≤ +3 ms)",
            f"{_fmt(s100)} ms vs {_fmt(s)} ms" if s100 and s else "–",
            verdict(None if not (s100 and s) else s100 <= max(1.3 * s, s + 3)),
        )
    )
    st, sf = med("stop", "svctl"), med("stop", "floor")
    out.append(
        (
            "stop (TERM-obedient) ≤ floor + 5 ms",
            f"{_fmt(st)} ms vs floor {_fmt(sf)} ms" if st and sf else "–",
            verdict(None if not (st and sf) else st <= sf + 5),
        )
    )
    ov, ovc = med("overshoot_kill", "svctl"), med("overshoot", "svctl")
    out.append(
        (
            "stop overshoot beyond 2 s ≤ 20 ms (SIGTERM → child gone)",
            f"{_fmt(ov)} ms",
            verdict(None if ov is None else ov <= 20),
        )
    )
    out.append(
        (
            "stop overshoot beyond 2 s ≤ 20 ms (whole `svctl stop` command)",
            f"{_fmt(ovc)} ms",
            verdict(None if ovc is None else ovc <= 20),
        )
    )
    late = med("lateness_kill", "svctl")
    out.append(
        (
            "KILL lateness at TERM/30/KILL/5 ≤ 5 ms (SIGTERM → child gone − 30 s)",
            f"{_fmt(late)} ms",
            verdict(None if late is None else late <= 5),
        )
    )
    stat = med("status", "svctl")
    out.append(
        ("`svctl status` median ≤ 30 ms", f"{_fmt(stat)} ms", verdict(None if stat is None else stat <= 30))
    )
    n_all = data["extra"].get("status_all_n", 20)
    for subject in ("svctl status", "svctl list --json"):
        every = med("status_all", subject)
        if every is not None:
            out.append((f"`{subject}` of {n_all} services median ≤ 50 ms", f"{_fmt(every)} ms", verdict(every <= 50)))
    parsed = med("status_all", "svctl status, 5 never started")
    if parsed is not None:
        out.append((f"`svctl status` of {n_all} services, 5 never started since boot (report)", f"{_fmt(parsed)} ms",
                    "report"))
    for row in data["extra"].get("liveness_idle") or []:  # bench_liveness: one probe per interval, nothing else
        per_s = row["loop_wakeups_per_s"]
        if row.get("health_interval_s"):
            per_probe = row.get("loop_wakeups_per_probe")
            out.append((f"liveness idle cost, health_interval {row['health_interval_s']:g} s: loop wake-ups per probe ≤ 2",
                        f"{_fmt(per_probe, 2)} ({per_s:.2f}/s, {row['cpu_ms_per_s']:.1f} ms CPU/s)",
                        verdict(None if per_probe is None else per_probe <= 2)))
        else:
            out.append(("liveness idle cost without `health`: 0 wake-ups/s", f"{per_s:.2f}/s", verdict(per_s == 0)))
    for row in data["extra"].get("idle") or []:
        if row["subject"] != "svctl":
            continue
        w = row["wakeups_per_s_per_process"]
        out.append(
            (
                f"idle wake-ups ≤ 0.1/s per supervisor ({row['services']} service(s))",
                f"{w:.2f}/s",
                verdict(w <= 0.1),
            )
        )
        r = row["rss_mb_per_service"]
        out.append(
            (
                f"RSS ≤ 25 MB per supervised service ({row['services']} service(s))",
                f"{r:.1f} MB (PSS {row['pss_mb_per_service']:.1f} MB)",
                verdict(r <= 25),
            )
        )
    s100s, d100s = med("start100", "svctl"), med("start100", "supervisord")
    if s100s:
        n100 = data["extra"].get("scale_n", 100)
        out.append(
            (
                f"start {n100} services (report, vs supervisord)",
                f"{_fmt(s100s)} ms vs {_fmt(d100s)} ms",
                "report",
            )
        )
    rl = med("reload", "svctl")
    out.append(
        (
            "config edit → reload overhead ≤ 300 ms",
            f"{_fmt(rl)} ms",
            verdict(None if rl is None else rl <= 300),
        )
    )
    out += report_light.targets(data)  # issue 15: start, start 100, PSS, installed status, reload outage
    out += jupyterhub_targets(data)
    out += disruption_targets(data)
    soak = data["extra"].get("soak")
    if soak and soak["samples"]:
        first, last = soak["samples"][0], soak["samples"][-1]
        grow_fd = last["fds"] - first["fds"]
        grow_rss = last["rss"] - first["rss"]
        out.append(
            (
                f"soak {soak['crashes']} crashes: fds and RSS do not grow",
                f"fds {first['fds']}→{last['fds']}, RSS {first['rss']:.2f}→{last['rss']:.2f} MB",
                verdict(grow_fd <= 0 and grow_rss <= 1.0),
            )
        )
    return out


def jupyterhub_targets(data) -> list[tuple[str, str, str]]:
    """Issue 5's closing-note figures: each next to the bare hub's start time of the same run."""
    bare = _med(data, "jh_start", "bare hub")
    if bare is None:
        return []
    out = []

    def vs_bare(value):
        return f"{_fmt(value)} ms ({value / bare:.2f}× bare start {_fmt(bare)} ms)" if value else "–"

    rows = [
        ("JupyterHub `svctl start` → healthy, median (report)", _med(data, "jh_start", "svctl")),
        ("JupyterHub SIGKILL → healthy again, median (report)", _med(data, "jh_kill", "svctl")),
        ("JupyterHub config edit → reload applied and healthy, median (report)",
         _med(data, "jh_reload_total", "svctl")),
    ]  # fmt: skip
    out += [(title, vs_bare(value), "report") for title, value in rows]
    over, check = _med(data, "jh_reload", "svctl"), _med(data, "jh_reload_check", "svctl")
    if over is not None:
        out.append(
            (
                "JupyterHub edit → healthy overhead beyond bare start + validation (report)",
                f"{_fmt(over)} ms (validation {_fmt(check)} ms)",
                "report",
            )
        )
    stop, bare_stop = _med(data, "jh_stop", "svctl"), _med(data, "jh_stop", "bare hub")
    if stop is not None:
        out.append(
            (
                "JupyterHub `svctl stop` wall, median (report)",
                f"{_fmt(stop)} ms (bare SIGTERM → hub and proxy gone {_fmt(bare_stop)} ms)",
                "report",
            )
        )
    return out


def chart(data, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colors = {
        "svctl": "#1f77b4",
        "svctl up": "#aec7e8",
        "floor": "#7f7f7f",
        "bare hub": "#7f7f7f",
        "supervisord": "#d62728",
        "supervisorctl": "#d62728",
        "start-stop-daemon": "#2ca02c",
        "status_of_proc": "#9467bd",
        "python3 -c pass": "#bcbd22",
    }
    labels, meds, lows, highs, cols = [], [], [], [], []
    for metric, (title, _floor, order) in METRICS.items():
        subjects = data["latency_ms"].get(metric)
        skip = ("reload_total", "soak_respawn", "jh_reload_check", "jh_reload")
        if not subjects or metric in skip or "_phase" in metric:
            continue
        for name in [s for s in order if s in subjects] + [s for s in subjects if s not in order]:
            values = subjects[name]
            med = quantile(values, 0.5)
            if not med or med <= 0:
                continue
            labels.append(f"{title} · {name}")
            meds.append(med)
            lows.append(0)
            highs.append(max(0.0, quantile(values, 0.95) - med))
            cols.append(colors.get(name, "#17becf"))
    if not labels:
        return False
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(labels) + 1.6))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, meds, xerr=[lows, highs], color=cols, ecolor="black", capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (median; whisker to p95; log scale)")
    machine = data["machine"]
    ax.set_title(
        f"svctl vs peers — {machine['cpu']}, {machine['cores']} cores, {machine['date']}"
        f"{' (quick)' if data['quick'] else ''}",
        fontsize=9,
    )
    for yy, med, high in zip(y, meds, highs, strict=True):
        ax.text((med + high) * 1.08, yy, f"{med:.1f}", va="center", fontsize=7)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


HOW_TO_READ = [
    "crash→respawn: from kill(2) of the child to inotify reporting the new child's marker; it includes "
    "the child's own exec of /bin/sh (the floor pays it too). supervisord respawns only on its next 1 s "
    "poll tick, and when the pipe EOF wakes it before the killed child is reapable (SIGCHLD does not "
    "interrupt its poll) it also detects the exit a tick late: 1 or 2 s.",
    "stop phases: pidfds on the service and on its supervisor split the `svctl stop` wall time into "
    "command start → service gone (interpreter, imports, config, control request, SIGTERM), "
    "service gone → supervisor gone, and supervisor gone → command returns (including interpreter exit).",
    "overshoot: 'SIGTERM→child gone' is stamped by the child itself (it creates term-<pid> when SIGTERM "
    "arrives) and by a pidfd on it; 'command wall' also contains the control command's own start-up.",
    "status: python3 -c pass is /usr/bin/python3 without a venv; the venv's python also loads the venv's "
    ".pth files (the setuptools editable-install finder, about 10 ms, which svctl's imports mostly share).",
    "start 100: svctl runs 100 `svctl start` commands at once on the 2 cores (one supervisor process per "
    "service); supervisord runs `supervisorctl start all` in its single process.",
    "JupyterHub: a real hub and configurable-http-proxy from `svctl init jupyterhub --auth dummy` on "
    "[::1], HTTPS; healthy = 200 from /hub/health, polled every 10 ms. 'bare hub' is `jupyterhub -f` "
    "run directly with the service's environment and working directory, in the same run, interleaved; "
    "× floor is against its median start. Validation is the `jupyterhub --show-config` check svctl "
    "runs before a reload (from the events file).",
    "JupyterHub reload as a user sees it: one tree per proxy mode (`--proxy hub`, the default: the hub "
    "starts and stops configurable-http-proxy; `--proxy external`: the proxy is the jupyterhub-proxy "
    "service), cleanup_servers = False, a user's server started through the REST API and polled every "
    "10 ms through the proxy (new connection, 2 s timeout) from the edit until the reload is applied and "
    "it answers 200, plus 1 s. User outage: first failed request sent → first 200 after the last failure "
    "(0 when none failed). The hub's outage and restart come from /hub/health in the same trials.",
    "idle: wake-ups are voluntary + involuntary context switches of all threads of the supervisor "
    "process(es); RSS/PSS from /proc/PID/smaps_rollup.",
]


def write(data, out: Path) -> str:
    m = data["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_mb']} MB, Linux {m['kernel']}, "
        f"Python {m['python']}; {m['date']}; {'quick' if data['quick'] else 'full'} run, "
        f"{data['elapsed_s']:.0f} s; load average (1 min) {m.get('loadavg_before', ['?'])[0]} before, "
        f"{m.get('loadavg_after', ['?'])[0]} after (the machine is shared: compare within a run).",
        "",
    ]
    if data.get("svctl_unavailable"):
        lines += [f"**svctl was not measurable in this run:** {data['svctl_unavailable']}", ""]
    lines += ["| svctl target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {ok} |" for t, v, ok in targets(data)]
    lines += ["", *latency_table(data), ""]
    idle = idle_table(data)
    if idle:
        lines += [*idle, ""]
    up = report_up.table(data)
    if up:
        lines += [*up, ""]
    disruption = disruption_table(data)
    if disruption:
        lines += [*disruption, ""]
    soak = soak_table(data)
    if soak:
        lines += [*soak, ""]
    lines += [f"- {text}" for text in HOW_TO_READ]
    if up:
        lines.append(f"- {report_up.HOW_TO_READ}")
    lines.append(f"- {report_light.HOW_TO_READ}")
    for note in data.get("notes") or []:
        lines.append(f"- note: {note}")
    for name, err in (data.get("errors") or {}).items():
        lines.append(f"- error in {name}: {err}")
    text = "\n".join(lines).rstrip() + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    dump_json(out / "latest.json", data)
    if chart(data, out / "latest.png"):
        text += f"\nChart: {out / 'latest.png'}\n"
    if not data["quick"] and out.resolve() == (Path(__file__).resolve().parent / "results"):
        update_docs(text)
    return text


def update_docs(table: str) -> None:
    """Replace the block between the bench markers in docs/bench.md and in the README with this
    run's tables (both show the latest full run; the README's is what a visitor sees first)."""
    root = Path(__file__).resolve().parent.parent
    body = table.split("\nChart:", 1)[0].rstrip()
    for doc, chart in ((root / "docs" / "bench.md", "../benchmarks/results/latest.png"),
                       (root / "README.md", "benchmarks/results/latest.png")):
        try:
            content = doc.read_text()
        except OSError:
            continue
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        if begin not in content or end not in content:
            continue
        head, rest = content.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{begin}\n{body}\n\n![benchmark chart]({chart})\n{end}{tail}")
