"""`svctl init jupyterhub`: files, permissions, idempotency, and configs that parse and pass the doctor."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys

import pytest

from supervisor.config import load
from supervisor.jupyterhub import scaffold
from supervisor.jupyterhub.doctor import ERROR, WARNING, Facts, HostFacts, diagnose
from supervisor.jupyterhub.pyconfig import read_config

pytest.importorskip("cryptography", reason="the certificate tests need the cryptography package")


def run_init(prefix, *extra):
    return subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                           "--ip", "::1", *extra], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    result = run_init(root, "--auth", "dummy", "--users", "alice,bob", "--port", "19290")
    assert result.returncode == 0, result.stderr
    return root


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class TestInit:
    def test_reports_each_file_written(self, prefix):
        """A second run keeps every file and says so, and prints where the password is."""
        result = run_init(prefix, "--auth", "dummy", "--users", "alice,bob")
        assert result.returncode == 0
        kept = [line for line in result.stdout.splitlines() if line.startswith("kept")]
        assert len(kept) == 6 and not any(line.startswith("wrote") for line in result.stdout.splitlines())
        assert "password: in " in result.stdout

    def test_secrets_are_private(self, prefix):
        state = prefix / "srv/jupyterhub"
        assert mode(state / "ssl/jupyterhub.key") == 0o600
        assert mode(state / "jupyterhub_cookie_secret") == 0o600
        assert mode(state / "login-password") == 0o600
        assert len((state / "jupyterhub_cookie_secret").read_text().strip()) == 64  # 32 bytes hex

    def test_force_overwrites(self, prefix):
        secret = (prefix / "srv/jupyterhub/jupyterhub_cookie_secret").read_text()
        result = run_init(prefix, "--auth", "dummy", "--force")
        assert result.returncode == 0 and "kept" not in result.stdout
        assert (prefix / "srv/jupyterhub/jupyterhub_cookie_secret").read_text() != secret

    def test_service_file_loads_with_the_seed_defaults(self, prefix):
        config = load("jupyterhub", str(prefix / "etc/svctl"))
        assert config.stop_text == "TERM/30/KILL/5" and config.reload == "restart"
        assert config.pidfile == str(prefix / "run/jupyterhub.pid")
        assert config.log_file == str(prefix / "var/log/jupyterhub.log")
        assert config.working_directory == str(prefix / "srv/jupyterhub")
        assert config.ready.endswith("/hub/health") and config.ready.startswith("https://[::1]:")
        assert config.watch == (str(prefix / "etc/jupyterhub/jupyterhub_config.py"),)
        assert "--show-config" in config.check and "--JupyterHub.pid_file=" in config.check
        assert os.path.isabs(config.command[0]) and config.preset == "jupyterhub"

    def test_rendered_config_parses_with_absolute_state(self, prefix):
        path = prefix / "etc/jupyterhub/jupyterhub_config.py"
        ast.parse(path.read_text())
        hub = read_config(str(path))
        assert hub.get("JupyterHub.bind_url").startswith("https://[::1]:")
        for key in ("JupyterHub.cookie_secret_file", "ConfigurableHTTPProxy.pid_file", "JupyterHub.ssl_key"):
            assert hub.get(key).startswith(str(prefix))
        assert hub.get("JupyterHub.authenticator_class") == "shared-password"
        assert "whitelist" not in path.read_text().replace("`whitelist` is", "")

    def test_rendered_config_passes_the_doctor_without_ipv4(self, prefix):
        config = load("jupyterhub", str(prefix / "etc/svctl"))
        hub = read_config(str(prefix / "etc/jupyterhub/jupyterhub_config.py"))
        state = str(prefix / "srv/jupyterhub")
        facts = Facts(HostFacts(False, False, False), {f"{state}/ssl/jupyterhub.crt": 0o644, f"{state}/ssl/jupyterhub.key": 0o600,
                                   f"{state}/jupyterhub_cookie_secret": 0o600}, None, (), "/n", "/p", True)
        findings = diagnose(config, hub, facts)
        assert [f for f in findings if f.severity in (ERROR, WARNING)] == []

    def test_certificate_matches_key(self, prefix):
        from supervisor.jupyterhub.certs import inspect

        report = inspect(str(prefix / "srv/jupyterhub/ssl/jupyterhub.crt"), str(prefix / "srv/jupyterhub/ssl/jupyterhub.key"))
        assert report.problems == () and report.not_after is not None

    def test_pam_mode_without_prefix_layout(self):
        layout = scaffold.Layout.under("", "/etc/svctl")
        options = scaffold.InitOptions(ip="2001:db8::8", jupyterhub="/usr/local/bin/jupyterhub", path_env="/usr/bin",
                                       users=("u1",), admins=("u1",))
        text = scaffold.render_config(layout, options)
        assert 'authenticator_class = "pam"' in text and 'spawner_class = "localprocess"' in text
        assert "'https://[2001:db8::8]:9443'" in text and "'/srv/jupyterhub/jupyterhub_cookie_secret'" in text
        service = scaffold.render_service(layout, options)
        assert 'pidfile = "/run/jupyterhub.pid"' in service and "events_file" not in service


class TestOptions:
    @pytest.mark.parametrize("bad", ["::", "0.0.0.0", "example.org", "999.1.1.1"])
    def test_ip_must_be_a_literal_non_wildcard(self, bad):
        with pytest.raises(scaffold.InitError):
            scaffold.check_ip(bad)

    def test_bad_ip_is_exit_2(self, tmp_path):
        result = run_init(tmp_path, "--ip", "::")
        assert result.returncode == 2 and "wildcard" in result.stderr
        assert not (tmp_path / "etc").exists()

    def test_default_ip_prefers_global_over_unique_local(self):
        assert scaffold.default_ip(["::1", "fe80::1", "fd00::2", "2a00:1450::1"]) == "2a00:1450::1"
        assert scaffold.default_ip(["::1", "fe80::1", "fd00::2"]) == "fd00::2"
        assert scaffold.default_ip(["::1", "fe80::1"]) == "::1"

    def test_hub_path_puts_programs_first_once(self):
        path = scaffold.hub_path("/venv/bin/jupyterhub", "/npm/bin/configurable-http-proxy").split(":")
        assert path[:2] == ["/venv/bin", "/npm/bin"] and len(path) == len(set(path))
