"""Service definitions: every error names the file and the key, exit 6."""

import pytest

from supervisor import config
from supervisor.errors import ConfigError, SvctlError
from supervisor.names import validate_name

PATH = "/etc/svctl/hub.toml"


def parse(text: str):
    return config.parse("hub", PATH, text.encode())


def test_defaults_follow_the_seed():
    c = parse('command = ["/usr/local/bin/jupyterhub"]')
    assert c.pidfile == "/run/hub.pid" and c.stop_text == "TERM/30/KILL/5"
    assert c.reload == "restart" and c.restart == "on-failure" and c.log_file == "/var/log/hub.log"
    assert c.events_file == "/var/log/svctl/hub.json" and c.working_directory == "/"


def test_the_design_example_is_accepted():
    c = parse('''
description = "Multi-user server for Jupyter notebooks"
command = ["/usr/local/bin/jupyterhub", "--config=/etc/jupyterhub/jupyterhub_config.py"]
working_directory = "/srv/jupyterhub"
user = "root"
environment = { PATH = "/usr/local/bin:/usr/bin:/bin" }
pidfile = "/run/jupyterhub.pid"
stop = "TERM/30/KILL/5"
reload = "restart"
restart = "on-failure"
ready = "https://[::1]:9443/hub/health"
ready_timeout = 60
watch = ["/etc/jupyterhub/jupyterhub_config.py"]
check = ["/usr/local/bin/jupyterhub", "-f", "/etc/jupyterhub/jupyterhub_config.py", "--show-config"]
log_file = "/var/log/jupyterhub.log"
preset = "jupyterhub"
''')
    assert c.env == {"PATH": "/usr/local/bin:/usr/bin:/bin"} and c.ready == "https://[::1]:9443/hub/health"


@pytest.mark.parametrize("text, message", [
    ('command = ["/bin/true"]\nstop_timeout = 3', "hub.toml: stop_timeout: unknown key"),
    ('description = "x"', "command: missing"),
    ('command = []', "command: must not be empty"),
    ('command = ["true"]', "command: 'true' must be an absolute path"),
    ('command = ["/bin/true"]\nstop = "TERM/x"', "stop: 'TERM/x'"),
    ('command = ["/bin/true"]\nready_timeout = "60"', "ready_timeout: expected a number"),
    ('command = ["/bin/true"]\nrestart = "sometimes"', "restart: 'sometimes' is not one of"),
    ('command = ["/bin/true"]\nreload = "SIGHUP"', "reload: 'SIGHUP'"),
    ('command = ["/bin/true"]\nready = "tcp://::1:80"', "IPv6 literals go in brackets"),
    ('command = ["/bin/true"]\nwatch = ["relative.py"]', "watch: 'relative.py' must be an absolute path"),
    ('command = ["/bin/true"]\npreset = "nginx"', "preset: unknown preset"),
    ('command = ["/bin/true"]\nenvironment = { A = 1 }', "environment"),
    ('command = [/bin/true]', "not valid TOML"),
])
def test_invalid_definitions_name_file_and_key(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value) and str(info.value).startswith(PATH)
    assert info.value.code == 6
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["../etc/passwd", "a b", "x;rm", "", "-x", "a" * 65])
def test_names_that_could_inject_are_refused(name):
    with pytest.raises(SvctlError):
        validate_name(name)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such service definition"):
        config.load("absent", str(tmp_path))
