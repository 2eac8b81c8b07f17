"""The JupyterHub doctor's rules, on parsed configs and made-up facts (no processes, no network)."""

from __future__ import annotations

import datetime

import pytest

from supervisor.config import from_mapping
from supervisor.jupyterhub.certs import CertReport
from supervisor.jupyterhub.doctor import (ERROR, INFO, WARNING, Facts, HostFacts, PortState, diagnose,
                                          ipv6_findings)
from supervisor.jupyterhub.pyconfig import UNKNOWN, config_path_from_command, parse_config

NO_IPV4 = HostFacts(has_ipv4=False, localhost_ipv6=False, hostname_ipv6=False)
DUAL = HostFacts(has_ipv4=True, localhost_ipv6=False, hostname_ipv6=False)
TOOLS = dict(node="/usr/bin/node", proxy="/usr/bin/configurable-http-proxy", jupyter_server=True)

GOOD = '''
import os
c = get_config()
c.JupyterHub.bind_url = "https://[::1]:9443"
c.JupyterHub.ssl_cert = "/srv/jh/ssl/jupyterhub.crt"
c.JupyterHub.ssl_key = "/srv/jh/ssl/jupyterhub.key"
c.JupyterHub.hub_bind_url = "http://[::1]:9081"
c.ConfigurableHTTPProxy.api_url = "http://[::1]:9001"
c.Spawner.ip = "::1"
c.JupyterHub.db_url = "sqlite:////srv/jh/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/srv/jh/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "/srv/jh/jupyterhub-proxy.pid"
c.LocalProcessSpawner.interrupt_timeout = 8
c.LocalProcessSpawner.term_timeout = 8
c.Authenticator.allowed_users = {"alice"}
'''
GOOD_MODES = {"/srv/jh/ssl/jupyterhub.crt": 0o644, "/srv/jh/ssl/jupyterhub.key": 0o600,
              "/srv/jh/jupyterhub_cookie_secret": 0o600}


def service(**extra):
    data = {"command": ["/usr/bin/jupyterhub", "-f", "/etc/jh/jupyterhub_config.py"],
            "working_directory": "/srv/jh", "preset": "jupyterhub", **extra}
    return from_mapping("jupyterhub", "/etc/svctl/jupyterhub.toml", data)


def facts(host=NO_IPV4, modes=None, **extra):
    values = {**TOOLS, **extra}
    return Facts(host=host, modes=GOOD_MODES if modes is None else modes, **values)


def codes(findings, severity=None):
    return sorted(f.code for f in findings if severity is None or f.severity == severity)


class TestPyconfig:
    def test_seed_style_paths_fold(self):
        """pjoin aliases, module-level names and os.path.join fold to absolute paths."""
        config = parse_config(
            "import os\npjoin = os.path.join\nrun = os.path.join('/srv/jupyterhub')\n"
            "ssl = pjoin(run, 'ssl')\nc.JupyterHub.ssl_key = pjoin(ssl, 'k.key')\n"
            "c.JupyterHub.port = 9443\nc.X.y = f'{run}/db'\nc.X.z = some_call()\n")
        assert config.get("JupyterHub.ssl_key") == "/srv/jupyterhub/ssl/k.key"
        assert config.get("JupyterHub.port") == 9443
        assert config.get("X.y") == "/srv/jupyterhub/db"
        assert config.get("X.z") is UNKNOWN
        assert config.line("JupyterHub.port") == 6

    def test_syntax_error_is_recorded_with_line(self):
        """A broken config is reported, not raised."""
        config = parse_config("c = get_config()\nc.JupyterHub.port = = 1\n")
        assert config.syntax_error and config.syntax_error.startswith("line 2")

    def test_conditional_setting_is_unknown(self):
        """A setting inside an if may or may not apply: it is set, but its value is unknown."""
        config = parse_config("if x:\n    c.Spawner.ip = '127.0.0.1'\n")
        assert config.has("Spawner.ip") and config.get("Spawner.ip") is UNKNOWN

    def test_env_get_uses_the_default(self):
        config = parse_config("import os\nc.JupyterHub.cleanup_servers = os.environ.get('X', '1') == '1'\n"
                              "c.A.b = os.environ.get('RUN', '/run/x')\n")
        assert config.get("A.b") == "/run/x"

    @pytest.mark.parametrize("command, expected", [
        (("/bin/jh", "-f", "/etc/c.py"), "/etc/c.py"),
        (("/bin/jh", "--config=/etc/c.py"), "/etc/c.py"),
        (("/bin/jh", "--config", "rel.py"), "/srv/rel.py"),
        (("/bin/jh",), "/srv/jupyterhub_config.py"),
    ])
    def test_config_path_from_command(self, command, expected):
        assert config_path_from_command(command, "/srv") == expected


class TestDoctor:
    def test_config_written_by_init_has_no_errors_or_warnings_without_ipv4(self):
        """The pure-IPv6 config passes on a host with no IPv4 at all."""
        findings = diagnose(service(), parse_config(GOOD), facts())
        assert codes(findings, ERROR) == [] and codes(findings, WARNING) == []

    def test_every_ipv4_only_setting_is_flagged_without_ipv4(self):
        """127.0.0.1, localhost, 0.0.0.0, empty binds and defaults are each an error."""
        hub = parse_config(
            "c.JupyterHub.bind_url = 'https://0.0.0.0:9443'\n"
            "c.JupyterHub.hub_ip = ''\n"
            "c.ConfigurableHTTPProxy.api_url = 'http://localhost:8001'\n"
            "c.Spawner.args = ['--ServerApp.ip=127.0.0.1']\n")
        findings = ipv6_findings(hub, NO_IPV4)
        flagged = {f.message.split(" ")[0] for f in findings if f.severity == ERROR}
        assert flagged == {"JupyterHub.bind_url", "JupyterHub.hub_ip", "ConfigurableHTTPProxy.api_url",
                           "Spawner.args", "Spawner.ip"}

    def test_defaults_are_only_informational_on_a_dual_stack_host(self):
        findings = ipv6_findings(parse_config("c = get_config()\n"), DUAL)
        assert findings and {f.severity for f in findings} == {INFO}

    def test_wildcard_hub_bind_is_fine_with_hub_connect_ip(self):
        hub = parse_config(GOOD + "c.JupyterHub.hub_bind_url = 'http://[::]:9081'\n")
        assert codes(ipv6_findings(hub, NO_IPV4)) == ["wildcard"]
        hub = parse_config(GOOD + "c.JupyterHub.hub_bind_url = 'http://[::]:9081'\n"
                           "c.JupyterHub.hub_connect_ip = '::1'\n")
        assert ipv6_findings(hub, NO_IPV4) == []

    def test_localhost_is_fine_when_it_resolves_to_ipv6_only(self):
        hub = parse_config(GOOD + "c.ConfigurableHTTPProxy.api_url = 'http://localhost:9001'\n")
        assert ipv6_findings(hub, HostFacts(False, localhost_ipv6=True, hostname_ipv6=False)) == []
        assert codes(ipv6_findings(hub, NO_IPV4)) == ["ipv4-only"]

    def test_deprecated_and_ignored_options(self):
        hub = parse_config(GOOD + "c.Authenticator.whitelist = {'a'}\nc.JupyterHub.log_file = '/var/log/x'\n")
        findings = diagnose(service(), hub, facts())
        assert codes(findings, WARNING) == ["deprecated", "ignored-option"]
        assert any("allowed_users" in f.fix for f in findings)

    def test_syntax_error_is_the_only_finding(self):
        findings = diagnose(service(), parse_config("c.JupyterHub.port = (\n"), facts())
        assert [(f.severity, f.code) for f in findings] == [(ERROR, "syntax")]

    def test_relative_state_paths(self):
        hub = parse_config(GOOD + "c.JupyterHub.db_url = 'jupyterhub.sqlite'\n"
                           "c.JupyterHub.cookie_secret_file = 'secret'\n")
        relative = [f for f in diagnose(service(), hub, facts()) if f.code == "relative-path"]
        assert {f.severity for f in relative} == {WARNING} and len(relative) == 2

    def test_relative_default_in_root_directory_is_a_warning(self):
        hub = parse_config(GOOD.replace('c.ConfigurableHTTPProxy.pid_file = "/srv/jh/jupyterhub-proxy.pid"', ""))
        findings = diagnose(service(working_directory="/"), hub, facts())
        assert [f.severity for f in findings if f.code == "relative-path"] == [WARNING]

    @pytest.mark.parametrize("secret_mode, key_mode, expected", [
        (0o640, 0o600, []),
        (0o644, 0o600, [(ERROR, "permissions")]),
        (0o600, 0o640, [(WARNING, "permissions")]),
        (0o600, 0o644, [(ERROR, "permissions")]),
    ])
    def test_secret_and_key_permissions(self, secret_mode, key_mode, expected):
        modes = {**GOOD_MODES, "/srv/jh/jupyterhub_cookie_secret": secret_mode, "/srv/jh/ssl/jupyterhub.key": key_mode}
        findings = diagnose(service(), parse_config(GOOD), facts(modes=modes))
        assert [(f.severity, f.code) for f in findings if f.code == "permissions"] == expected

    def test_missing_expired_and_mismatched_certificate(self):
        modes = {**GOOD_MODES, "/srv/jh/ssl/jupyterhub.crt": None}
        assert codes(diagnose(service(), parse_config(GOOD), facts(modes=modes)), ERROR) == ["tls"]
        report = CertReport(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
                            ("certificate x expired on 2020-01-01", "certificate x does not match key y"), ())
        findings = diagnose(service(), parse_config(GOOD), facts(cert=report))
        assert codes(findings, ERROR) == ["tls", "tls"]

    def test_ports_taken_by_someone_else_but_not_by_ourselves(self):
        ports = (PortState("JupyterHub.bind_url", "::1", 9443, "taken", "pid 7 (node configurable-http-proxy)"),
                 PortState("JupyterHub.hub_bind_url", "::1", 9081, "ours", "pid 8"))
        findings = [f for f in diagnose(service(), parse_config(GOOD), facts(ports=ports)) if f.code == "port-taken"]
        assert len(findings) == 1 and "orphaned proxy" in findings[0].fix

    def test_missing_tools(self):
        findings = diagnose(service(), parse_config(GOOD), facts(node=None, proxy=None, jupyter_server=False))
        assert codes(findings, ERROR) == ["missing-tool"] * 3

    def test_external_proxy_needs_no_proxy_program(self):
        hub = parse_config(GOOD + "c.ConfigurableHTTPProxy.should_start = False\n")
        assert codes(diagnose(service(), hub, facts(node=None, proxy=None)), ERROR) == []

    def test_stop_schedule_shorter_than_hub_cleanup(self):
        """Default spawner timeouts (30+30+5) don't fit TERM/30; the init config's (8+8+5) do."""
        seed = parse_config("c.JupyterHub.bind_url = 'https://[::1]:9443'\n")
        assert "stop-too-short" in codes(diagnose(service(stop="TERM/30/KILL/5"), seed, facts()))
        assert "stop-too-short" not in codes(diagnose(service(stop="TERM/75/KILL/5"), seed, facts()))
        assert "stop-too-short" not in codes(diagnose(service(), parse_config(GOOD), facts()))
        no_cleanup = parse_config("c.JupyterHub.cleanup_servers = False\n")
        assert "stop-too-short" not in codes(diagnose(service(), no_cleanup, facts()))

    def test_open_hub_is_an_error(self):
        hub = parse_config(GOOD + "c.JupyterHub.authenticator_class = 'dummy'\n")
        assert "open-hub" in codes(diagnose(service(), hub, facts()), ERROR)


class TestUsers:
    def test_pam_users_without_an_account_are_a_warning(self):
        hub = parse_config(GOOD + 'c.Authenticator.admin_users = {"root-admin"}\n', "/etc/jh/jupyterhub_config.py")
        from supervisor.jupyterhub.doctor import hub_user_names

        assert hub_user_names(hub) == ("alice", "root-admin")
        found = diagnose(service(), hub, facts(missing_users=("alice",)))
        [finding] = [f for f in found if f.code == "no-such-user"]
        assert finding.severity == "warning" and "alice" in finding.message and "adduser alice" in finding.fix

    def test_every_account_present_or_another_authenticator_is_quiet(self):
        hub = parse_config(GOOD, "/etc/jh/jupyterhub_config.py")
        assert "no-such-user" not in codes(diagnose(service(), hub, facts(missing_users=())))
        dummy = parse_config(GOOD + 'c.JupyterHub.authenticator_class = "dummy"\n'
                             'c.DummyAuthenticator.password = "x"\n', "/etc/jh/jupyterhub_config.py")
        assert "no-such-user" not in codes(diagnose(service(), dummy, facts(missing_users=("alice",))))

    def test_the_probe_asks_the_system(self):
        from supervisor.jupyterhub.probe import missing_users

        hub = parse_config('c.Authenticator.allowed_users = {"root", "no-such-user-svctl-x"}\n', "/x.py")
        assert missing_users(hub) == ("no-such-user-svctl-x",)
