"""Issue 15: one per-service supervisor's memory and `svctl status` as installed, each against its floor.

1. PSS: one `svctl start` supervisor whose service has `watch = [FILE]` and
   `ready = "tcp://[::1]:PORT"` (listener.py), after `svctl start` returned (ready) and an idle pause,
   sampled in the same moment as the Floor parent (floor_parent.py: waitpid, fork+exec). Both run
   the same interpreter binary and are sampled while both run, so the shared pages are split over
   the same set of processes. Three samples, a second apart; the median of each. The supervisor's
   mapped extension modules (/proc/PID/maps) go to the raw data: they show what it imported.
2. `svctl status NAME` of that running service, as installed, two ways, interleaved (random order)
   with the interpreter start each pays:
   - pip: `python -m venv` (the bench venv's base interpreter) in a temp dir, then the runtime deps
     of setup.cfg and a NON-editable `pip install --no-deps --no-build-isolation` of a copy of the
     work tree (pyproject.toml, setup.cfg, README.md, bin/, supervisor/: the repo itself is not built in,
     pip would leave build/ and *.egg-info there); `VENV/bin/svctl ... status NAME` against
     `VENV/bin/python -c pass`.
   - .deb: packaging/debian/wrapper/svctl (`#!/usr/bin/python3 -I`, the package on sys.path[0]) with
     its /usr/share/svctl replaced by a temp dir holding a copy of supervisor/ byte-compiled by
     /usr/bin/python3 -m compileall (as the package's postinst does), run through its shebang,
     against `/usr/bin/python3 -I -c pass`.
   A way that cannot be set up (no wheel for a dependency, no /usr/bin/python3) is a note, not an error.
"""

from __future__ import annotations

import configparser
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness import LISTENER_CHILD, PYTHON, REPO, alive, proc_cost, quantile, tmpdir
from harness import run as run_cmd
from subjects import Floor, Svctl

PORT = 19346  # bench_start's ready service uses 19345
SYSTEM_PYTHON = "/usr/bin/python3"
DEB_WRAPPER = REPO / "packaging" / "debian" / "wrapper" / "svctl"
DEB_LIBDIR = "/usr/share/svctl"
METRIC = {  # subject -> metric: each install's status next to its own interpreter's start
    "svctl (pip install)": "status_pip",
    "pip venv python -c pass": "status_pip",
    "svctl (.deb wrapper)": "status_deb",
    "python3 -I -c pass": "status_deb",
}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("::1", port))
        except OSError:
            return False
    return True


def extension_modules(pid: int) -> list[str]:
    """Names of the shared objects a process maps, other than libc's: the extension modules it imported."""
    names = set()
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if ".so" in path and ("lib-dynload" in path or "site-packages" in path):
                names.add(os.path.basename(path).split(".")[0])
    except OSError:
        pass
    return sorted(names)


def measure_pss(ctx, svc: Svctl, floor: Floor, name: str) -> None:
    sup = svc.supervisor_pid(name)
    if not sup or not alive(sup):
        ctx.note(f"light: no supervisor PID for {name} after `svctl start`")
        return
    time.sleep(1.0 if ctx.quick else 3.0)  # idle: past the start, the probe stopped
    samples = []
    for i in range(3):
        if i:
            time.sleep(1.0)
        samples.append((proc_cost(sup), proc_cost(floor.proc.pid)))

    def med(which: int, key: str) -> float:
        return quantile([s[which][key] for s in samples], 0.5)

    row = {
        "supervisor_pid": sup,
        "pss_mb": med(0, "pss"),
        "rss_mb": med(0, "rss"),
        "uss_mb": med(0, "uss"),
        "threads": samples[-1][0]["threads"],
        "fds": samples[-1][0]["fds"],
        "floor_pss_mb": med(1, "pss"),
        "floor_rss_mb": med(1, "rss"),
        "floor_uss_mb": med(1, "uss"),
        "extensions": extension_modules(sup),
        "floor_extensions": extension_modules(floor.proc.pid),
    }
    ctx.extra["light_pss"] = row
    ctx.log(
        f"  PSS supervisor (watch + ready) {row['pss_mb']:.2f} MB (RSS {row['rss_mb']:.1f}, USS {row['uss_mb']:.2f},"
        f" {row['threads']} thread(s)), floor {row['floor_pss_mb']:.2f} MB (RSS {row['floor_rss_mb']:.1f});"
        f" supervisor's extension modules: {', '.join(row['extensions']) or 'none'}"
    )


def one_line(text: str, limit: int = 300) -> str:
    """A command's output for a note: its error lines (else its last lines), joined on one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "×"))]
    return " | ".join(errors or lines[-3:])[-limit:]


def runtime_requirements() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    text = parser.get("options", "install_requires", fallback="")
    return [line.strip() for line in text.splitlines() if line.strip()]


def base_python() -> str:
    """The interpreter the bench venv was made from (its pyvenv.cfg `executable`), else its realpath."""
    cfg = Path(PYTHON).parent.parent / "pyvenv.cfg"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "executable" and os.access(value.strip(), os.X_OK):
                return value.strip()
    except OSError:
        pass
    return os.path.realpath(PYTHON)


def pip_venv(ctx) -> Path | None:
    """A fresh venv with a non-editable install of the work tree; None (and a note) if it fails."""
    root = tmpdir("pipvenv")
    src, venv = root / "src", root / "venv"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "supervisor", src / "supervisor", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if (REPO / "bin").is_dir():  # older trees had a console_scripts entry point instead
        shutil.copytree(REPO / "bin", src / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    steps = [
        [base_python(), "-m", "venv", str(venv)],
        # wheel: the venv's setuptools builds the wheel with it (no build isolation brings it)
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "wheel", *runtime_requirements()],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
    ]
    t0 = time.monotonic()
    for cmd in steps:
        try:
            _, rc, out = run_cmd(cmd, timeout=300, env=env)
        except subprocess.TimeoutExpired:
            rc, out = None, "timed out after 300 s"
        if rc != 0:
            ctx.note(f"light: pip install not measured: `{' '.join(cmd[1:4])} ...` exited {rc}: {one_line(out)}")
            return None
    if not os.access(venv / "bin" / "svctl", os.X_OK):
        ctx.note("light: pip install not measured: the venv has no bin/svctl")
        return None
    # -I: not the work tree from the current directory
    _, _, where = run_cmd([str(venv / "bin" / "python"), "-I", "-c", "import supervisor; print(supervisor.__file__)"])
    ctx.extra["light_pip"] = {"setup_s": round(time.monotonic() - t0, 1), "supervisor_file": where.strip()}
    ctx.log(f"  pip venv ready in {time.monotonic() - t0:.1f} s: supervisor from {where.strip()}")
    return venv


def deb_tree(ctx) -> Path | None:
    """The .deb's wrapper over a byte-compiled copy of supervisor/; None (and a note) if it fails."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        ctx.note(f"light: .deb status not measured: no {SYSTEM_PYTHON}")
        return None
    try:
        text = DEB_WRAPPER.read_text()
    except OSError as exc:
        ctx.note(f"light: .deb status not measured: {exc}")
        return None
    if DEB_LIBDIR not in text or not text.startswith(f"#!{SYSTEM_PYTHON} -I"):
        ctx.note(f"light: .deb status not measured: {DEB_WRAPPER} no longer runs {SYSTEM_PYTHON} -I over {DEB_LIBDIR}")
        return None
    root = tmpdir("deb")
    lib = root / "share" / "svctl"
    shutil.copytree(REPO / "supervisor", lib / "supervisor", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _, rc, out = run_cmd([SYSTEM_PYTHON, "-m", "compileall", "-q", str(lib / "supervisor")], timeout=120)
    if rc != 0:
        ctx.note(f"light: .deb status not measured: compileall exited {rc}: {one_line(out)}")
        return None
    wrapper = root / "bin" / "svctl"
    wrapper.parent.mkdir()
    wrapper.write_text(text.replace(DEB_LIBDIR, str(lib)))  # the wrapper exactly, but this path
    wrapper.chmod(0o755)
    return wrapper


def time_status(ctx, svc: Svctl, name: str, pip: Path | None, deb: Path | None) -> None:
    n = 10 if ctx.quick else 30
    dirs = ["--config-dir", str(svc.config_dir), "--run-dir", str(svc.run_dir)]
    cmds: dict[str, list[str]] = {}
    if pip:
        cmds["svctl (pip install)"] = [str(pip / "bin" / "svctl"), *dirs, "status", name]
        cmds["pip venv python -c pass"] = [str(pip / "bin" / "python"), "-c", "pass"]
    if deb:
        cmds["svctl (.deb wrapper)"] = [str(deb), *dirs, "status", name]
        cmds["python3 -I -c pass"] = [SYSTEM_PYTHON, "-I", "-c", "pass"]
    for label in list(cmds):  # warm the page cache; a status that fails is not timed
        _, rc, out = run_cmd(cmds[label], timeout=30)
        if rc != 0:
            ctx.note(f"light: {label} exited {rc} for a running service: {one_line(out)}")
            del cmds[label]
        elif label.startswith("svctl"):
            ctx.extra.setdefault("samples", {})[label] = out[-500:]
    if not cmds:
        return
    for _ in range(n):
        for label in random.sample(list(cmds), len(cmds)):
            wall, rc, _ = run_cmd(cmds[label], timeout=30)
            if rc == 0:
                ctx.record(METRIC[label], label, [wall * 1000])
    got = {k: v for m in ("status_pip", "status_deb") for k, v in ctx.latency.get(m, {}).items()}
    ctx.log("  " + ", ".join(f"{k} {quantile(v, 0.5):.1f}" for k, v in got.items()))


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("light: skipped, svctl not measurable")
        return
    if not _port_free(PORT):
        ctx.note(f"light: skipped, port {PORT} on [::1] is taken")
        return
    pip = pip_venv(ctx)  # first: its pip work must not overlap the samples
    deb = deb_tree(ctx)
    floor = ctx.keep(Floor("light-floor"))
    floor.boot()
    svc = ctx.keep(Svctl("light"))
    markers = svc.markers("light")
    watched = svc.root / "watched.conf"
    watched.write_text("# a file the service watches\n")
    svc.define(
        "light",
        [PYTHON, str(LISTENER_CHILD), str(markers.path), str(PORT)],
        stop="TERM/5/KILL/1",
        watch=[str(watched)],
        ready=f"tcp://[::1]:{PORT}",
        ready_timeout=20,
    )
    wall, rc, out = svc.start("light")
    if rc != 0:
        ctx.note(f"light: svctl start (watch + ready) exited {rc}: {one_line(out)}")
        return
    try:
        measure_pss(ctx, svc, floor, "light")
        time_status(ctx, svc, "light", pip, deb)
    finally:
        svc.stop("light")
        floor.shutdown()
        markers.close()
