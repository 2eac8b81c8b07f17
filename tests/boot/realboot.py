#!/usr/bin/python3
"""Real boots (issue 12): the svctl Debian package under sysvinit and systemd as PID 1.

    python3 tests/boot/realboot.py [--releases bookworm,trixie] [--inits sysvinit,systemd]
                                   [--deb FILE | --rebuild] [--refresh-roots] [--keep]
    make test-boot [BOOT_ARGS="..."]

For each release x init: build (or reuse) the .deb, debootstrap a minbase root (cached under
build/boot-roots/), install the package there with apt, define two services, boot the root with
`systemd-nspawn -b --private-network --register=no --keep-unit` and check what tests/boot/README.md
lists; then remove svctl and boot again. Root only (debootstrap, mounts, nspawn); it installs
debootstrap and systemd-container on the host when they are missing. Stdlib only: it runs with
Debian's python3, no venv needed. Exit 0 when every check passed, 1 otherwise, 2 when it could
not start. Logs: build/boot-logs/CASE/ (steps.log, boot-*.console) and build/boot-logs/results.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no __pycache__ in the work tree from a root-run harness

from rb_case import Case  # noqa: E402
from rb_machine import CLEAN_ENV, HarnessError, remove_stale_cgroups, run  # noqa: E402
from rb_roots import Roots, configured_mirror, ensure_host_tools, remove_stale_mounts  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RELEASES = ("bookworm", "trixie")
INITS = ("sysvinit", "systemd")
# What goes into the package: a .deb older than any of these is rebuilt.
PACKAGE_INPUTS = ("supervisor", "packaging", "docs", "etc", "setup.cfg", "pyproject.toml", "README.md")


def say(text: str) -> None:
    print(f"realboot: {text}", flush=True)


def newest_input() -> float:
    newest = 0.0
    for name in PACKAGE_INPUTS:
        path = REPO / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        for directory, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for file in files:
                newest = max(newest, os.stat(os.path.join(directory, file)).st_mtime)
    return newest


def ensure_deb(args, logs: Path) -> Path:
    if args.deb:
        deb = Path(args.deb).resolve()
        if not deb.is_file():
            raise HarnessError(f"--deb {args.deb}: no such file")
        return deb
    debs = sorted((REPO / "build/deb").glob("svctl_*_all.deb"))
    if debs and not args.rebuild and debs[-1].stat().st_mtime >= newest_input():
        say(f"using {debs[-1].relative_to(REPO)} (newer than the sources; --rebuild to build anyway)")
        return debs[-1]
    say("make deb")
    result = run(["make", "-C", str(REPO), "deb"], timeout=1800, env={**CLEAN_ENV, "HOME": "/root"})
    (logs / "make-deb.log").write_text(result.out)
    debs = sorted((REPO / "build/deb").glob("svctl_*_all.deb"))
    if not result.ok or not debs:
        raise HarnessError(f"make deb failed ({result.code}); see {logs / 'make-deb.log'}:\n{result.tail()}")
    return debs[-1]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def both(first: bool | None, second: bool | None) -> bool | None:
    if first is False or second is False:
        return False
    return None if first is None and second is None else True


def summary(cases: list[Case]) -> str:
    header = ("case", "python", "install", "spawned", "up", "ready", "shutdown", "TERM>KILL",
              "rm:ready", "rm:shutdown", "install", "boot", "removal")
    rows = [header]
    for case in cases:
        t = case.timings
        mark = {True: "ok", False: "FAIL", None: "-"}
        rows.append((case.label, case.versions.get("python3", "?").split("-")[0], seconds(t.get("install")),
                     seconds(t.get("installed:spawned")), seconds(t.get("installed:up")),
                     seconds(t.get("installed:ready")), seconds(t.get("installed:shutdown")),
                     "-" if "term_to_kill" not in t else f"{t['term_to_kill']:.2f}s",
                     seconds(t.get("removed:ready")), seconds(t.get("removed:shutdown")),
                     mark[case.stage_ok("install")], mark[case.stage_ok("installed")],
                     mark[both(case.stage_ok("remove"), case.stage_ok("removed"))]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("(seconds from starting systemd-nspawn: spawned = both services' own start records, "
                 "up = service status 0 + HTTP, ready = is-system-running / rc done; shutdown = "
                 "poweroff request to nspawn exit)")
    for case in cases:
        if case.versions:
            lines.append(f"{case.label}: " + ", ".join(
                f"{package.removeprefix('python3-')} {version}" for package, version in case.versions.items()))
    for case in cases:
        for check in case.failed:
            lines.append(f"FAILED {case.label} [{check.stage}] {check.name}")
            lines += [f"    {line}" for line in check.detail.splitlines()[:25]]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", default=",".join(RELEASES))
    parser.add_argument("--inits", default=",".join(INITS))
    parser.add_argument("--deb", help="test this .deb instead of building one")
    parser.add_argument("--rebuild", action="store_true", help="run make deb even if the .deb is fresh")
    parser.add_argument("--refresh-roots", action="store_true", help="rebuild the prepared roots")
    parser.add_argument("--roots-dir", default=str(REPO / "build/boot-roots"))
    parser.add_argument("--logs-dir", default=str(REPO / "build/boot-logs"))
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: the host's)")
    parser.add_argument("--shutdown-bound", type=float, default=60)
    parser.add_argument("--boot-timeout", type=float, default=90)
    parser.add_argument("--keep", action="store_true", help="keep every case's root, not only failed ones")
    parser.add_argument("--clean", action="store_true",
                        help="unmount what an interrupted run left, delete the roots and logs, exit")
    args = parser.parse_args(argv)
    args.releases = [r for r in args.releases.split(",") if r]
    args.inits = [i for i in args.inits.split(",") if i]
    for value, allowed in ((args.releases, RELEASES), (args.inits, INITS)):
        unknown = set(value) - set(allowed)
        if unknown or not value:
            parser.error(f"{','.join(sorted(unknown)) or 'nothing'}: choose from {','.join(allowed)}")
    return args


def clean(roots_dir: Path, logs: Path) -> int:
    """Unmount first: rm -rf through a live overlay would reach into the cached roots."""
    problems = remove_stale_mounts(roots_dir) + remove_stale_cgroups()
    for problem in problems:
        print(f"realboot: {problem}", file=sys.stderr)
    if problems:
        return 1
    for directory in (roots_dir, logs):
        shutil.rmtree(directory, ignore_errors=True)
        say(f"removed {directory}")
    return 0


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("realboot: needs root (debootstrap, mounts, systemd-nspawn)", file=sys.stderr)
        return 2
    roots_dir, logs = Path(args.roots_dir), Path(args.logs_dir)
    roots_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    lock = open(roots_dir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"realboot: another run holds {roots_dir / '.lock'}", file=sys.stderr)
        return 2
    if args.clean:
        return clean(roots_dir, logs)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    cases: list[Case] = []
    started = time.monotonic()
    try:
        for problem in remove_stale_mounts(roots_dir / "run") + remove_stale_cgroups():
            say(problem)
        ensure_host_tools(say)
        deb = ensure_deb(args, logs)
        roots = Roots(roots_dir, args.mirror or configured_mirror(), say, refresh=args.refresh_roots)
        for release in args.releases:
            for init in args.inits:
                case = Case(release, init, deb, logs / f"{release}-{init}",
                            shutdown_bound=args.shutdown_bound, boot_timeout=args.boot_timeout)
                cases.append(case)
                say(f"{case.label}: {deb.name}")
                case.run(roots, args.keep)
                say(f"{case.label}: {len(case.checks) - len(case.failed)} passed, {len(case.failed)} failed")
    except HarnessError as exc:
        print(f"realboot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"realboot: interrupted ({exc}); containers stopped, mounts removed", file=sys.stderr)
        return 2
    results = [{"case": c.label, "timings": c.timings, "versions": c.versions,
                "checks": [vars(check) for check in c.checks]} for c in cases]
    (logs / "results.json").write_text(json.dumps(results, indent=1))
    print(summary(cases))
    passed = sum(len(c.checks) - len(c.failed) for c in cases)
    failed = sum(len(c.failed) for c in cases)
    print(f"realboot: {len(cases)} cases in {time.monotonic() - started:.0f} s; logs in {logs}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
