"""The `svctl up` table (issue 14): one up process next to one supervisord, from bench_scale's run.

Every figure is from the same run as its reference (same services, same idle window, interleaved
crash trials), so the ratios hold even on a shared machine whose absolute figures drift.
"""

from __future__ import annotations

from harness import quantile

START_RATIO = 1.5  # svctl up start-all ÷ supervisorctl start all
PSS_RATIO = 1.5  # PSS of the up process ÷ PSS of supervisord, same services
RESPAWN_RATIO = 1.3  # crash→respawn under up ÷ the floor parent

HOW_TO_READ = (
    "svctl up: `svctl up` (one foreground process for all the services, a fresh one per start trial) "
    "from Popen until every child has written its marker, against `supervisorctl start all` of the same "
    "run (supervisord already booted, so its interpreter start is not counted; up's is). PSS and "
    "wake-ups come from the idle sample (all threads of the one process); USS = private pages. "
    "crash→respawn under up is interleaved with the floor parent (waitpid, then fork+exec). "
    "At the end up gets SIGTERM: it must stop every service and exit 0, and no descendant may survive."
)


def _med(data, metric: str, subject: str):
    values = data["latency_ms"].get(metric, {}).get(subject)
    return quantile(values, 0.5) if values else None


def _ms(value) -> str:
    return "–" if value is None else (f"{value:.0f} ms" if abs(value) >= 100 else f"{value:.1f} ms")


def _verdict(ok) -> str:
    return "–" if ok is None else ("met" if ok else "**MISSED**")


def _ratio_row(title, value, ref, shown, ref_shown, limit):
    ratio = value / ref if value is not None and ref else None
    return (
        title,
        shown,
        ref_shown,
        "–" if ratio is None else f"{ratio:.2f}×",
        f"≤ {limit}×",
        _verdict(None if ratio is None else ratio <= limit),
    )


def _idle_row(data, subject: str, services: int):
    for row in data["extra"].get("idle") or []:
        if row["subject"] == subject and row["services"] == services:
            return row
    return None


def rows(data) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, svctl up, reference, ratio, target, verdict) for each issue-14 target."""
    up = data["extra"].get("up") or {}
    n = up.get("n") or data["extra"].get("scale_n", 100)
    out = []
    s, d = _med(data, "start100", "svctl up"), _med(data, "start100", "supervisord")
    out.append(
        _ratio_row(
            f"start {n} services, until every child's marker (median)",
            s, d, _ms(s), f"supervisord `start all` {_ms(d)}", START_RATIO,
        )
    )  # fmt: skip
    row, ref = _idle_row(data, "svctl up", n), _idle_row(data, "supervisord", n)
    if row or ref:

        def mem(r):
            if not r:
                return "–"
            uss = f", USS {r['uss_mb_total']:.1f}" if "uss_mb_total" in r else ""
            return f"PSS {r['pss_mb_total']:.1f} MB (RSS {r['rss_mb_per_service'] * n:.1f}{uss}; {r['threads'][0]} thread(s))"

        out.append(
            _ratio_row(
                f"memory of the supervising process(es), {n} services",
                row and row["pss_mb_total"], ref and ref["pss_mb_total"], mem(row), f"supervisord {mem(ref)}",
                PSS_RATIO,
            )
        )  # fmt: skip

        def wakes(r):
            if not r:
                return "–"
            count = r.get("wakeups", r["wakeups_per_s_per_process"] * r["seconds"] * r["processes"])
            return f"{count:.0f} in {r['seconds']:.0f} s"

        count = row.get("wakeups") if row else None
        out.append(
            (
                f"idle wake-ups (context switches, all threads), {n} services",
                wakes(row),
                f"supervisord {wakes(ref)}",
                "",
                "0",
                _verdict(None if count is None else count == 0),
            )
        )
    r, f = _med(data, "respawn100", "svctl up"), _med(data, "respawn100", "floor")
    out.append(
        _ratio_row(
            f"crash→respawn with {n} supervised (median)", r, f, _ms(r), f"floor {_ms(f)}", RESPAWN_RATIO
        )
    )
    stops = up.get("stops") or []
    if stops:
        last = stops[-1]
        clean = all(x["rc"] == 0 and not x["left_alive"] for x in stops)
        out.append(
            (
                f"SIGTERM: stop all {n} and exit 0, nothing left ({len(stops)} time(s))",
                f"exit {last['rc']} after {_ms(last['seconds'] * 1000)}, "
                f"{len(last['left_alive'])} of {last['descendants_before']} left",
                "",
                "",
                "exit 0, 0 left",
                _verdict(clean),
            )
        )
    return out


def table(data) -> list[str]:
    """Markdown lines for the `svctl up` table, or [] when the scale benchmark did not run."""
    up = data["extra"].get("up")
    if up is None:
        return []
    n = up.get("n", 100)
    lines = [f"`svctl up` with {n} services vs one supervisord, same run (bench_scale):", ""]
    if up.get("unavailable") and not up.get("start_ms"):
        return [*lines, f"svctl up was not measured: {up['unavailable']}"]
    lines += [
        "| measure | svctl up | reference | ratio | target | verdict |",
        "|---|---|---|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(data)]
    problems = up.get("problems") or []
    return [*lines, "", *(f"- **{problem}**" for problem in problems)] if problems else lines
