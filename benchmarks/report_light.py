"""Issue 15's target rows: the per-service supervisor's start, memory and status, each against the
reference measured in the same run (supervisorctl, the floor parent, the interpreter's own start, the
bare JupyterHub), so a verdict holds on a shared machine whose absolute figures drift.
"""

from __future__ import annotations

from report_up import _med, _ms, _verdict  # the same table cells as issue 14's rows

START_MS = 40  # start → running median
START_VS_SUPERVISORCTL = 1 / 3
START100_S = 2.0  # 100 per-service `svctl start` at once, until every marker is written
START100_N = 100
PSS_VS_FLOOR = 2.0
STATUS_VS_PASS = 1.3
JH_OUTAGE_SLACK_MS = 300  # reload outage ≤ bare stop + bare start + this

HOW_TO_READ = (
    "issue 15: start → running is `svctl start` with start_seconds = 0 (running = spawned and alive at "
    "the supervisor's next look, supervisord's startsecs=0) against `supervisorctl start` in the same "
    "rounds; start 100 is bench_scale's 100 `svctl start` commands at once until every marker exists; PSS "
    "(bench_light) is one supervisor whose service has a watched file and a tcp://[::1] readiness probe, "
    "ready and idle, sampled with the floor parent in the same moment (same interpreter binary); status as "
    "installed (bench_light) is a non-editable pip install in a fresh venv against that venv's "
    "`python -c pass`, and the .deb's wrapper (`#!/usr/bin/python3 -I` over a byte-compiled copy of "
    "supervisor/) against `/usr/bin/python3 -I -c pass`; the JupyterHub reload outage is the last 200 "
    "from /hub/health before the first failure → the first 200 after reload_applied, polled every 10 ms, "
    "against the bare hub's SIGTERM → gone plus `jupyterhub -f` → 200 (bench_jupyterhub, same run)."
)


def _status_row(data, metric, subject, floor, title):
    s, f = _med(data, metric, subject), _med(data, metric, floor)
    if s is None and f is None:
        return (title, "– (not measured: see the notes)", "–")
    ratio = s / f if s and f else None
    shown = f"{ratio:.2f}× ({_ms(s)} vs {_ms(f)})" if ratio else f"{_ms(s)} vs {_ms(f)}"
    return (title, shown, _verdict(None if ratio is None else ratio <= STATUS_VS_PASS))


def targets(data) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    s, ctl = _med(data, "start_running", "svctl"), _med(data, "start_running", "supervisorctl")
    if s is not None or ctl is not None:
        out.append((f"start → running median ≤ {START_MS} ms (start_seconds = 0)", _ms(s),
                    _verdict(None if s is None else s <= START_MS)))
        ratio = s / ctl if s and ctl else None
        out.append(("start → running ≤ 1/3 of supervisorctl's (same run)",
                    f"{ratio:.2f}× ({_ms(s)} vs {_ms(ctl)})" if ratio else "–",
                    _verdict(None if ratio is None else ratio <= START_VS_SUPERVISORCTL)))
    s100 = _med(data, "start100", "svctl")
    if s100 is not None:
        n, cores = data["extra"].get("scale_n", START100_N), data["machine"].get("cores")
        cmd = _med(data, "start100_cmd", "svctl")
        shown = f"{s100 / 1000:.2f} s, {n} services, {cores} cores (commands returned: {_ms(cmd)})"
        if n != START100_N:  # --quick starts fewer: no verdict on a target set for 100
            out.append((f"start {START100_N} services with per-service `svctl start` ≤ {START100_S:g} s on 2 cores",
                        shown, f"– (only {n} services in this run)"))
        else:
            out.append((f"start {n} services with per-service `svctl start` ≤ {START100_S:g} s on 2 cores", shown,
                        _verdict(s100 / 1000 <= START100_S)))
    pss = data["extra"].get("light_pss")
    if pss:
        ratio = pss["pss_mb"] / pss["floor_pss_mb"] if pss["floor_pss_mb"] else None
        out.append(("PSS per supervisor (watch + ready) ≤ 2× floor",
                    f"{ratio:.2f}× ({pss['pss_mb']:.1f} MB vs floor {pss['floor_pss_mb']:.1f} MB; "
                    f"RSS {pss['rss_mb']:.1f} vs {pss['floor_rss_mb']:.1f} MB, USS {pss['uss_mb']:.1f} vs "
                    f"{pss['floor_uss_mb']:.1f} MB)" if ratio else "–",
                    _verdict(None if ratio is None else ratio <= PSS_VS_FLOOR)))
    if "light" in (data.get("modules") or []):
        out.append(_status_row(data, "status_pip", "svctl (pip install)", "pip venv python -c pass",
                               "status (pip install) ≤ 1.3× python -c pass"))
        out.append(_status_row(data, "status_deb", "svctl (.deb wrapper)", "python3 -I -c pass",
                               "status (.deb, python3 -I) ≤ 1.3× python3 -I -c pass"))
    out += jupyterhub_outage(data)
    return out


def jupyterhub_outage(data) -> list[tuple[str, str, str]]:
    stop, start = _med(data, "jh_stop", "bare hub"), _med(data, "jh_start", "bare hub")
    title = "JupyterHub: outage of a config reload (last 200 before → first 200 after) ≤ bare stop + bare start + 300 ms"
    rows = []
    for label, value in (
        ("", _med(data, "jh_reload_outage", "svctl")),
        (" — under a user's 10 ms poll, hub-managed proxy (bench_disruption)",
         _med(data, "jh_user_hub_gap", "hub-managed proxy")),
    ):
        if value is None:
            continue
        if stop is None or start is None:
            rows.append((title + label, f"{_ms(value)} (no bare hub figures in this run)", "–"))
            continue
        limit = stop + start + JH_OUTAGE_SLACK_MS
        rows.append((title + label,
                     f"{_ms(value)} vs {_ms(limit)} (bare stop {_ms(stop)} + bare start {_ms(start)} + "
                     f"{JH_OUTAGE_SLACK_MS} ms); beyond bare stop + start: {_ms(value - stop - start)}",
                     _verdict(value <= limit)))
    return rows
