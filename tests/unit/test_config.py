"""Service definitions: every error names the file and the key, exit 6."""

import os

import pytest

from supervisor import config
from supervisor.errors import ConfigError, SvctlError
from supervisor.names import validate_name
from supervisor.unix.trustchain import check_chain

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
    # issue 10 item 9: every number finite and bounded, every string NUL-free, the user known
    ('command = ["/bin/true"]\nstart_seconds = nan', "start_seconds: nan is not a finite number"),
    ('command = ["/bin/true"]\nready_timeout = inf', "ready_timeout: inf is not a finite number"),
    ('command = ["/bin/true"]\nbackoff_max = 2073600.5', "backoff_max: 2073600.5 is too large"),
    ('command = ["/bin/true"]\ncheck_timeout = ' + "9" * 50, "check_timeout: " + "9" * 20),
    ('command = ["/bin/true"]\nstop = "TERM/99999999999"', "stop: 'TERM/99999999999': timeout"),
    ('command = ["/bin/true"]\nlog_max_bytes = 1099511627777', "log_max_bytes: 1099511627777 is too large"),
    ('command = ["/bin/true"]\nlog_backups = 1001', "log_backups: 1001 is too large"),
    ('command = ["/bin/true"]\ngive_up_after = 1000001', "give_up_after: 1000001 is too large"),
    ('command = ["/bin/t\\u0000rue"]', "command: '/bin/t\\x00rue' contains a NUL character"),
    ('command = ["/bin/true"]\ndescription = "a\\u0000"', "description: 'a\\x00' contains a NUL"),
    ('command = ["/bin/true"]\ndescription = "' + "d" * 4097 + '"', "description: 4097 characters"),
    ('command = ["/bin/true"]\npidfile = "/run/' + "p" * 4096 + '"', "pidfile: a path of 4101 characters"),
    ('command = ["/bin/true"]\nwatch = ["/etc/a\\u0000"]', "watch: '/etc/a\\x00' contains a NUL"),
    ('command = ["/bin/true"]\nenvironment = { "K\\u0000" = "v" }', "environment: 'K\\x00' contains a NUL"),
    ('command = ["/bin/true"]\nuser = "no-such-user-svctl"', "user: no such user 'no-such-user-svctl'"),
    ('command = ["/bin/true"]\nuser = ""', "user: must not be empty"),
    ('command = ["/bin/true"]\ncheck = ["jupyterhub"]', "check: 'jupyterhub' must be an absolute path"),
    ('command = ["/bin/true"]\nwatch = ' + "[" * 5000 + "]" * 5000, "not valid TOML: nested too deeply"),
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


def test_the_largest_values_are_accepted():
    """A control for the bounds above."""
    c = parse('command = ["/bin/true"]\nstart_seconds = 2073600\nlog_max_bytes = 1099511627776\n'
              'log_backups = 1000\ngive_up_after = 1000000\nstop = "TERM/2073600/KILL/2073600"')
    assert c.start_seconds == 2073600.0 and c.log_max_bytes == 2**40


def test_a_cached_record_skips_only_the_lookups(tmp_path):
    """state.json's copy of an accepted file: no user lookup, but the bounds hold all the same."""
    path = str(tmp_path / "hub.toml")
    assert config.from_mapping("hub", path, {"command": ["/bin/true"], "user": "gone"}, validated=True).user == "gone"
    with pytest.raises(ConfigError, match="start_seconds: nan"):
        config.from_mapping("hub", path, {"command": ["/bin/true"], "start_seconds": float("nan")}, validated=True)


@pytest.mark.parametrize("record", [5, "x", {"data": "x"}])
def test_a_wrong_shaped_cache_record_is_ignored(tmp_path, record):
    (tmp_path / "hub.toml").write_text('command = ["/bin/true"]\n')
    if isinstance(record, dict) and "data" in record:
        record = dict(record, path=str(tmp_path / "hub.toml"), signature=config.signature(str(tmp_path / "hub.toml")))
    assert config.load("hub", str(tmp_path), state={"config": record}).command == ("/bin/true",)


# ---- the trust chain (issue 10 item 2): supervisor/unix/trustchain.py ----------------------------

def test_a_private_file_is_trusted(tmp_path):
    (tmp_path / "a").write_text("x")
    assert check_chain(str(tmp_path / "a")) is None


def test_writable_files_and_directories_are_not(tmp_path):
    target = tmp_path / "d" / "a"
    target.parent.mkdir()
    target.write_text("x")
    os.chmod(target, 0o664)
    assert check_chain(str(target)) == f"{target} is group-writable (mode 0664); fix: chmod go-w {target}"
    os.chmod(target, 0o644)
    os.chmod(target.parent, 0o757)
    assert f"the directory {target.parent} is world-writable (mode 0757)" in check_chain(str(target))
    os.chmod(target.parent, 0o1777)  # sticky, but not root's own (unless we are root)
    assert (check_chain(str(target)) is None) == (os.geteuid() == 0)


def test_symlinks_are_followed_and_each_directory_on_the_way_is_checked(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "real").write_text("x")
    os.symlink("shared/real", tmp_path / "link")  # relative, resolved from the link's directory
    os.symlink(tmp_path / "link", tmp_path / "link2")
    assert check_chain(str(tmp_path / "link2")) is None
    os.chmod(shared, 0o777)
    assert f"the directory {shared} is world-writable" in check_chain(str(tmp_path / "link2"))


def test_dot_dot_after_a_symlink_is_the_kernels_parent(tmp_path):
    """abspath would fold link/.. lexically; the kernel goes to the parent of the link's target."""
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    (tmp_path / "open" / "inner").mkdir()
    (tmp_path / "open" / "a").write_text("x")
    (tmp_path / "a").write_text("x")
    os.symlink(tmp_path / "open" / "inner", tmp_path / "link")
    assert "world-writable" in check_chain(f"{tmp_path}/link/../a")  # open/a, not tmp_path/a


def test_missing_files_and_symlink_loops(tmp_path):
    assert check_chain(str(tmp_path / "absent" / "x")) is None  # nobody else can create it there
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    assert "too many levels of symbolic links" in check_chain(str(tmp_path / "loop"))
    os.mkfifo(tmp_path / "fifo")
    assert check_chain(str(tmp_path / "fifo")) == f"{tmp_path / 'fifo'} is not a regular file"


def test_the_chain_costs_a_few_stat_calls(tmp_path, monkeypatch):
    """`svctl status` pays this on every call: one lstat per component, nothing else."""
    calls = []
    real = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path: calls.append(path) or real(path))
    (tmp_path / "a").write_text("x")
    assert check_chain(str(tmp_path / "a")) is None
    assert len(calls) == len(str(tmp_path / "a").split("/"))
