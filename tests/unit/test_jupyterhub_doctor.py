"""The JupyterHub doctor's rules, on parsed configs and made-up facts (no processes, no network)."""

from __future__ import annotations

import datetime
import os

import pytest

from supervisor.config import from_mapping
from supervisor.jupyterhub.certs import CertReport
from supervisor.jupyterhub.doctor import (ERROR, INFO, UNCHECKED, WARNING, Facts, HostFacts, PortState, Program,
                                          ProxyTls, diagnose, expiry_findings, hub_program_findings, ipv6_findings,
                                          kernel_findings, kernel_transport, tool_findings, trust_findings)
from supervisor.jupyterhub.pyconfig import UNKNOWN, config_path_from_command, parse_config

NO_IPV4 = HostFacts(has_ipv4=False, localhost_ipv6=False, hostname_ipv6=False)
DUAL = HostFacts(has_ipv4=True, localhost_ipv6=False, hostname_ipv6=False)
TOOLS = dict(node="/usr/bin/node", proxy="/usr/bin/configurable-http-proxy", jupyter_server=True)
NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.UTC)

GOOD = '''
import os
c = get_config()
c.JupyterHub.bind_url = "https://[::1]:9443"
c.JupyterHub.ssl_cert = "/srv/jh/ssl/jupyterhub.crt"
c.JupyterHub.ssl_key = "/srv/jh/ssl/jupyterhub.key"
c.JupyterHub.hub_bind_url = "http://[::1]:9081"
c.ConfigurableHTTPProxy.api_url = "http://[::1]:9001"
c.Spawner.ip = "::1"
c.Spawner.args = ["--KernelManager.transport=ipc"]
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
                            ("certificate x does not match key y",), self_signed=True, key_matches=False)
        findings = diagnose(service(), parse_config(GOOD), facts(cert=report, now=NOW))
        assert codes(findings, ERROR) == ["cert-expired", "tls"]
        assert all("--force" not in f.fix for f in findings if f.code.startswith(("tls", "cert")))

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


NO_LOOPBACK = HostFacts(has_ipv4=False, localhost_ipv6=False, hostname_ipv6=False, ipv4_loopback=False)
WITHOUT_IPC = GOOD.replace('c.Spawner.args = ["--KernelManager.transport=ipc"]\n', "")


class TestKernels:
    """Item 12: jupyter_client binds kernels on 127.0.0.1 unless the user servers use ipc."""

    def test_no_ipv4_loopback_without_ipc_is_an_error_with_the_fix(self):
        [finding] = [f for f in diagnose(service(), parse_config(WITHOUT_IPC), facts(host=NO_LOOPBACK))
                     if f.code == "kernel-transport"]
        assert finding.severity == ERROR
        assert finding.message.startswith("kernels will not start on this IPv6-only host")
        assert "'--KernelManager.transport=ipc' to c.Spawner.args, then svctl reload jupyterhub" in finding.fix
        assert "--force" not in finding.fix

    def test_ipc_in_spawner_args_passes(self):
        assert "kernel-transport" not in codes(diagnose(service(), parse_config(GOOD), facts(host=NO_LOOPBACK)))

    @pytest.mark.parametrize("args", ['["--KernelManager.transport", "ipc"]', '["--KernelManager.transport=IPC"]',
                                      '["--debug", "--AsyncIOLoopKernelManager.transport=ipc"]',
                                      '["--ConnectionFileMixin.transport=ipc"]'])
    def test_every_spelling_traitlets_accepts(self, args):
        hub = parse_config(WITHOUT_IPC + f"c.Spawner.args = {args}\n")
        assert kernel_transport(hub)[0] == "ipc"
        assert "kernel-transport" not in codes(kernel_findings(hub, facts(host=NO_LOOPBACK)))

    def test_the_most_specific_spawner_section_decides(self):
        """c.LocalProcessSpawner.args replaces c.Spawner.args for LocalProcessSpawner (traitlets)."""
        hub = parse_config(GOOD + 'c.LocalProcessSpawner.args = ["--debug"]\n')
        assert kernel_transport(hub) == ("tcp", "LocalProcessSpawner.args")
        [finding] = kernel_findings(hub, facts(host=NO_LOOPBACK))
        assert finding.severity == ERROR and "c.LocalProcessSpawner.args (line" in finding.message

    def test_a_later_transport_overrides_an_earlier_one(self):
        hub = parse_config(WITHOUT_IPC + 'c.Spawner.args = ["--KernelManager.transport=ipc", '
                           '"--KernelManager.transport=tcp"]\n')
        assert kernel_transport(hub)[0] == "tcp"

    def test_the_hubs_own_kernel_manager_setting_is_named_as_not_reaching_users(self):
        hub = parse_config(WITHOUT_IPC + 'c.KernelManager.transport = "ipc"\n')
        [finding] = kernel_findings(hub, facts(host=NO_LOOPBACK))
        assert finding.severity == ERROR and "applies to the hub, not to user servers" in finding.message

    def test_computed_args_are_a_warning_only_without_loopback(self):
        hub = parse_config(WITHOUT_IPC + "c.Spawner.args = make_args()\n")
        assert [f.severity for f in kernel_findings(hub, facts(host=NO_LOOPBACK))] == [WARNING]
        assert kernel_findings(hub, facts(host=DUAL)) == []

    def test_with_ipv4_loopback_tcp_is_only_information(self):
        assert [f.severity for f in kernel_findings(parse_config(WITHOUT_IPC), facts(host=DUAL))] == [INFO]
        # the loopback fact, not "any IPv4 address", decides: an IPv4 address on eth0 does not help
        no_lo = HostFacts(has_ipv4=True, localhost_ipv6=False, hostname_ipv6=False, ipv4_loopback=False)
        assert [f.severity for f in kernel_findings(parse_config(WITHOUT_IPC), facts(host=no_lo))] == [ERROR]

    def test_a_home_too_deep_for_unix_socket_paths(self):
        """ipc sockets are RUNTIME_DIR/kernel-<uuid>-ipc-N: at most 107 bytes."""
        deep = "/home/" + "d" * 40 + "/alice"
        findings = kernel_findings(parse_config(GOOD), facts(host=NO_LOOPBACK, homes={"alice": deep, "bob": "/home/bob"}))
        [finding] = findings
        assert finding.code == "kernel-socket-path" and "for alice " in finding.message
        assert f"{deep}/.local/share/jupyter/runtime" in finding.message
        assert kernel_findings(parse_config(GOOD), facts(host=NO_LOOPBACK, homes={"bob": "/home/bob"})) == []

    def test_a_runtime_dir_set_per_user_by_a_hook_is_not_measured(self):
        """svctl's generated pre_spawn_hook picks a short directory itself; a function is not readable."""
        hub = parse_config(GOOD + "def hook(spawner):\n    pass\nc.Spawner.pre_spawn_hook = hook\n")
        assert kernel_findings(hub, facts(host=NO_LOOPBACK, homes={"alice": "/" + "d" * 90})) == []

    def test_a_literal_runtime_dir_with_the_user_name(self):
        hub = parse_config(GOOD + 'c.Spawner.environment = {"JUPYTER_RUNTIME_DIR": "/run/jupyter/' + "x" * 30
                           + '/{username}"}\n')
        assert codes(kernel_findings(hub, facts(host=NO_LOOPBACK, homes={"alice": "/home/alice"}))) == []
        long_name = "a" * 20
        assert codes(kernel_findings(hub, facts(host=NO_LOOPBACK, homes={long_name: "/home/x"}))) == \
            ["kernel-socket-path"]


class TestPrograms:
    """The jupyterhub executable (command[0]) and the proxy the hub starts."""

    def test_a_missing_jupyterhub_is_an_error_naming_it_and_both_fixes(self):
        """Item 3: the fix edits the service file; `init --force` would reset the whole deployment."""
        hub_program = Program("jupyterhub", "/usr/local/bin/jupyterhub", None, "does not exist")
        install = {"jupyterhub": ("apt-get install python3-venv", "python3 -m venv /opt/jupyterhub")}
        [finding] = [f for f in diagnose(service(), parse_config(GOOD), facts(programs=(hub_program,), install=install))
                     if f.code == "missing-tool"]
        assert finding.severity == ERROR and "/usr/local/bin/jupyterhub does not exist" in finding.message
        assert finding.fix.startswith("set command[0] and check[0] in /etc/svctl/jupyterhub.toml to your "
                                      "jupyterhub executable, then svctl restart jupyterhub")
        assert "svctl init jupyterhub --jupyterhub PATH --prefix NEW_EMPTY_DIR --no-boot" in finding.fix
        assert "--force" not in finding.fix
        assert "apt-get install python3-venv; python3 -m venv /opt/jupyterhub" in finding.fix

    def test_a_jupyterhub_that_exists_elsewhere_is_pointed_at_not_installed(self):
        """Item 3: with /opt/jupyterhub/bin/jupyterhub there, creating /opt/jupyterhub is the wrong advice."""
        hub_program = Program("jupyterhub", "/usr/local/bin/jupyterhub", None, "does not exist")
        install = {"jupyterhub": ("apt-get install python3-venv", "python3 -m venv /opt/jupyterhub")}
        [finding] = hub_program_findings(facts(programs=(hub_program,), install=install,
                                               elsewhere={"jupyterhub": "/opt/jupyterhub/bin/jupyterhub"}), service())
        assert finding.fix == ("point command[0] and check[0] in /etc/svctl/jupyterhub.toml at "
                               "/opt/jupyterhub/bin/jupyterhub, which exists (and put /opt/jupyterhub/bin first in "
                               "its environment.PATH), then svctl restart jupyterhub")

    def test_no_fix_text_would_reset_an_existing_deployment(self):
        """Item 3: no finding of a deployment that exists recommends `init --force` (it resets allowed
        users, the cookie secret, a CA's certificate and every edit)."""
        hub = parse_config(GOOD + "c.JupyterHub.authenticator_class = 'dummy'\n")
        modes = {**GOOD_MODES, "/srv/jh/ssl/jupyterhub.crt": None, "/srv/jh/ssl/jupyterhub.key": None}
        broken = facts(host=NO_LOOPBACK, modes=modes, jupyter_server=False, homes={"alice": "/" + "d" * 90},
                       programs=(Program("jupyterhub", "/gone/jupyterhub", None, "does not exist"),
                                 Program("configurable-http-proxy", "configurable-http-proxy", None, "is not on PATH"),
                                 Program("node", "node", None, "is not on PATH")))
        findings = diagnose(service(), hub, broken) + diagnose(service(), parse_config(WITHOUT_IPC), broken)
        assert {"open-hub", "tls", "missing-tool", "kernel-transport", "kernel-socket-path"} <= \
            set(codes(findings, ERROR))
        assert [f.fix for f in findings if "--force" in f.fix] == []

    def test_without_install_commands_the_hint_is_generic(self):
        hub_program = Program("jupyterhub", "/x/jupyterhub", None, "is not executable (mode 0644)")
        [finding] = hub_program_findings(facts(programs=(hub_program,)))
        assert "pip install jupyterhub notebook" in finding.fix

    def test_a_found_jupyterhub_is_quiet(self):
        assert hub_program_findings(facts(programs=(Program("jupyterhub", "/j", "/j"),))) == []

    def test_a_jupyterhub_the_caller_cannot_look_at_is_not_checked(self):
        hub_program = Program("jupyterhub", "/root/venv/bin/jupyterhub", None, "", "/root (mode 0700) is closed")
        [finding] = hub_program_findings(facts(programs=(hub_program,), caller="nobody"))
        assert finding.severity == UNCHECKED and finding.message.startswith("not checked as nobody: ")
        assert finding.fix == "run svctl check as root"

    def test_a_missing_proxy_only_matters_when_the_hub_starts_it(self):
        proxy = Program("configurable-http-proxy", "configurable-http-proxy", None, "is not on PATH")
        install = {"configurable-http-proxy": ("npm install --prefix /opt/jupyterhub configurable-http-proxy",)}
        [finding] = [f for f in diagnose(service(), parse_config(GOOD), facts(programs=(proxy,), install=install))
                     if f.code == "missing-tool"]
        assert "configurable-http-proxy is not on the service's PATH" in finding.message
        assert finding.fix.startswith("npm install --prefix /opt/jupyterhub")
        external = parse_config(GOOD + "c.ConfigurableHTTPProxy.should_start = False\n")
        assert "missing-tool" not in codes(diagnose(service(), external, facts(programs=(proxy,))))

    def test_a_configured_proxy_path_is_named(self):
        proxy = Program("configurable-http-proxy", "/opt/chp/bin/configurable-http-proxy", None, "does not exist")
        [finding] = [f for f in tool_findings(parse_config(GOOD), facts(programs=(proxy,)))]
        assert finding.message.startswith("/opt/chp/bin/configurable-http-proxy does not exist")


CLOSED = "/srv/jh (mode 0750, owner root) is closed to nobody"


class TestNotRoot:
    """Item 6: what a non-root caller cannot read is "not checked", never "missing" or --force."""

    def closed_facts(self, **extra):
        closed = {path: CLOSED for path in GOOD_MODES}
        return facts(modes={path: None for path in GOOD_MODES}, closed=closed, caller="nobody", **extra)

    def test_closed_secret_cert_and_key_are_not_checked_and_never_missing(self):
        findings = diagnose(service(), parse_config(GOOD), self.closed_facts())
        closed = [f for f in findings if f.severity == UNCHECKED]
        assert len(closed) == 3 and codes(findings, ERROR) == []
        for finding in closed:
            assert finding.message.startswith("not checked as nobody: ") and CLOSED in finding.message
            assert finding.fix == "run svctl check as root"
        assert not any("does not exist" in f.message or "--force" in f.fix for f in findings)

    def test_a_real_error_is_still_found_beside_what_is_not_checked(self):
        hub = parse_config(GOOD + "c.JupyterHub.authenticator_class = 'dummy'\n")
        findings = diagnose(service(), hub, self.closed_facts())
        assert codes(findings, ERROR) == ["open-hub"] and len(codes(findings, UNCHECKED)) == 3
        assert findings[0].severity == ERROR  # errors first, then warnings, then what was not checked

    def test_a_key_readable_by_stat_but_not_by_content(self):
        """A 0600 key in a searchable directory: its mode is judged, its match with the cert is not."""
        findings = diagnose(service(), parse_config(GOOD),
                            facts(closed={"/srv/jh/ssl/jupyterhub.key": "readable only by root (mode 0600)"},
                                  caller="nobody"))
        [finding] = [f for f in findings if f.severity == UNCHECKED]
        assert "whether it matches the certificate" in finding.message and "its mode" not in finding.message

    def test_a_port_held_by_a_process_hidden_from_the_caller(self):
        ports = (PortState("JupyterHub.bind_url", "::1", 9443, "unknown", "in use, by a process only root may see"),)
        [finding] = [f for f in diagnose(service(), parse_config(GOOD), facts(ports=ports, caller="nobody"))
                     if f.code == "port-taken"]
        assert finding.severity == UNCHECKED

    def test_what_could_not_be_run(self):
        found = diagnose(service(), parse_config(GOOD), facts(caller="nobody", jupyter_server=None,
                                                              not_run={"whether jupyter_server is installed": "x"}))
        assert [f.message for f in found if f.severity == UNCHECKED] == \
            ["not checked as nobody: whether jupyter_server is installed: x"]


class TestExpiry:
    """The certificate's dates, judged by the clock passed in (the seed's lasts 365 days)."""

    def report(self, not_after, self_signed=True, not_before=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)):
        return CertReport(not_after, (), (), not_before, self_signed, True)

    def test_under_30_days_is_a_warning_with_the_date_and_the_renewal(self):
        report = self.report(NOW + datetime.timedelta(days=12, hours=3))
        [finding] = [f for f in diagnose(service(), parse_config(GOOD), facts(cert=report, now=NOW))
                     if f.code.startswith("cert")]
        assert finding.severity == WARNING
        assert finding.message == "certificate /srv/jh/ssl/jupyterhub.crt expires in 12 days (2030-06-13)"
        assert finding.fix == "svctl init jupyterhub --renew-cert replaces a self-signed one"

    def test_30_days_or_more_is_quiet(self):
        assert expiry_findings("c", self.report(NOW + datetime.timedelta(days=30)), NOW) == []

    def test_expired_is_an_error(self):
        [finding] = expiry_findings("c", self.report(NOW - datetime.timedelta(days=3, hours=1)), NOW)
        assert finding.severity == ERROR and finding.code == "cert-expired"
        assert "expired 3 days ago (2030-05-29)" in finding.message and "--renew-cert" in finding.fix

    def test_the_last_day(self):
        [finding] = expiry_findings("c", self.report(NOW + datetime.timedelta(hours=5)), NOW)
        assert finding.severity == WARNING and "expires within a day" in finding.message

    def test_not_yet_valid_is_an_error(self):
        report = self.report(NOW + datetime.timedelta(days=300), not_before=NOW + datetime.timedelta(days=1))
        assert [f.code for f in expiry_findings("c", report, NOW)] == ["cert-not-yet-valid"]

    def test_a_certificate_from_an_authority_is_renewed_there(self):
        [finding] = expiry_findings("c", self.report(NOW + datetime.timedelta(days=5), self_signed=False), NOW)
        assert "--renew-cert" not in finding.fix and "authority" in finding.fix

    def test_the_external_proxys_pair_is_the_one_checked(self):
        """--proxy external: browsers see the pair in the proxy's service file."""
        hub = parse_config(GOOD + "c.ConfigurableHTTPProxy.should_start = False\n")
        pair = ProxyTls("/etc/svctl/jupyterhub-proxy.toml", "/srv/proxy/p.crt", "/srv/proxy/p.key",
                        self.report(NOW - datetime.timedelta(days=1)))
        modes = {**GOOD_MODES, "/srv/proxy/p.crt": 0o644, "/srv/proxy/p.key": 0o600}
        findings = diagnose(service(), hub, facts(modes=modes, proxy_tls=pair, now=NOW))
        assert [f.message.split(" ")[1] for f in findings if f.code == "cert-expired"] == ["/srv/proxy/p.crt"]
        closed = ProxyTls("/etc/svctl/jupyterhub-proxy.toml", None, None, None, "readable only by root (mode 0600)")
        findings = diagnose(service(), hub, facts(proxy_tls=closed, caller="nobody"))
        assert [f.code for f in findings if f.severity == UNCHECKED] == ["tls"]


class TestHostileValues:
    """Review defect 2: a value no program can use is one error naming the setting and its line,
    and nothing that gathers facts raises on it (as the probes did: ValueError from urlsplit().port,
    ipaddress, pwd and os.stat, and from ast.parse for a NUL byte on Python 3.11.2)."""

    @pytest.mark.parametrize("url, reason", [("http://[::1]:80801", "Port out of range 0-65535"),
                                             ("http://[zz]:x", "")])
    def test_a_url_that_does_not_parse(self, url, reason):
        from supervisor.jupyterhub.probe import _endpoints

        hub = parse_config(GOOD + f"c.JupyterHub.hub_bind_url = {url!r}\n")
        [finding] = [f for f in diagnose(service(), hub, facts()) if f.code == "bad-value"]
        assert finding.severity == ERROR and reason in finding.message
        assert finding.message.startswith(f"c.JupyterHub.hub_bind_url (line 17) = {url!r} is not a valid URL: ")
        assert [setting for setting, _, _ in _endpoints(hub)] == ["JupyterHub.bind_url",
                                                                  "ConfigurableHTTPProxy.api_url"]

    @pytest.mark.parametrize("value, message", [("99999", "= 99999 is out of range: ports are 0-65535"),
                                                ("'8000'", "= '8000' is not a port number")])
    def test_a_port_that_cannot_be(self, value, message):
        from supervisor.jupyterhub.probe import _endpoints

        hub = parse_config(f"c.JupyterHub.ip = '::1'\nc.JupyterHub.port = {value}\nc.JupyterHub.hub_port = {value}\n")
        found = [f.message for f in diagnose(service(), hub, facts()) if f.code == "bad-value"]
        assert found == [f"c.JupyterHub.port (line 2) {message}", f"c.JupyterHub.hub_port (line 3) {message}"]
        assert all(0 <= port <= 65535 for _, _, port in _endpoints(hub))

    def test_a_nul_byte_in_the_file_is_a_syntax_error_with_its_line(self):
        hub = parse_config("c = get_config()\nc.JupyterHub.ip = '::1'\x00\n")
        assert hub.syntax_error == "line 2: the file contains a NUL byte"
        [finding] = diagnose(service(), hub, facts())
        assert finding.severity == ERROR and finding.message == "not valid Python: line 2: the file contains a NUL byte"

    def test_a_nul_in_a_value(self):
        from supervisor.jupyterhub.probe import homes, missing_users

        hub = parse_config(GOOD + 'c.Authenticator.allowed_users = {"\\x00bad", "root"}\n'
                           'c.JupyterHub.cookie_secret_file = "/srv/jh/se\\0cret"\n')
        bad = [f for f in diagnose(service(), hub, facts()) if f.code == "bad-value"]
        assert sorted(f.message for f in bad) == [
            "c.Authenticator.allowed_users (line 17) holds a NUL byte in '\\x00bad': no file, URL or account "
            "name can contain one",
            "c.JupyterHub.cookie_secret_file (line 18) holds a NUL byte in '/srv/jh/se\\x00cret': no file, URL or "
            "account name can contain one"]
        assert missing_users(hub) == () and "\x00bad" not in homes(hub)

    def test_the_probes_take_a_nul_without_raising(self, tmp_path):
        import shutil
        import tempfile

        from supervisor.jupyterhub import probe_files
        from supervisor.jupyterhub.probe import port_state
        from supervisor.jupyterhub.probe_programs import singleuser_blocked

        assert probe_files.file_mode("/etc/pass\0wd") == (None, "")
        assert probe_files.read("/etc/pass\0wd") == (None, "", "the path holds a NUL byte")
        assert probe_files.program("configurable-http-proxy", "/usr/bin/x\0y", "/usr/bin", 0).problem == \
            "is not a valid path (it holds a NUL byte)"
        script = tmp_path / "jupyterhub"
        script.write_bytes(b"#!/usr/bin/pyth\0on3\n")
        script.chmod(0o755)
        assert probe_files.program("jupyterhub", str(script), "/usr/bin", 0).problem == \
            "has a #! line that holds a NUL byte"
        public = tempfile.mkdtemp(prefix="svctl-unit-", dir="/tmp")
        try:
            os.chmod(public, 0o755)
            singleuser = os.path.join(public, "jupyterhub-singleuser")
            with open(singleuser, "wb") as handle:
                handle.write(b"#!/usr/bin/pyth\0on3\n")
            os.chmod(singleuser, 0o755)
            assert singleuser_blocked(parse_config(""), public) is None
        finally:
            shutil.rmtree(public)
        assert port_state("x", "::1\0", 9, set()).state == "unavailable"
        assert port_state("x", "::1", 70000, set()).state == "unavailable"
        assert probe_files.root_trust_problem("/usr/bin/x\0y") == "'/usr/bin/x\\x00y' is not a valid path " \
            "(it holds a NUL byte)"

    @pytest.mark.parametrize("source", [
        "a = 'x'\n" + "a = a + a\n" * 60 + "c.X.y = a\n",  # 2**60 characters once folded
        "a = ['127.0.0.1']\n" + "a = [a, a, a, a]\n" * 40 + "c.X.y = a\n",  # tiny, but 4**40 once printed
        "a = 1\n" + "a = [a]\n" * 3000 + "c.X.y = a\nc.X.z = f'{a}'\n",  # repr() past the recursion limit
        "c.X.y = {[1]}\nc.X.z = {[1]: 2}\n",  # unhashable members: Python would raise
        "c.X.y = " + "1+" * 100000 + "1\n",  # the parser's own recursion limit
        "c.X.y = " + "-" * 200000 + "1\n",
    ])
    def test_hostile_python_folds_to_unknown_quickly(self, source):
        import time

        started = time.monotonic()
        hub = parse_config(source)
        findings = diagnose(service(), hub, facts())
        assert time.monotonic() - started < 5
        assert hub.syntax_error or hub.get("X.y") is UNKNOWN
        assert findings  # and no exception

    def test_check_prints_control_characters_and_surrogates_escaped(self):
        from supervisor.commands.check import printable

        assert printable("user \x1b]0;owned\x07 and \ud800\nnext") == "user \\x1b]0;owned\\x07 and \\ud800\nnext"


class TestJupyterServer:
    """Review defect 4: a wrapper that is no Python script is not "jupyter_server is missing"."""

    def test_a_wrapper_is_information_not_an_error(self):
        findings = diagnose(service(), parse_config(GOOD), facts(
            jupyter_server=None, jupyter_server_note="command[0] /usr/bin/jupyterhub is not a Python script "
                                                     "(it runs '/bin/sh')"))
        [finding] = [f for f in findings if f.code == "jupyter-server-unchecked"]
        assert finding.severity == INFO and finding.message == (
            "jupyter_server not checked: command[0] /usr/bin/jupyterhub is not a Python script (it runs '/bin/sh')")

    def test_the_fix_for_a_missing_jupyter_server_is_the_venvs_own_pip(self):
        [finding] = [f for f in tool_findings(parse_config(GOOD), facts(jupyter_server=False,
                                                                         hub_venv="/opt/jupyterhub"))]
        assert finding.fix == "/opt/jupyterhub/bin/pip install notebook (it brings jupyter_server and JupyterLab)"
        [generic] = tool_findings(parse_config(GOOD), facts(jupyter_server=False))
        assert generic.fix.startswith("VENV/bin/pip install notebook") and "PEP 668" in generic.fix
        assert "pip install jupyter_server" not in finding.fix + generic.fix

    def test_the_probe_does_not_run_a_shell_wrapper_as_python(self, tmp_path):
        import pwd

        from supervisor.jupyterhub.probe_programs import hub_venv, jupyter_server_state

        me = pwd.getpwuid(os.geteuid()).pw_name
        wrapper = tmp_path / "bin" / "jupyterhub"
        wrapper.parent.mkdir()
        wrapper.write_text(f"#!/bin/sh\nexec {tmp_path}/real/jupyterhub \"$@\"\n")
        wrapper.chmod(0o755)
        config = service(command=[str(wrapper)], user=me)
        assert jupyter_server_state(config) == (None, f"command[0] {wrapper} is not a Python script (it runs "
                                                      "'/bin/sh')")
        wrapper.write_bytes(b"\x7fELF\x02\x01")
        assert jupyter_server_state(config) == (None, f"command[0] {wrapper} is not a Python script (it has no "
                                                      "#! line)")
        assert hub_venv(config) is None
        (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
        assert hub_venv(config) == str(tmp_path)


class TestTrust:
    """Review defect 5: what a root hub runs as root, and the PATH it finds it on."""

    def test_each_untrusted_program_is_an_error_with_its_fix(self):
        untrusted = (("the proxy the hub starts (ConfigurableHTTPProxy.command[0])", "/home/n/chp",
                      "/home/n/chp is owned by nobody (uid 65534), not root; fix: chown root /home/n/chp"),
                     ("a directory on the service's PATH", "/tmp/bin",
                      "/tmp/bin is world-writable (mode 0777): others can put a program there under a name the hub "
                      "looks up; fix: chmod go-w /tmp/bin"))
        findings = [f for f in diagnose(service(), parse_config(GOOD), facts(untrusted=untrusted))
                    if f.code == "untrusted-program"]
        assert [(f.severity, f.message, f.fix) for f in findings] == [
            (ERROR, "the hub runs as root, so the proxy the hub starts (ConfigurableHTTPProxy.command[0]) /home/n/chp "
                    "runs as root too, but /home/n/chp is owned by nobody (uid 65534), not root",
             "chown root /home/n/chp"),
            (ERROR, "the hub runs as root and looks programs up on its PATH, but /tmp/bin is world-writable (mode "
                    "0777): others can put a program there under a name the hub looks up", "chmod go-w /tmp/bin")]

    def test_what_a_non_root_caller_cannot_look_at_is_not_checked(self):
        untrusted = (("command[0]", "/root/venv/bin/jupyterhub", "cannot check /root/venv: Permission denied"),)
        [finding] = trust_findings(facts(untrusted=untrusted, caller="nobody"))
        assert finding.severity == UNCHECKED

    def test_path_directories(self, tmp_path):
        from supervisor.jupyterhub.probe_files import path_directory_problem

        assert path_directory_problem("/usr/bin") is None
        assert path_directory_problem(str(tmp_path / "absent")) is None  # only its owner could create it
        assert path_directory_problem("bin").startswith("the PATH entry 'bin' is relative")
        assert path_directory_problem("").startswith("the PATH entry '' is relative")
        (tmp_path / "open").mkdir()
        (tmp_path / "open").chmod(0o1777)  # sticky protects names that exist, not the names the hub looks up
        assert path_directory_problem(str(tmp_path / "open")).endswith(f"fix: chmod go-w {tmp_path}/open")
