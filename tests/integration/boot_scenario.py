"""Run inside a private mount + PID namespace by test_boot_tools.py; never run it on a host directly.

Makes /etc, /run and /var/log private (tmpfs copies), installs an allowing policy-rc.d, then drives
``svctl install`` + the real update-rc.d, service, invoke-rc.d and systemd-sysv-generator, and
writes what it saw as JSON to the file named by argv[2]. Exits 0 after writing, whatever it saw: the
test asserts. When the namespace's PID 1 (bash) exits, the kernel kills anything left running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

NAME = "svctl-boot-test"
SCRATCH = "/run/boot-test"
POLICY = "/usr/sbin/policy-rc.d"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # no venv on it: the shim must use an absolute path
VERBS = ["start", "status", "reload", "restart", "stop", "status", "bogus"]
GENERATOR = "/lib/systemd/system-generators/systemd-sysv-generator"
SERVICE = f"""
description = "svctl boot integration test"
command = ["/bin/sleep", "1000"]
stop = "TERM/1/KILL/1"
start_seconds = 0.2
reload = "restart"
restart = "never"
log_file = "{SCRATCH}/{NAME}.log"
events_file = "{SCRATCH}/{NAME}.json"
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def privatize(mounts: str) -> None:
    """/etc becomes a tmpfs copy of itself; /run and /var/log empty tmpfs; policy-rc.d allows."""
    if os.getpid() != 1 and os.getppid() != 1:
        raise SystemExit("refusing to run outside the private PID namespace set up by the test")
    sh("mount", "--make-rprivate", "/")
    os.makedirs(mounts, exist_ok=True)
    sh("mount", "-t", "tmpfs", "tmpfs", mounts)
    sh("cp", "-a", "/etc", f"{mounts}/etc")
    sh("mount", "--bind", f"{mounts}/etc", "/etc")
    for directory in ("/run", "/var/log"):
        sh(
            "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", directory
        )  # like the real ones: not world-writable
    os.makedirs(SCRATCH)
    allow = f"{mounts}/policy-rc.d"
    with open(allow, "w") as handle:  # logs every query, so the test can see invoke-rc.d asked
        handle.write(f'#!/bin/sh\necho "$*" >> {SCRATCH}/policy.log\nexit 0\n')
    os.chmod(allow, 0o755)
    if os.path.exists(POLICY):  # a container's deny-all (exit 101) one
        sh("mount", "--bind", allow, POLICY)
    else:  # nothing to bind over: a private copy of /usr/sbin that has one
        sh("cp", "-a", "/usr/sbin", f"{mounts}/sbin")
        shutil.copy2(allow, f"{mounts}/sbin/policy-rc.d")
        sh("mount", "--bind", f"{mounts}/sbin", "/usr/sbin")


def run(argv: list[str]) -> dict:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL, check=False
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = "timeout", str(exc.stdout), str(exc.stderr)
    return {
        "argv": argv,
        "code": code,
        "stdout": out,
        "stderr": err,
        "seconds": round(time.monotonic() - started, 2),
        "pid": read_pid(),
    }


def read_pid() -> int | None:
    """The supervisor's PID from the default PID file, if it names a live process."""
    try:
        with open(f"/run/{NAME}.pid") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def rc_links() -> dict[str, str]:
    links = {}
    for level in "0123456S":
        directory = f"/etc/rc{level}.d"
        for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if entry[3:] == NAME:
                links[f"rc{level}.d/{entry}"] = os.readlink(f"{directory}/{entry}")
    return links


def drive(command) -> list[dict]:
    """The verb sequence through one tool; command(verb) is its argv."""
    return [run(command(verb)) for verb in VERBS]


def generator() -> dict:
    if not os.access(GENERATOR, os.X_OK):
        return {"skipped": f"{GENERATOR} is not installed"}
    only = f"{SCRATCH}/initd-only"
    os.makedirs(only)
    shutil.copy2(f"/etc/init.d/{NAME}", only)
    out = f"{SCRATCH}/generated"
    for sub in ("normal", "early", "late"):
        os.makedirs(f"{out}/{sub}")
    env = dict(os.environ, SYSTEMD_SYSVINIT_PATH=only, SYSTEMD_SYSVRCND_PATH="/etc", SYSTEMD_LOG_LEVEL="info")
    done = subprocess.run(
        [GENERATOR, f"{out}/normal", f"{out}/early", f"{out}/late"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    unit = f"{out}/late/{NAME}.service"
    return {
        "code": done.returncode,
        "stderr": done.stderr,
        "unit": read(unit),
        "wanted_by_multi_user": os.path.lexists(f"{out}/late/multi-user.target.wants/{NAME}.service"),
    }


def main() -> None:
    svctl, result_path, mounts = sys.argv[1], sys.argv[2], sys.argv[3]
    privatize(mounts)
    os.makedirs("/etc/svctl", exist_ok=True)
    with open(f"/etc/svctl/{NAME}.toml", "w") as handle:
        handle.write(SERVICE)
    result: dict = {"install": run([svctl, "install", NAME, "--no-systemd"])}
    result["links"] = rc_links()
    result["shim"] = read(f"/etc/init.d/{NAME}")
    result["svctl"] = drive(lambda verb: [svctl, verb, NAME])
    result["service"] = drive(lambda verb: ["service", NAME, verb])
    result["invoke-rc.d"] = drive(lambda verb: ["invoke-rc.d", NAME, verb])
    result["init.d"] = drive(lambda verb: [f"/etc/init.d/{NAME}", verb])
    result["policy_log"] = read(f"{SCRATCH}/policy.log") or ""
    result["generator"] = generator()
    run(
        [svctl, "stop", NAME]
    )  # whatever happened above, leave nothing running (the namespace would kill it too)
    result["uninstall"] = run([svctl, "uninstall", NAME])
    result["links_after"] = rc_links()
    result["shim_after"] = os.path.exists(f"/etc/init.d/{NAME}")
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
