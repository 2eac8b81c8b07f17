"""The real-boot matrix (tests/boot/realboot.py) as pytest tests, one per release x init.

Skipped unless SVCTL_REALBOOT=1: each cell debootstraps (once, then cached), installs packages
from the Debian mirror and boots a container twice, which needs root and the network and takes
from ~20 s (cached) to a few minutes (first run). `make test-boot` runs the same matrix directly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("realboot.py")
CELLS = [(release, init) for release in ("bookworm", "trixie") for init in ("sysvinit", "systemd")]
# Debian's python3 and tools, as `make test-boot` runs it (the harness builds the .deb itself).
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}


@pytest.mark.parametrize(("release", "init"), CELLS, ids=[f"{r}-{i}" for r, i in CELLS])
def test_real_boot(release, init):
    if os.environ.get("SVCTL_REALBOOT") != "1":
        pytest.skip("real boots run with SVCTL_REALBOOT=1 (root, network; or make test-boot)")
    if os.geteuid() != 0:
        pytest.skip("real boots need root (debootstrap, mounts, systemd-nspawn)")
    result = subprocess.run(["/usr/bin/python3", str(HARNESS), "--releases", release, "--inits", init],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600, env=ENV)
    assert result.returncode == 0, f"{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
