"""Run the svctl benchmark suite: svctl against supervisord, start-stop-daemon and the floor.

usage: python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--out DIR] [--soak-crashes N] [--keep]

Writes benchmarks/results/latest.md (Markdown tables), latest.png (chart, log-scale latency) and
latest.json (summary); raw per-trial data goes to benchmarks/results/raw/. Prints the table.
--quick writes to benchmarks/results/quick/ instead, so CI never overwrites the committed full run;
a full run also rewrites the results block of docs/bench.md.
Everything runs under a child subreaper; every process started is SIGKILLed by PID at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import BENCH_DIR, Reaper, dump_json, kill_tree, machine_info, set_subreaper, summary, tmpdir  # noqa: E402

# Order matters a little: the idle/scale run is long-lived, the soak comes last.
MODULES = ["respawn", "stop", "overshoot", "lateness", "start", "status", "status_all", "light", "scale", "reload", "liveness",
           "jupyterhub", "disruption", "soak"]


class Context:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.root = tmpdir("run")
        self.svctl_ok = False
        self.svctl_reason: str | None = None
        self.latency: dict[str, dict[str, list[float]]] = {}
        self.extra: dict[str, object] = {}
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}
        self._kept: list[object] = []

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        self.log(f"  note: {text}")
        self.notes.append(text)

    def keep(self, subject):
        """Remember a driver so cleanup can stop it even if the metric fails."""
        self._kept.append(subject)
        return subject

    def record(self, metric: str, subject: str, values: list[float]) -> None:
        self.latency.setdefault(metric, {}).setdefault(subject, []).extend(values)

    def cleanup_subjects(self) -> None:
        for subject in reversed(self._kept):
            for method in ("kill_all", "shutdown", "kill"):
                fn = getattr(subject, method, None)
                if fn:
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001 - cleanup must go on
                        self.log(f"  cleanup {type(subject).__name__}.{method}: {exc}")
        self._kept.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, 5 s idle window (CI)")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(MODULES))
    parser.add_argument(
        "--out",
        default="",
        help="results directory (default benchmarks/results, --quick: benchmarks/results/quick)",
    )
    parser.add_argument(
        "--soak-crashes", type=int, default=0, help="crashes in the soak (default 1000, quick 200)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directories (logs, configs)")
    args = parser.parse_args(argv)
    only = [m for m in args.only.split(",") if m] or MODULES
    unknown = set(only) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s): {', '.join(sorted(unknown))}")

    # Measure svctl as installed: byte-compiled (pip and the .deb compile at install time). The dev
    # environment may set PYTHONDONTWRITEBYTECODE, which would make every svctl command recompile
    # whatever changed since its .pyc was last written.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    harness.run([harness.PYTHON, "-m", "compileall", "-q", str(harness.REPO / "supervisor")])
    load_before = os.getloadavg()
    set_subreaper()
    reaper = Reaper()
    reaper.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = Context(args.quick)
    ctx.soak_crashes = args.soak_crashes
    started = time.monotonic()
    try:
        from subjects import svctl_available

        ctx.svctl_reason = svctl_available()
        ctx.svctl_ok = ctx.svctl_reason is None
        if not ctx.svctl_ok:
            ctx.note(f"svctl not measurable: {ctx.svctl_reason}")
        for name in only:
            t0 = time.monotonic()
            ctx.log(f"== {name}")
            try:
                importlib.import_module(f"bench_{name}").run(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken metric must not lose the others
                ctx.errors[name] = f"{type(exc).__name__}: {exc}"
                ctx.log(traceback.format_exc())
            finally:
                ctx.cleanup_subjects()
                kill_tree()
            ctx.log(f"   {name}: {time.monotonic() - t0:.1f} s")
    finally:
        ctx.cleanup_subjects()
        left = kill_tree()
        if left:
            ctx.log(f"cleanup: SIGKILLed {left} leftover process(es)")
        if not args.keep:
            harness.remove_tmpdirs()
    elapsed = time.monotonic() - started

    data = {
        "machine": {
            **machine_info(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "quick": args.quick,
        "elapsed_s": round(elapsed, 1),
        "svctl_unavailable": ctx.svctl_reason,
        "latency_ms": ctx.latency,
        "summary": {m: {s: summary(v) for s, v in subj.items()} for m, subj in ctx.latency.items()},
        "extra": ctx.extra,
        "notes": ctx.notes,
        "errors": ctx.errors,
        "modules": only,
    }
    out = Path(args.out or (BENCH_DIR / "results" / ("quick" if args.quick else "")))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = (out if args.out else BENCH_DIR / "results") / "raw"  # benchmarks/results/raw/ is gitignored
    dump_json(raw / f"{stamp}{'-quick' if args.quick else ''}.json", data)
    import report

    table = report.write(data, out)
    print(table)
    ctx.log(f"total {elapsed:.1f} s; results in {out}")
    return 1 if ctx.errors else 0


if __name__ == "__main__":
    sys.exit(main())
