"""Finding JupyterHub and its proxy where servers have them, and the install commands (issue 11 item 1)."""

from __future__ import annotations

import os

import pytest

from supervisor.jupyterhub import locate

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
DEBIAN_13 = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nID=debian\n'
UBUNTU_2404 = ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n'
               "ID_LIKE=debian\n")
FEDORA = 'NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora Linux 40 (Workstation Edition)"\n'
EVERYTHING = [
    "apt-get install python3-venv nodejs npm",
    "python3 -m venv /opt/jupyterhub",
    "/opt/jupyterhub/bin/pip install jupyterhub notebook",
    "npm install --prefix /opt/jupyterhub configurable-http-proxy",
]


class TestInstallCommands:
    @pytest.mark.parametrize("text", [DEBIAN_12, DEBIAN_13, UBUNTU_2404], ids=["debian12", "debian13", "ubuntu2404"])
    def test_known_systems_get_the_venv_recipe(self, text):
        assert locate.install_commands(text) == EVERYTHING

    @pytest.mark.parametrize("text", [FEDORA, "", "garbage\n=\nID='unterminated\n"])
    def test_other_systems_get_the_same_with_a_note(self, text):
        commands = locate.install_commands(text)
        assert commands[1:] == EVERYTHING
        assert commands[0].startswith("# these are for Debian 12/13 and Ubuntu 24.04; this is ")
        if text == FEDORA:
            assert "Fedora Linux 40 (Workstation Edition)" in commands[0]

    def test_only_what_is_missing(self):
        assert locate.install_commands(DEBIAN_12, need_hub=False) == [
            "apt-get install nodejs npm", "npm install --prefix /opt/jupyterhub configurable-http-proxy"]
        assert locate.install_commands(DEBIAN_12, need_proxy=False) == [
            "apt-get install python3-venv", "python3 -m venv /opt/jupyterhub",
            "/opt/jupyterhub/bin/pip install jupyterhub notebook"]

    @pytest.mark.parametrize("text", [DEBIAN_12, FEDORA, ""])
    def test_never_a_bare_pip_install(self, text):
        """PEP 668: pip outside a venv is refused on these systems, so only the venv's pip appears."""
        programs = [command.split()[0] for command in locate.install_commands(text) if not command.startswith("#")]
        assert [name for name in programs if "pip" in name] == ["/opt/jupyterhub/bin/pip"]


def program(path, executable=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755 if executable else 0o644)
    return str(path)


class TestFinding:
    def test_path_comes_first_then_beside_the_interpreter(self, tmp_path):
        on_path = program(tmp_path / "path/jupyterhub")
        beside = program(tmp_path / "venv/bin/jupyterhub")
        python = str(tmp_path / "venv/bin/python")
        assert locate.find_jupyterhub(path=str(tmp_path / "path"), executable=python) == on_path
        assert locate.find_jupyterhub(path=str(tmp_path / "empty"), executable=python) == beside

    def test_interpreter_directory_is_not_resolved(self, tmp_path):
        """A venv's python is a symlink to /usr/bin/python3: the venv's bin counts, not /usr/bin."""
        beside = program(tmp_path / "venv/bin/jupyterhub")
        (tmp_path / "venv/bin/python").symlink_to("/usr/bin/python3")
        assert locate.find_jupyterhub(path="", executable=str(tmp_path / "venv/bin/python")) == beside

    def test_not_executable_is_not_found(self, tmp_path):
        program(tmp_path / "venv/bin/jupyterhub", executable=False)
        if os.path.exists(f"{locate.OPT}/bin/jupyterhub"):
            pytest.skip("/opt/jupyterhub/bin/jupyterhub exists here")
        assert locate.find_jupyterhub(path="", executable=str(tmp_path / "venv/bin/python")) is None

    def test_proxy_beside_jupyterhub_or_in_an_npm_prefix(self, tmp_path):
        if os.path.exists(f"{locate.OPT}/node_modules/.bin/{locate.PROXY}"):
            pytest.skip("/opt/jupyterhub has a configurable-http-proxy here")
        hub = program(tmp_path / "venv/bin/jupyterhub")
        beside = program(tmp_path / "venv/bin/configurable-http-proxy")
        assert locate.find_proxy((), hub, path="") == beside
        os.unlink(beside)
        in_venv = program(tmp_path / "venv/node_modules/.bin/configurable-http-proxy")  # npm install --prefix VENV
        assert locate.find_proxy((str(tmp_path / "repo"),), hub, path="") == in_venv
        os.unlink(in_venv)
        in_prefix = program(tmp_path / "repo/.npm-prefix/node_modules/.bin/configurable-http-proxy")
        assert locate.find_proxy((str(tmp_path / "repo"),), hub, path="") == in_prefix

    def test_npm_bin_symlink_counts(self, tmp_path):
        real = program(tmp_path / "node_modules/configurable-http-proxy/bin/configurable-http-proxy")
        link = tmp_path / "node_modules/.bin/configurable-http-proxy"
        link.parent.mkdir()
        link.symlink_to(real)
        assert locate.is_program(str(link))

    def test_explicit_paths_are_checked(self, tmp_path):
        hub, chp = program(tmp_path / "a/jupyterhub"), program(tmp_path / "b/chp")
        found = locate.locate(hub, chp, (), path="")
        assert (found.jupyterhub, found.proxy) == (hub, chp)
        with pytest.raises(locate.NotFound, match=r"^--proxy-command .*/b: not an executable file$"):
            locate.locate(hub, str(tmp_path / "b"), (), path="")
        with pytest.raises(locate.NotFound, match=r"^--jupyterhub .*nothing: not an executable file$"):
            locate.locate(str(tmp_path / "nothing"), chp, (), path="")

    def test_nothing_found_names_every_place(self, tmp_path):
        if os.path.exists(f"{locate.OPT}/bin/jupyterhub"):
            pytest.skip("/opt/jupyterhub/bin/jupyterhub exists here")
        with pytest.raises(locate.NotFound) as raised:
            locate.locate(None, None, (str(tmp_path),), path="", executable=str(tmp_path / "bin/python"))
        message = str(raised.value)
        assert message.startswith(f"jupyterhub not found (looked on PATH and in {tmp_path}/bin, /opt/jupyterhub/bin)")
        assert raised.value.need_hub
        if raised.value.need_proxy:
            assert f"{tmp_path}/.npm-prefix/node_modules/.bin" in message
            assert "/opt/jupyterhub/node_modules/.bin" in message

    def test_node_beside_the_proxy_when_not_on_path(self, tmp_path):
        real = program(tmp_path / "nodeenv/lib/node_modules/configurable-http-proxy/bin/chp")
        node = program(tmp_path / "nodeenv/lib/node_modules/configurable-http-proxy/bin/node")
        assert locate.find_node(None, real, path="") == node


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to nobody")


class TestTrusted:
    """For a hub that runs as root, what init picks must pass the root-service rule (docs/security.md X2)."""

    @needs_root
    def test_a_candidate_nobody_owns_is_skipped_with_the_reason(self, tmp_path):
        planted = program(tmp_path / "nobody/configurable-http-proxy")
        os.chown(tmp_path / "nobody", 65534, 65534)
        kept = program(tmp_path / "venv/bin/configurable-http-proxy")
        hub = program(tmp_path / "venv/bin/jupyterhub")
        skipped: list[str] = []
        path = str(tmp_path / "nobody")
        assert locate.find_proxy((), hub, path=path, trusted=True, skipped=skipped) == kept
        assert skipped == [f"{planted}: the directory {tmp_path}/nobody is owned by nobody (uid 65534), not root, "
                           f"who can replace anything in it; fix: chown root {tmp_path}/nobody"]
        assert locate.find_proxy((), hub, path=path) == planted  # a non-root hub runs as its caller: no rule

    def test_a_group_writable_program_is_refused(self, tmp_path):
        hub = program(tmp_path / "bin/jupyterhub")
        os.chmod(hub, 0o775)
        assert locate.program_problem(hub) == f"{hub} is group-writable (mode 0775); fix: chmod go-w {hub}"
        with pytest.raises(locate.Untrusted, match=r"^--jupyterhub .*: refusing to run it as root: .*group-writable"):
            locate.locate(hub, program(tmp_path / "bin/chp"), (), path="", trusted=True)

    def test_interpreters_are_judged_too(self, tmp_path):
        python = program(tmp_path / "py/python3")
        os.chmod(tmp_path / "py", 0o777)
        hub = program(tmp_path / "venv/bin/jupyterhub")
        (tmp_path / "venv/bin/jupyterhub").write_text(f"#!{python}\nimport jupyterhub\n")
        assert locate.program_problem(hub).startswith(f"it runs {python}, and the directory {tmp_path}/py is "
                                                      "world-writable (mode 0777)")
        # pip's launcher when the interpreter's path is too long for #!
        (tmp_path / "venv/bin/jupyterhub").write_text(f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n")
        assert locate.program_problem(hub).startswith(f"it runs {python}, and")

    def test_env_runs_the_program_the_service_path_finds(self, tmp_path):
        proxy = program(tmp_path / "npm/configurable-http-proxy")
        (tmp_path / "npm/configurable-http-proxy").write_text("#!/usr/bin/env node\n")
        node = program(tmp_path / "node/node")
        os.chmod(node, 0o777)
        assert locate.program_problem(proxy) is None  # /usr/bin/env itself is root's
        assert locate.program_problem(proxy, str(tmp_path / "node")) == (
            f"it runs {node}, and {node} is world-writable (mode 0777); fix: chmod go-w {node}")

    def test_an_untrusted_directory_is_left_off_the_service_path(self, tmp_path):
        hub = program(tmp_path / "venv/bin/jupyterhub")
        proxy = program(tmp_path / "shared/configurable-http-proxy")
        os.chmod(tmp_path / "shared", 0o777)
        skipped: list[str] = []
        path = locate.hub_path(hub, proxy, None, trusted=True, skipped=skipped).split(":")
        assert path[0] == str(tmp_path / "venv/bin") and str(tmp_path / "shared") not in path
        assert skipped[0].startswith(f"{tmp_path}/shared (left off the service's PATH): the directory")
        assert locate.hub_path(hub, proxy).split(":")[:2] == [str(tmp_path / "venv/bin"), str(tmp_path / "shared")]

    def test_relative_path_entries_are_never_searched(self, tmp_path, monkeypatch):
        """"" and "." in PATH mean the current directory: whoever runs init from /tmp gets /tmp's programs."""
        program(tmp_path / "jupyterhub")
        monkeypatch.chdir(tmp_path)
        assert locate.find_jupyterhub(path=":.:bin", executable="/nonexistent/python") in (
            None, f"{locate.OPT}/bin/jupyterhub")
