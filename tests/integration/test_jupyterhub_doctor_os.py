"""`svctl check jupyterhub` on real prefixes written by `svctl init jupyterhub`, as root and as nobody,
on this host and in a network namespace without IPv4 (issue 11 items 1, 6, 12 and the cert expiry).

Each test inits its own prefix in a directory every user may traverse (as the real /etc and /srv
are); what is root's stays root's: the state directory 0750, the key and cookie secret 0600.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import IS_ROOT, PYTHON, REPO, as_nobody, readable_code

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: init writes root's files, nobody reads them")

JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
needs_jupyterhub = pytest.mark.skipif(not JUPYTERHUB.exists(), reason="jupyterhub is not installed in the venv")
needs_ip = pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip netns)")


def init(*extra: str) -> Path:
    prefix = Path(tempfile.mkdtemp(prefix="svctl-doctor-", dir="/tmp"))
    prefix.chmod(0o755)
    result = subprocess.run([PYTHON, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                             "--ip", "::1", "--auth", "pam", "--users", "root", "--jupyterhub", str(JUPYTERHUB),
                             "--no-hints", *extra], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return prefix


@pytest.fixture
def prefix():
    path = init()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check(prefix: Path, *args: str, user: str | None = None, netns: str | None = None) -> subprocess.CompletedProcess:
    svctl = ["-m", "supervisor", "--config-dir", str(prefix / "etc/svctl"), "--run-dir", str(prefix / "run/svctl"),
             "check", "jupyterhub", *args]
    if user is None:
        command, env = [PYTHON, *svctl], dict(os.environ)
    else:  # Debian's python and a copy of the code nobody can read, as tests/conftest.py's Sandbox does
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", *svctl]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": readable_code()}
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def without_check_command(prefix: Path) -> None:
    """Drop the service's `check` (jupyterhub --show-config, ~6 s) where a test judges the doctor alone."""
    service = prefix / "etc/svctl/jupyterhub.toml"
    service.write_text("".join(line for line in service.read_text().splitlines(keepends=True)
                               if not line.startswith(("check =", "check_timeout ="))))


def findings(result: subprocess.CompletedProcess) -> list[dict]:
    return json.loads(result.stdout)["findings"]


class TestNotRoot:
    """Item 6: nobody's check says what needs root, recommends no --force, checks the rest; exit 4."""

    @needs_jupyterhub
    def test_nobody_is_told_what_only_root_may_check(self, prefix):
        result = check(prefix, user="nobody")
        assert result.returncode == 4, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        state = prefix / "srv/jupyterhub"
        closed = f"{state} (mode 0750, owner root) is closed to nobody"
        for what in (f"certificate {state}/ssl/jupyterhub.crt", f"private key {state}/ssl/jupyterhub.key",
                     f"the mode of cookie secret {state}/jupyterhub_cookie_secret"):
            assert any(line.startswith(f"not checked as nobody: {what}") and line.endswith(closed) for line in lines), \
                result.stdout
        assert "not checked as nobody: the service's `check` command" in result.stdout
        assert "does not exist" not in result.stdout and "--force" not in result.stdout
        assert re.search(r"jupyterhub: no errors found, but (\d+) findings could not be checked without root: "
                         r"run svctl check as root", lines[-1]), lines[-1]
        as_json = json.loads(check(prefix, "--json", user="nobody").stdout)
        assert as_json["ok"] and as_json["unchecked"] == int(re.search(r"but (\d+)", lines[-1]).group(1))

    @needs_jupyterhub
    def test_root_checks_the_same_prefix_fully(self, prefix):
        without_check_command(prefix)
        result = check(prefix, "--json")
        assert result.returncode == 0, result.stdout
        assert [f for f in findings(result) if f["severity"] in ("error", "unchecked")] == []

    @needs_jupyterhub
    def test_a_real_error_still_counts_for_nobody(self, prefix):
        """A jupyterhub that is gone (a venv deleted) is an error for anyone: exit 6, not 4."""
        service = prefix / "etc/svctl/jupyterhub.toml"
        service.write_text(service.read_text().replace(str(JUPYTERHUB), "/nonexistent/venv/bin/jupyterhub"))
        for user in ("nobody", None):
            result = check(prefix, user=user)
            assert result.returncode == 6, result.stdout
            assert "error: command[0] /nonexistent/venv/bin/jupyterhub does not exist: the hub cannot start" \
                in result.stdout
            # review defect 3: edit the service file; `init --force` would reset the whole deployment
            assert re.search(rf"fix: (set|point) command\[0\] and check\[0\] in {prefix}/etc/svctl/jupyterhub.toml ",
                             result.stdout), result.stdout
            assert "--force" not in result.stdout
        # root's svctl runs from the venv that has jupyterhub: that one exists, so point at it
        assert f"at {JUPYTERHUB}, which exists" in check(prefix).stdout
        # how many findings nobody can't check depends on the clone's place (a 0700 directory hides
        # the venv too): some, and the error still counts
        assert re.search(r"^jupyterhub: 1 error, [1-9][0-9]* not checked", check(prefix, user="nobody").stdout.splitlines()[-1])

    @needs_jupyterhub
    def test_an_external_proxy_service_file_nobody_may_read_is_exit_4_in_one_line(self):
        """--proxy external: both service files hold the proxy's token and are 0600."""
        prefix = init("--proxy", "external")
        try:
            result = check(prefix, user="nobody")
            assert result.returncode == 4 and result.stdout == ""
            assert result.stderr == (f"svctl: not checked as nobody: {prefix}/etc/svctl/jupyterhub.toml is "
                                     "readable only by root (mode 0600); run svctl check as root\n")
        finally:
            shutil.rmtree(prefix, ignore_errors=True)


class TestCertificate:
    """The expiry of the certificate the hub serves, read from the files init wrote."""

    def replace_cert(self, prefix: Path, not_before, not_after) -> None:
        x509 = pytest.importorskip("cryptography.x509")
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID

        ssl = prefix / "srv/jupyterhub/ssl"
        key = serialization.load_pem_private_key((ssl / "jupyterhub.key").read_bytes(), password=None)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyterhub")])
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number()).not_valid_before(not_before)
                       .not_valid_after(not_after).sign(key, hashes.SHA256()))
        (ssl / "jupyterhub.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    @needs_jupyterhub
    def test_expiring_then_expired(self, prefix):
        without_check_command(prefix)
        now = datetime.datetime.now(datetime.UTC)
        cert = prefix / "srv/jupyterhub/ssl/jupyterhub.crt"
        self.replace_cert(prefix, now - datetime.timedelta(days=300), now + datetime.timedelta(days=20, hours=1))
        result = check(prefix)
        assert result.returncode == 0, result.stdout
        date = f"{now + datetime.timedelta(days=20, hours=1):%Y-%m-%d}"
        assert f"warning: certificate {cert} expires in 20 days ({date})\n" \
               f"    fix: svctl init jupyterhub --prefix {prefix} --renew-cert replaces a self-signed one" \
               in result.stdout

        self.replace_cert(prefix, now - datetime.timedelta(days=400), now - datetime.timedelta(days=35))
        result = check(prefix, "--json")
        assert result.returncode == 6
        [expired] = [f for f in findings(result) if f["code"] == "cert-expired"]
        assert expired["severity"] == "error" and "expired 35 days ago" in expired["message"]

    @needs_jupyterhub
    def test_a_fresh_init_certificate_is_quiet(self, prefix):
        without_check_command(prefix)
        assert not [f for f in findings(check(prefix, "--json")) if f["code"].startswith(("cert", "tls"))]

    @needs_jupyterhub
    def test_a_certificate_through_a_link_in_a_users_directory_is_refused(self, prefix):
        """ssl_cert in nobody's directory, linked to root's key: read as nobody, so nothing of it shows."""
        without_check_command(prefix)
        planted = Path(tempfile.mkdtemp(prefix="svctl-planted-", dir="/tmp"))
        try:
            os.chown(planted, 65534, 65534)
            key = prefix / "srv/jupyterhub/ssl/jupyterhub.key"
            as_nobody(os.symlink, str(key), str(planted / "cert.pem"))
            config = prefix / "etc/jupyterhub/jupyterhub_config.py"
            text = config.read_text()
            config.write_text(re.sub(r"c\.JupyterHub\.ssl_cert = .*", f"c.JupyterHub.ssl_cert = "
                                     f"{str(planted / 'cert.pem')!r}", text))
            result = check(prefix, "--json")
            assert "PRIVATE KEY" not in result.stdout and key.read_text().splitlines()[1] not in result.stdout
            [refused] = [f for f in findings(result) if str(planted) in f["message"]]
            assert refused["severity"] == "error" and refused["message"].startswith(
                f"cannot read certificate {planted}/cert.pem: Too many levels of symbolic links")
        finally:
            shutil.rmtree(planted, ignore_errors=True)


class TestPrograms:
    """The executables as the service finds them (probe_files.program), on real files."""

    def test_path_search_interpreters_and_modes(self, tmp_path):
        from supervisor.jupyterhub.probe_files import program

        first, second = tmp_path / "a", tmp_path / "b"
        first.mkdir()
        second.mkdir()
        (first / "tool").write_text("#!/bin/sh\n")
        (first / "tool").chmod(0o644)  # not executable: execvp goes on to the next directory
        (second / "tool").write_text("#!/bin/sh\n")
        (second / "tool").chmod(0o755)
        search = f"{first}:{second}"
        assert program("node", "tool", search, 0).found == str(second / "tool")
        assert program("node", "absent", search, 0).problem == "is not on PATH"
        assert program("jupyterhub", str(first / "tool"), search, 0).problem == "is not executable (mode 0644)"
        assert program("jupyterhub", str(tmp_path / "gone"), search, 0).problem == "does not exist"
        moved = tmp_path / "jupyterhub"
        moved.write_text(f"#!{tmp_path}/old-venv/bin/python3\n")
        moved.chmod(0o755)
        assert program("jupyterhub", str(moved), search, 0).problem == \
            f"runs with #!{tmp_path}/old-venv/bin/python3, which does not exist (was its venv moved or deleted?)"
        # a service that runs as nobody needs the other-x bit, not just any x bit
        (second / "tool").chmod(0o750)
        assert program("node", "tool", search, 65534).found is None

    def test_a_directory_closed_to_the_caller_is_named_not_called_missing(self):
        from supervisor.jupyterhub.probe_files import file_mode, program

        private = Path(tempfile.mkdtemp(prefix="svctl-closed-", dir="/tmp"))  # 0700, root's
        try:
            (private / "jupyterhub").write_text("#!/bin/sh\n")

            def look():
                jupyterhub = program("jupyterhub", str(private / "jupyterhub"), "/usr/bin", 0)
                assert jupyterhub.found is None and jupyterhub.problem == ""
                assert jupyterhub.closed == f"{private} (mode 0700, owner root) is closed to nobody"
                assert file_mode(str(private / "secret")) == (None, jupyterhub.closed)

            as_nobody(look)
        finally:
            shutil.rmtree(private, ignore_errors=True)


class TestHostileConfig:
    """Review defect 2: values no program can use are one error line each, exit 6, never a traceback,
    for root and for nobody (Debian's python3, 3.11.2 on bookworm, where a NUL made ast.parse raise)."""

    @needs_jupyterhub
    @pytest.mark.parametrize("line, error", [
        ('c.JupyterHub.hub_bind_url = "http://[::1]:80801"',
         "c.JupyterHub.hub_bind_url (line {n}) = 'http://[::1]:80801' is not a valid URL: Port out of range 0-65535"),
        ('c.JupyterHub.hub_bind_url = "http://[zz]:x"', "c.JupyterHub.hub_bind_url (line {n}) = 'http://[zz]:x' is "
                                                        "not a valid URL: "),
        ('c.Authenticator.allowed_users = {"\\x00bad"}',
         "c.Authenticator.allowed_users (line {n}) holds a NUL byte in '\\x00bad'"),
        ('c.JupyterHub.port = 99999', "c.JupyterHub.port (line {n}) = 99999 is out of range"),
        ('c.JupyterHub.ip = "::1"\0', "not valid Python: line {n}: the file contains a NUL byte"),
    ])
    def test_one_error_line_and_exit_6(self, prefix, line, error):
        without_check_command(prefix)
        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        text = config.read_text()
        config.write_text(text + line + "\n")
        expected = "error: " + error.format(n=text.count("\n") + 1)
        for user in (None, "nobody"):
            result = check(prefix, user=user)
            assert result.returncode == 6, result.stdout + result.stderr
            assert "Traceback" not in result.stdout + result.stderr and result.stderr == ""
            assert any(found.startswith(expected) for found in result.stdout.splitlines()), result.stdout


class TestWhatARootHubRuns:
    """Review defects 4 and 5, on real prefixes."""

    @needs_jupyterhub
    def test_a_proxy_nobody_owns_is_an_error_for_a_root_hub(self, prefix):
        """`check` said OK while the hub (root) would run nobody's configurable-http-proxy as root."""
        without_check_command(prefix)
        planted = Path(tempfile.mkdtemp(prefix="svctl-nobody-proxy-", dir="/tmp"))
        try:
            planted.chmod(0o755)
            proxy = planted / "configurable-http-proxy"
            proxy.write_text("#!/bin/sh\nexit 0\n")
            proxy.chmod(0o755)
            os.chown(proxy, 65534, 65534)
            config = prefix / "etc/jupyterhub/jupyterhub_config.py"
            config.write_text(config.read_text() + f"c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]\n")
            result = check(prefix, "--json")
            assert result.returncode == 6, result.stdout
            [finding] = [f for f in findings(result) if f["code"] == "untrusted-program"]
            assert finding["severity"] == "error" and finding["message"] == (
                f"the hub runs as root, so the proxy the hub starts (ConfigurableHTTPProxy.command[0]) {proxy} runs "
                f"as root too, but {proxy} is owned by nobody (uid 65534), not root")
            assert finding["fix"] == f"chown root {proxy}"
            os.chown(proxy, 0, 0)  # the control: root's own proxy passes
            assert check(prefix).returncode == 0
        finally:
            shutil.rmtree(planted, ignore_errors=True)

    @needs_jupyterhub
    def test_a_path_directory_others_may_write_is_an_error_for_a_root_hub(self, prefix):
        without_check_command(prefix)
        shared = Path(tempfile.mkdtemp(prefix="svctl-shared-bin-", dir="/tmp"))
        try:
            shared.chmod(0o1777)
            service = prefix / "etc/svctl/jupyterhub.toml"
            service.write_text(service.read_text().replace('environment = { PATH = "',
                                                           f'environment = {{ PATH = "{shared}:'))
            result = check(prefix, "--json")
            assert result.returncode == 6, result.stdout
            [finding] = [f for f in findings(result) if f["code"] == "untrusted-program"]
            assert finding["message"].startswith("the hub runs as root and looks programs up on its PATH, but "
                                                 f"{shared} is world-writable (mode 1777)")
            assert finding["fix"] == f"chmod go-w {shared}"
        finally:
            shutil.rmtree(shared, ignore_errors=True)

    @needs_jupyterhub
    def test_a_shell_wrapper_around_jupyterhub_is_not_a_missing_jupyter_server(self, prefix):
        without_check_command(prefix)
        wrapper = prefix / "usr/local/bin/jupyterhub"
        wrapper.parent.mkdir(parents=True)
        wrapper.write_text(f'#!/bin/sh\nexec {JUPYTERHUB} "$@"\n')
        wrapper.chmod(0o755)
        service = prefix / "etc/svctl/jupyterhub.toml"
        service.write_text(service.read_text().replace(f'command = ["{JUPYTERHUB}"', f'command = ["{wrapper}"'))
        result = check(prefix, "--json")
        assert result.returncode == 0, result.stdout
        [info] = [f for f in findings(result) if "jupyter_server" in f["message"]]
        assert (info["severity"], info["message"]) == (
            "info", f"jupyter_server not checked: command[0] {wrapper} is not a Python script (it runs '/bin/sh')")


class TestMissingPair:
    """Review defect 3: the fix for a missing certificate is one that keeps the deployment."""

    @needs_jupyterhub
    def test_the_fix_recreates_the_pair_and_keeps_everything_else(self, prefix):
        without_check_command(prefix)
        ssl = prefix / "srv/jupyterhub/ssl"
        secret = prefix / "srv/jupyterhub/jupyterhub_cookie_secret"
        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        config.write_text(config.read_text() + "# an edit of the operator's\n")
        kept = {path: path.read_bytes() for path in (secret, config, prefix / "etc/svctl/jupyterhub.toml")}
        (ssl / "jupyterhub.crt").unlink()
        (ssl / "jupyterhub.key").unlink()
        result = check(prefix)
        assert result.returncode == 6
        fixes = {line.strip() for line in result.stdout.splitlines() if line.startswith("    fix: ")}
        renew = f"fix: svctl init jupyterhub --prefix {prefix} --renew-cert writes a new self-signed pair (and " \
                "restarts the hub if it runs)"
        assert renew in fixes and not any("--force" in fix for fix in fixes), result.stdout
        done = subprocess.run([PYTHON, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                               "--renew-cert"], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert check(prefix).returncode == 0
        assert {path: path.read_bytes() for path in kept} == kept


@pytest.fixture
def netns():
    """A network namespace whose lo has ::1 only (127.0.0.1/8 deleted): a host with no IPv4."""
    name = f"svctl-doctor-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "del", "127.0.0.1/8", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


PROBE = "from supervisor.jupyterhub.probe import host_facts; f = host_facts(); print(f.has_ipv4, f.ipv4_loopback)"


@needs_ip
class TestNoIPv4:
    """Item 12: kernels bind 127.0.0.1 over TCP unless the user servers use the ipc transport."""

    def test_the_probe_sees_no_ipv4_loopback_in_the_namespace(self, netns):
        inside = subprocess.run(["ip", "netns", "exec", netns, PYTHON, "-c", PROBE], capture_output=True,
                                text=True, cwd=REPO, check=True)
        assert inside.stdout.split() == ["False", "False"]
        outside = subprocess.run([PYTHON, "-c", PROBE], capture_output=True, text=True, cwd=REPO, check=True)
        assert outside.stdout.split()[1] == "True"  # this host (the test runner's namespace) has 127.0.0.1

    @needs_jupyterhub
    def test_a_config_without_ipc_is_an_error_there_and_the_generated_one_passes(self, prefix, netns):
        without_check_command(prefix)
        generated = check(prefix, "--json", netns=netns)
        assert generated.returncode == 0, generated.stdout
        assert not [f for f in findings(generated) if f["code"] == "kernel-transport"]

        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        config.write_text(config.read_text().replace('c.Spawner.args = ["--KernelManager.transport=ipc"]',
                                                     'c.Spawner.args = ["--debug"]'))
        edited = check(prefix, netns=netns)
        assert edited.returncode == 6
        assert "error: kernels will not start on this IPv6-only host: jupyter_client binds their ports on " \
               "127.0.0.1, which cannot be bound here, and c.Spawner.args (line" in edited.stdout
        assert "fix: add '--KernelManager.transport=ipc' to c.Spawner.args, then svctl reload jupyterhub (the config " \
               "svctl init jupyterhub writes has it)" in edited.stdout
        # with 127.0.0.1, the same config only earns an information line
        here = check(prefix, "--json")
        assert [f["severity"] for f in findings(here) if f["code"] == "kernel-transport"] == ["info"]
