"""`svctl init jupyterhub` never makes root run a program another user could change.

Red-team finding (issue 11 work): as root, `cd /tmp && svctl init jupyterhub --prefix ...` picked
the configurable-http-proxy that `nobody` had planted in /tmp/.npm-prefix/node_modules/.bin (the
current directory was searched), or in a nobody-owned directory on PATH, wrote it into the hub
config and the service's PATH, and `start` ran it as root; an explicit `--jupyterhub` owned by
nobody was accepted (exit 0) and only `start` refused it. Now the current directory is never
searched, every program init chooses for a root hub (the file through its symlinks, its `#!`
interpreter, node) and every directory on the service's PATH passes the rule of a root service's
command[0] (docs/security.md X2): a found one that fails is skipped with a line saying why, a given
one is exit 6 before anything is written. A hub that runs as its non-root caller may run the
caller's own programs (the rule is root's).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, as_nobody, needs_root

NOBODY = pwd.getpwnam("nobody")
FAKE = "#!/bin/sh\nexit 0\n"
pytestmark = needs_root()


def write_program(path: Path, text: str = FAKE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def plant(path: str) -> None:
    """As nobody: a proxy (or node) that would run the attacker's code as root."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\necho planted >&2\n")
    os.chmod(path, 0o755)


@pytest.fixture
def places():
    """A /tmp-like shared directory (root-owned, sticky, world-writable: nobody plants there), a
    root-owned directory with trusted stand-ins, and where the install goes."""
    shared = tempfile.mkdtemp(prefix="svctl-shared-", dir="/tmp")
    os.chmod(shared, 0o1777)
    trusted = Path(tempfile.mkdtemp(prefix="svctl-trusted-", dir="/var/tmp"))
    os.chmod(trusted, 0o755)
    yield Path(shared), trusted, trusted / "install"
    shutil.rmtree(shared, ignore_errors=True)
    shutil.rmtree(trusted, ignore_errors=True)


def init(prefix: Path, *extra: str, cwd: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix), "--ip", "::1",
                           "--auth", "dummy", "--users", "alice", *extra],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={"PATH": path, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"})


def written(prefix: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in prefix.rglob("*")
                     if path.is_file() and not path.name.endswith((".key", ".crt")))


def refused(result: subprocess.CompletedProcess, prefix: Path, *names: str) -> None:
    """Exit 6, one line naming NAMES, nothing written."""
    assert result.returncode == 6, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].endswith("; nothing was written"), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert result.stdout == "" and not prefix.exists()


def test_a_proxy_and_node_planted_on_path_are_skipped_and_never_used(places):
    """Old init took the first configurable-http-proxy on PATH, nobody's included."""
    shared, trusted, prefix = places
    on_path, in_cwd = f"{shared}/bin/configurable-http-proxy", f"{shared}/.npm-prefix/node_modules/.bin/configurable-http-proxy"
    as_nobody(lambda: [plant(path) for path in (on_path, in_cwd, f"{shared}/bin/node")])
    hub = write_program(trusted / "venv/bin/jupyterhub")
    proxy = write_program(trusted / "venv/bin/configurable-http-proxy")  # found after PATH: beside jupyterhub

    result = init(prefix, "--jupyterhub", hub, cwd=shared, path=f"{shared}/bin:/usr/bin:/bin")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    owner = f"the directory {shared}/bin is owned by nobody (uid {NOBODY.pw_uid}), not root"
    assert f"skipped: {on_path}: {owner}, who can replace anything in it; fix: chown root {shared}/bin" in lines
    assert any(line.startswith(f"skipped: {shared}/bin/node: {owner}") for line in lines), lines
    assert f"using: {hub} and {proxy}" in lines
    assert str(shared) not in "\n".join(line for line in lines if not line.startswith("skipped: "))
    # Neither the hub config (ConfigurableHTTPProxy.command) nor the service's PATH names the planted files.
    assert str(shared) not in written(prefix)
    from supervisor.config import load

    service_path = load("jupyterhub", str(prefix / "etc/svctl")).env["PATH"].split(":")
    assert service_path[:1] == [str(trusted / "venv/bin")] and all(not entry.startswith(str(shared)) for entry in service_path)


def test_a_proxy_planted_in_the_current_directory_is_not_even_looked_at(places):
    """The seed's repro: root in /tmp, nobody's .npm-prefix there, nothing else beside jupyterhub. Old
    init searched ./.npm-prefix before svctl's own checkout and used it; now it is never a candidate:
    what is found instead is a root-owned proxy (svctl's checkout, /opt/jupyterhub), or nothing (exit 5)."""
    shared, trusted, prefix = places
    in_cwd = f"{shared}/.npm-prefix/node_modules/.bin/configurable-http-proxy"
    as_nobody(plant, in_cwd)
    hub = write_program(trusted / "venv/bin/jupyterhub")
    result = init(prefix, "--jupyterhub", hub, cwd=shared, path="/usr/bin:/bin")
    assert result.returncode in (0, 5), result.stdout + result.stderr
    assert str(shared) not in result.stdout + result.stderr  # not used, not even skipped: never searched
    if result.returncode == 0:
        assert str(shared) not in written(prefix)
    else:
        assert "configurable-http-proxy not found" in result.stderr and not prefix.exists()


def test_an_explicit_jupyterhub_nobody_owns_is_refused_before_anything_is_written(places):
    shared, trusted, prefix = places
    planted = f"{shared}/nobody/jupyterhub"
    as_nobody(plant, planted)
    proxy = write_program(trusted / "bin/configurable-http-proxy")
    result = init(prefix, "--jupyterhub", planted, "--proxy-command", proxy, cwd=trusted, path="/usr/bin:/bin")
    refused(result, prefix, f"--jupyterhub {planted}: refusing to run it as root", f"nobody (uid {NOBODY.pw_uid})",
            f"fix: chown root {shared}/nobody")


def test_an_explicit_proxy_linking_into_nobodys_directory_is_refused(places):
    """Resolved through symlinks: a root-owned link in a root-owned directory leads into nobody's."""
    shared, trusted, prefix = places
    as_nobody(plant, f"{shared}/nobody/chp")
    link = trusted / "bin/configurable-http-proxy"
    link.parent.mkdir()
    link.symlink_to(f"{shared}/nobody/chp")
    hub = write_program(trusted / "bin/jupyterhub")
    result = init(prefix, "--jupyterhub", hub, "--proxy-command", str(link), cwd=trusted, path="/usr/bin:/bin")
    refused(result, prefix, f"--proxy-command {link}", f"the directory {shared}/nobody is owned by nobody")


def test_an_explicit_jupyterhub_whose_interpreter_nobody_owns_is_refused(places):
    """The kernel runs the #! interpreter as root too: a root-owned script on nobody's python is nobody's."""
    shared, trusted, prefix = places
    as_nobody(plant, f"{shared}/nobody/python3")
    hub = write_program(trusted / "venv/bin/jupyterhub", f"#!{shared}/nobody/python3\nimport sys\n")
    proxy = write_program(trusted / "venv/bin/configurable-http-proxy")
    result = init(prefix, "--jupyterhub", hub, "--proxy-command", proxy, cwd=trusted, path="/usr/bin:/bin")
    refused(result, prefix, f"--jupyterhub {hub}: refusing to run it as root: it runs {shared}/nobody/python3",
            "owned by nobody")


def test_a_non_root_install_may_run_the_callers_own_programs(sandbox):
    """The rule is root's: `make run` as a user runs that user's venv and npm prefix."""
    own = Path(tempfile.mkdtemp(prefix="svctl-own-", dir="/var/tmp"))
    try:
        os.chmod(own, 0o755)
        hub, proxy = write_program(own / "venv/bin/jupyterhub"), write_program(own / "npm/configurable-http-proxy")
        for path in [own, *own.rglob("*")]:
            os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
        result = sandbox.cli("init", "jupyterhub", "--prefix", str(own / "run"), "--ip", "::1", "--auth", "dummy",
                             "--users", "nobody", "--jupyterhub", hub, "--proxy-command", proxy, "--no-hints",
                             user="nobody")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"using: {hub} and {proxy}" in result.stdout.splitlines()
        assert "skipped" not in result.stdout
    finally:
        shutil.rmtree(own, ignore_errors=True)
