"""`make run`'s installs go through an HTTP proxy on an IPv6 literal (issue 11, the seed's first step).

The seed's host has no IPv4 and reaches the internet only through `http://[2001:db8::17]:3128`.
Here a real proxy server (Debian's tinyproxy) listens only on [::1]; `make jupyterhub-deps` (what
`make run` runs first) is run into a fresh venv and npm prefix with `https_proxy`/`http_proxy` set
to `http://[::1]:PORT`, the bracketed form that trips naive URL parsers. The proxy's own log must
show pip's requests (pypi.org: pip always revalidates index pages, even with its wheel cache) and
npm's (registry.npmjs.org: npm gets a fresh cache, so it fetches everything), and what was installed
must import / run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, free_port, poll_until

pytestmark = pytest.mark.slow
TINYPROXY = shutil.which("tinyproxy")


@pytest.fixture
def proxy():
    if TINYPROXY is None:
        pytest.skip("needs tinyproxy (apt-get install tinyproxy; .ci/run installs it)")
    if shutil.which("npm") is None:
        pytest.skip("needs npm (apt-get install npm; .ci/run installs it)")
    scratch = Path(tempfile.mkdtemp(prefix="svctl-proxy-", dir="/var/tmp"))
    port = free_port()
    log = scratch / "access.log"
    (scratch / "tinyproxy.conf").write_text(
        f'Port {port}\nListen ::1\nTimeout 120\nLogFile "{log}"\nLogLevel Connect\nMaxClients 50\n'
        "ConnectPort 443\nConnectPort 80\n")
    if os.geteuid() == 0:
        os.chown(scratch, 65534, 65534)  # tinyproxy started as root drops to nobody and then writes its log
    process = subprocess.Popen([TINYPROXY, "-d", "-c", str(scratch / "tinyproxy.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll_until(lambda: listening(port), what="tinyproxy listening on [::1]")
        yield f"http://[::1]:{port}", log, scratch
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def listening(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6) as sock:
        return sock.connect_ex(("::1", port)) == 0


def test_make_run_installs_through_an_ipv6_literal_proxy(proxy):
    url, log, scratch = proxy
    environment = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    environment.update(https_proxy=url, http_proxy=url, HTTPS_PROXY=url, HTTP_PROXY=url,
                       npm_config_cache=str(scratch / "npm-cache"))
    venv, npm_prefix = scratch / "venv", scratch / "npm"
    started = time.monotonic()
    result = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "jupyterhub-deps",
                             f"VENV={venv}", f"NPM_PREFIX={npm_prefix}"],
                            env=environment, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    requests = [line for line in log.read_text().splitlines() if "Request" in line]
    hosts = {line.split()[-2] for line in requests}
    assert "pypi.org:443" in hosts, requests[-10:]
    assert "registry.npmjs.org:443" in hosts, requests[-10:]

    # What came through the proxy is complete: the hub, JupyterLab's notebook, a kernel, the proxy.
    probe = subprocess.run([str(venv / "bin/python"), "-c", "import jupyterhub, notebook, ipykernel"],
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    chp = npm_prefix / "node_modules/.bin/configurable-http-proxy"
    version = subprocess.run([str(chp), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    print(f"through the proxy: {len(requests)} requests, {time.monotonic() - started:.0f} s")
