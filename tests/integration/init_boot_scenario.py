"""Run inside a private mount + PID namespace by test_init_jupyterhub.py; never run it on a host directly.

/etc is a tmpfs copy of itself, /run, /var/log and /srv are empty tmpfs (boot_scenario.privatize plus
/srv), so ``svctl init jupyterhub`` without --prefix writes its real paths and runs the real
update-rc.d, and ``service`` is asked about the result. Writes what it saw as JSON to argv[2].
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from boot_scenario import SYSTEM_PATH, privatize

SCRATCH = "/run/init-test"
FAKES = f"{SCRATCH}/bin"  # init only checks that these are executable files; nothing starts here
HUB, PROXY = f"{FAKES}/jupyterhub", f"{FAKES}/configurable-http-proxy"
WRITTEN = ("/etc/jupyterhub", "/etc/svctl", "/srv/jupyterhub")


def run(argv: list[str]) -> dict:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
                          check=False)
    return {"argv": argv, "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def boot_files() -> dict:
    return {"initd": sorted(os.listdir("/etc/init.d")), "links": rc_links()}


def rc_links(name: str | None = None) -> list[str]:
    """Every rc link (or NAME's only), as rcN.d/ENTRY."""
    found = []
    for level in "0123456S":
        directory = f"/etc/rc{level}.d"
        entries = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        found += [f"rc{level}.d/{entry}" for entry in entries if name is None or entry[3:] == name]
    return found


def clean(svctl: str) -> None:
    for name in ("jupyterhub", "jupyterhub-proxy"):
        if os.path.exists(f"/etc/init.d/{name}"):
            run([svctl, "uninstall", name])
    for path in WRITTEN:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    svctl, result_path, mounts = sys.argv[1], sys.argv[2], sys.argv[3]
    privatize(mounts)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/srv"], check=True)
    os.makedirs(FAKES)
    for path in (HUB, PROXY):
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    init = [svctl, "init", "jupyterhub", "--ip", "::1", "--users", "alice", "--jupyterhub", HUB,
            "--proxy-command", PROXY]
    result: dict = {"before": boot_files()}

    result["prefix"] = run([*init, "--prefix", f"{SCRATCH}/prefix"])
    result["after_prefix"] = boot_files()
    result["prefix_outside"] = [path for path in WRITTEN if os.path.exists(path)]

    with open("/etc/init.d/jupyterhub", "w") as handle:  # the seed's hand-written script
        handle.write("#!/bin/sh\n# hand-written, like the seed's\nexit 0\n")
    os.chmod("/etc/init.d/jupyterhub", 0o755)
    result["foreign"] = run(init)
    result["foreign_written"] = [path for path in WRITTEN if os.path.exists(path)]
    os.unlink("/etc/init.d/jupyterhub")

    result["init"] = run(init)
    result["links"] = rc_links("jupyterhub")
    result["status"] = run(["service", "jupyterhub", "status"])
    result["rerun_no_boot"] = run([*init, "--no-boot"])  # the boot files from the run above are there
    result["contradiction"] = run([*init, "--proxy", "external"])
    result["contradiction_proxy_files"] = [path for path in ("/etc/init.d/jupyterhub-proxy",
                                                             "/etc/svctl/jupyterhub-proxy.toml") if os.path.exists(path)]
    clean(svctl)

    result["no_boot"] = run([*init, "--no-boot"])
    result["no_boot_initd"] = os.path.exists("/etc/init.d/jupyterhub")
    clean(svctl)

    result["external"] = run([*init, "--proxy", "external"])
    result["external_status"] = {name: run(["service", name, "status"]) for name in ("jupyterhub-proxy", "jupyterhub")}
    result["external_rerun"] = run([*init, "--no-boot"])  # no --proxy: the kept config says external
    clean(svctl)
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
