"""`svctl init jupyterhub`: files, permissions, idempotency, and configs that parse and pass the doctor."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest

from supervisor.config import load
from supervisor.jupyterhub import scaffold
from supervisor.jupyterhub.doctor import ERROR, WARNING, Facts, HostFacts, diagnose
from supervisor.jupyterhub.pyconfig import parse_config, read_config

pytest.importorskip("cryptography", reason="the certificate tests need the cryptography package")


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Stand-ins for jupyterhub and configurable-http-proxy: init only checks they are executable
    files (the floor venv has no JupyterHub, and these tests start no hub)."""
    bin_dir = tmp_path_factory.mktemp("programs")
    for name in ("jupyterhub", "configurable-http-proxy"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_init(prefix, programs, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                           "--ip", "::1", "--jupyterhub", str(programs / "jupyterhub"),
                           "--proxy-command", str(programs / "configurable-http-proxy"), *extra],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory, programs):
    root = tmp_path_factory.mktemp("init")
    result = run_init(root, programs, "--auth", "dummy", "--users", "alice,bob", "--port", "19290")
    assert result.returncode == 0, result.stderr
    return root


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class TestInit:
    def test_reports_each_file_written(self, prefix, programs):
        """A second run keeps every file and says so, and prints where the password is."""
        result = run_init(prefix, programs, "--auth", "dummy", "--users", "alice,bob")
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

    def test_force_overwrites(self, prefix, programs):
        secret = (prefix / "srv/jupyterhub/jupyterhub_cookie_secret").read_text()
        result = run_init(prefix, programs, "--auth", "dummy", "--force")
        assert result.returncode == 0 and "kept" not in result.stdout
        assert (prefix / "srv/jupyterhub/jupyterhub_cookie_secret").read_text() != secret

    def test_service_file_loads_with_the_seed_defaults(self, prefix):
        config = load("jupyterhub", str(prefix / "etc/svctl"))
        assert config.stop_text == "TERM/30/KILL/5" and config.reload == "restart"
        assert config.pidfile == str(prefix / "run/jupyterhub.pid")
        assert config.log_file == str(prefix / "var/log/jupyterhub.log")
        assert config.working_directory == str(prefix / "srv/jupyterhub")
        assert config.ready.endswith("/hub/health") and config.ready.startswith("https://[::1]:")
        assert config.health == config.ready and config.requires == ()  # liveness; the hub starts its own proxy
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

    def test_bad_ip_is_exit_2(self, tmp_path, programs):
        result = run_init(tmp_path, programs, "--ip", "::")
        assert result.returncode == 2 and "wildcard" in result.stderr
        assert not (tmp_path / "etc").exists()

    def test_default_ip_prefers_global_over_unique_local(self):
        assert scaffold.default_ip(["::1", "fe80::1", "fd00::2", "2a00:1450::1"]) == "2a00:1450::1"
        assert scaffold.default_ip(["::1", "fe80::1", "fd00::2"]) == "fd00::2"
        assert scaffold.default_ip(["::1", "fe80::1"]) == "::1"

    def test_hub_path_puts_programs_first_once(self):
        path = scaffold.hub_path("/venv/bin/jupyterhub", "/npm/bin/configurable-http-proxy").split(":")
        assert path[:2] == ["/venv/bin", "/npm/bin"] and len(path) == len(set(path))


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYOUT = scaffold.Layout.under("/srv/p", "/etc/svctl")


def options(auth="pam", proxy_mode="hub", admins=("alice",)):
    return scaffold.InitOptions(ip="::1", jupyterhub="/opt/jupyterhub/bin/jupyterhub", path_env="/usr/bin",
                                proxy="/opt/jupyterhub/node_modules/.bin/configurable-http-proxy",
                                users=("alice",), admins=admins, auth=auth, proxy_mode=proxy_mode,
                                proxy_token="t" * 64)


class TestRenderedConfig:
    """Issue 11 items 3 and 12: user servers survive hub restarts; kernels use IPC, not 127.0.0.1."""

    @pytest.mark.parametrize("auth", scaffold.AUTH_MODES)
    @pytest.mark.parametrize("proxy_mode", scaffold.PROXY_MODES)
    def test_every_mode_compiles_keeps_servers_and_runs_kernels_over_ipc(self, auth, proxy_mode):
        text = scaffold.render_config(LAYOUT, options(auth, proxy_mode))
        compile(text, "jupyterhub_config.py", "exec")
        hub = parse_config(text)
        assert hub.get("JupyterHub.cleanup_servers") is False
        assert hub.get("Spawner.args") == ["--KernelManager.transport=ipc"]
        assert hub.has("Spawner.pre_spawn_hook") and "def kernel_runtime_dir(spawner):" in text
        assert 'spawner.environment = {**spawner.environment, "JUPYTER_RUNTIME_DIR": path}' in text
        assert "KERNEL_RUNTIME_ROOT = '/srv/p/run/jupyterhub/kernels'" in text
        # One assignment of Spawner.args: the dummy mode's allow_root is appended, never a second `=`.
        assert text.count("c.Spawner.args =") == 1
        assert ('c.Spawner.args.append("--ServerApp.allow_root=True")' in text) == (auth == "dummy")
        # The comments the doctor's readers see say why, and how to stop user servers.
        assert "re-adopts them" in text and "DELETE /hub/api/users/NAME/server" in text

    def test_dummy_mode_as_root_gets_both_server_arguments(self, tmp_path):
        """Executed as JupyterHub does (traitlets' Config): allow_root joins the IPC transport."""
        config_module = pytest.importorskip("traitlets.config")
        layout = scaffold.Layout.under(str(tmp_path), "/etc/svctl")
        (tmp_path / "srv/jupyterhub").mkdir(parents=True)
        (tmp_path / "srv/jupyterhub/login-password").write_text("secret\n")
        config = config_module.Config()
        text = scaffold.render_config(layout, options("dummy", admins=()))
        namespace = {"get_config": lambda: config, "__file__": "jupyterhub_config.py"}
        exec(compile(text, "jupyterhub_config.py", "exec"), namespace)  # noqa: S102 (our own rendering)
        expected = ["--KernelManager.transport=ipc"] + (["--ServerApp.allow_root=True"] if os.geteuid() == 0 else [])
        assert config.Spawner.args == expected
        assert config.JupyterHub.cleanup_servers is False
        assert config.Spawner.pre_spawn_hook is namespace["kernel_runtime_dir"]

    def test_runtime_root_is_short_without_prefix(self):
        root = scaffold.Layout.under("", "/etc/svctl").kernel_runtime_root
        assert root == "/run/jupyterhub/kernels"
        # RUNTIME_DIR/kernel-<36>-ipc-<n> must fit a Unix socket path (107 bytes) for any uid.
        assert len(f"{root}/4294967294/kernel-{'x' * 36}-ipc-99") <= 107

    def test_service_file_says_the_hub_leaves_servers_running(self):
        service = scaffold.render_service(LAYOUT, options())
        assert "cleanup_servers = False" in service and 'stop = "TERM/30/KILL/5"' in service
        stopping = replace(options("dummy"), stop_user_servers=True)  # make run's --stop-user-servers
        assert "cleanup_servers = True" in scaffold.render_service(LAYOUT, stopping)
        assert parse_config(scaffold.render_config(LAYOUT, stopping)).get("JupyterHub.cleanup_servers") is True

    def test_hub_path_has_the_programs_and_node(self):
        path = scaffold.hub_path("/opt/jupyterhub/bin/jupyterhub", "/opt/jupyterhub/node_modules/.bin/chp",
                                 "/opt/node/bin/node").split(":")
        assert path[:3] == ["/opt/jupyterhub/bin", "/opt/jupyterhub/node_modules/.bin", "/opt/node/bin"]


# svctl as it runs from a Python with no jupyterhub beside it (sys.executable is where init looks).
NO_VENV = ("import sys; sys.executable = '/nonexistent/python'; from supervisor.cli import main; "
           "sys.exit(main(sys.argv[1:]))")
SYSTEM_PATH = "/usr/bin:/bin"


class TestNotInstalled:
    """Issue 11 item 1: no JupyterHub is exit 5 with the commands that install it, and nothing written."""

    def test_nothing_found_is_exit_5_with_install_commands_and_nothing_written(self, tmp_path):
        from supervisor.jupyterhub import locate

        if locate.find_jupyterhub(path=SYSTEM_PATH, executable="/nonexistent/python"):
            pytest.skip("a jupyterhub is installed on the system PATH or in /opt/jupyterhub")
        need_proxy = locate.find_proxy((str(tmp_path), REPO), path=SYSTEM_PATH) is None
        prefix = tmp_path / "root"
        result = subprocess.run([sys.executable, "-c", NO_VENV, "init", "jupyterhub", "--prefix", str(prefix),
                                 "--ip", "::1"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                env={"PATH": SYSTEM_PATH, "PYTHONPATH": REPO})
        assert result.returncode == 5, result.stderr
        assert not prefix.exists() and result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines[0].startswith("svctl: init jupyterhub: jupyterhub not found (looked on PATH and in "
                                   "/nonexistent, /opt/jupyterhub/bin")
        assert lines[0].endswith("nothing was written")
        commands = locate.install_commands(locate.os_release(), need_hub=True, need_proxy=need_proxy)
        assert lines[1:] == ["install it (as root):", *(f"  {command}" for command in commands),
                             "or give --jupyterhub PATH"]
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize("bad", ["missing", "not-executable", "directory"])
    def test_explicit_program_must_be_an_executable_file(self, tmp_path, programs, bad):
        target = tmp_path / bad
        if bad == "not-executable":
            target.write_text("#!/bin/sh\n")
        elif bad == "directory":
            target.mkdir()
        prefix = tmp_path / "root"
        result = subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                                 "--ip", "::1", "--jupyterhub", str(target),
                                 "--proxy-command", str(programs / "configurable-http-proxy")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 5
        assert result.stderr.splitlines() == [f"svctl: init jupyterhub: --jupyterhub {target}: not an executable "
                                              "file; nothing was written"]
        assert not prefix.exists()

    def test_service_file_names_the_given_programs(self, prefix, programs):
        config = load("jupyterhub", str(prefix / "etc/svctl"))
        assert config.command[0] == str(programs / "jupyterhub")
        assert config.env["PATH"].split(":")[0] == str(programs)
        hub = read_config(str(prefix / "etc/jupyterhub/jupyterhub_config.py"))
        assert hub.get("ConfigurableHTTPProxy.command") == [str(programs / "configurable-http-proxy")]


class TestProxyToken:
    """The shared secret of hub and proxy survives --force: a running proxy keeps the token it started
    with, and a hub restarted with a new one would get 403 from it (red-team finding, item 3)."""

    def test_force_keeps_a_valid_token(self, tmp_path):
        layout = scaffold.Layout.under(str(tmp_path), "/etc/svctl")
        (tmp_path / "srv/jupyterhub").mkdir(parents=True)
        token = "a" * 64
        (tmp_path / "srv/jupyterhub/proxy-auth-token").write_text(token + "\n")
        assert scaffold.shared_token(layout, force=True) == token
        assert scaffold.shared_token(layout, force=False) == token

    def test_force_replaces_what_is_no_token(self, tmp_path):
        layout = scaffold.Layout.under(str(tmp_path), "/etc/svctl")
        (tmp_path / "srv/jupyterhub").mkdir(parents=True)
        (tmp_path / "srv/jupyterhub/proxy-auth-token").write_text("not a token\n")
        new = scaffold.shared_token(layout, force=True)
        assert scaffold.TOKEN_PATTERN.fullmatch(new) and len(new) == 64
        assert scaffold.shared_token(layout, force=False) == "not a token"  # kept files must agree
