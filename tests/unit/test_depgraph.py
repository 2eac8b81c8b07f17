"""supervisor/depgraph.py: cycles, start and stop orders, loading the closures from a config dir."""

from __future__ import annotations

import os

import pytest

from supervisor import config as configuration
from supervisor import depgraph
from supervisor.errors import ConfigError, Exit


def test_find_cycle_names_the_cycle_in_order():
    assert depgraph.find_cycle({"a": ("b",), "b": ("c",), "c": ("a",)}) == ["a", "b", "c", "a"]
    assert depgraph.find_cycle({"a": ("b", "c"), "b": ("c",), "c": ()}) is None
    assert depgraph.find_cycle({"x": ("y",), "y": ("y2",), "y2": ("y",)}) == ["y", "y2", "y"]
    assert depgraph.find_cycle({}) is None


def test_post_order_puts_requirements_first_and_the_root_last():
    edges = {"hub": ("proxy", "db"), "proxy": ("db",), "db": ()}
    assert depgraph.post_order("hub", edges) == ["db", "proxy", "hub"]


def test_reversed_post_order_is_a_stop_order_dependents_first():
    requires = {"b": ("a",), "c": ("a",), "d": ("b", "c")}
    order = depgraph.post_order("a", depgraph.reverse(requires))
    assert order[-1] == "a" and order[0] == "d"
    assert set(order) == {"a", "b", "c", "d"}


def test_cycle_text():
    assert depgraph.cycle_text(["a", "b", "a"]) == "a -> b -> a"


def write(directory, name, requires=None, extra=""):
    lines = ['command = ["/bin/true"]']
    if requires is not None:
        lines.append("requires = [" + ", ".join(f'"{r}"' for r in requires) + "]")
    (directory / f"{name}.toml").write_text("\n".join(lines) + "\n" + extra)


def loader(name, directory):
    """config.parse without the trust checks of config.load (the tmp dir is not root-only)."""
    path = configuration.service_path(name, directory)
    with open(path, "rb") as handle:
        return configuration.parse(name, path, handle.read())


def test_requirements_load_the_closure_in_start_order(tmp_path):
    write(tmp_path, "hub", ["proxy", "db"])
    write(tmp_path, "proxy", ["db"])
    write(tmp_path, "db")
    write(tmp_path, "unrelated", ["nosuch"])  # never read for hub
    order = depgraph.requirements("hub", str(tmp_path), load=loader)
    assert [config.name for config in order] == ["db", "proxy", "hub"]


def test_an_unknown_requirement_is_a_config_error_naming_the_file(tmp_path):
    write(tmp_path, "hub", ["proxy"])
    write(tmp_path, "proxy", ["nosuch"])
    with pytest.raises(ConfigError) as caught:
        depgraph.requirements("hub", str(tmp_path), load=loader)
    assert caught.value.code == Exit.NOT_CONFIGURED
    assert str(caught.value).startswith(f"{tmp_path / 'proxy.toml'}: requires: unknown service 'nosuch'")


def test_a_cycle_is_a_config_error_naming_file_and_cycle(tmp_path):
    write(tmp_path, "a", ["b"])
    write(tmp_path, "b", ["c"])
    write(tmp_path, "c", ["a"])
    with pytest.raises(ConfigError) as caught:
        depgraph.requirements("b", str(tmp_path), load=loader)
    assert str(caught.value) == f"{tmp_path / 'a.toml'}: requires: a dependency cycle: a -> b -> c -> a"


def test_dependents_in_stop_order(tmp_path):
    write(tmp_path, "db")
    write(tmp_path, "proxy", ["db"])
    write(tmp_path, "hub", ["proxy"])
    write(tmp_path, "other", [], extra='description = "db mentioned, requires nothing"\n')
    found = depgraph.dependents("db", str(tmp_path), load=loader)
    assert [config.name for config in found] == ["hub", "proxy"]
    assert [config.name for config in depgraph.dependents("hub", str(tmp_path), load=loader)] == []


def test_dependents_scan_parses_only_files_mentioning_requires_and_the_name(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", ["a"])
    write(tmp_path, "c")
    (tmp_path / "broken.toml").write_text("this is [ not toml\n")  # no `requires`: never parsed
    os.mkfifo(tmp_path / "fifo.toml")  # never opened for reading in a way that could hang
    assert depgraph.mentions_requires(str(tmp_path), "a") == ["b"]
    assert depgraph.mentions_requires(str(tmp_path), "c") == []
    assert depgraph.mentions_requires(str(tmp_path / "missing"), "a") == []


def test_a_broken_candidate_is_a_warning_not_a_failure(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", ["a"])
    (tmp_path / "c.toml").write_text('requires = ["a"]\n')  # no command: does not load
    warnings = []
    found = depgraph.dependents("a", str(tmp_path), load=loader, warn=warnings.append)
    assert [config.name for config in found] == ["b"]
    assert len(warnings) == 1 and warnings[0].startswith("cannot tell whether c requires a:")


def test_a_cycle_among_dependents_is_a_config_error(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", ["a", "c"])
    write(tmp_path, "c", ["b"])
    with pytest.raises(ConfigError, match="a dependency cycle: b -> c -> b"):
        depgraph.dependents("a", str(tmp_path), load=loader)


def test_direct_requirement():
    config = configuration.from_mapping("hub", "/x/hub.toml", {"command": ["/bin/true"], "requires": ["x", "proxy"]})
    assert depgraph.direct_requirement(config, {"proxy", "db"}) == "proxy"


def test_a_cycle_through_the_service_itself_is_found(tmp_path):
    """Follow-up item 4: a -> b -> c -> a, seen from c (NAME's own requires given)."""
    write(tmp_path, "a", ["c"])
    write(tmp_path, "b", ["a"])
    write(tmp_path, "c", ["b"])
    with pytest.raises(ConfigError, match=r"a\.toml: requires: a dependency cycle: a -> c -> b -> a"):
        depgraph.dependents("c", str(tmp_path), load=loader, requires=("b",))
    said = []  # a stop: a warning, and the dependents found all the same
    found = depgraph.dependents("c", str(tmp_path), load=loader, requires=("b",), on_cycle=said.append)
    assert [config.name for config in found] == ["b", "a"]
    assert len(said) == 1 and "a -> c -> b -> a" in said[0]


def test_a_symlinked_service_file_is_scanned(tmp_path):
    """Follow-up item 5: etc/b.toml -> ../real/b.toml is read (the load judges its trust)."""
    etc, real = tmp_path / "etc", tmp_path / "real"
    etc.mkdir()
    real.mkdir()
    write(etc, "a")
    write(real, "b", ["a"])
    (etc / "b.toml").symlink_to("../real/b.toml")
    os.mkfifo(real / "fifo")
    (etc / "c.toml").symlink_to("../real/fifo")  # a link to a FIFO: skipped, never hangs
    assert depgraph.mentions_requires(str(etc), "a") == ["b"]


# ---- red team of the issue-13 review fixes ------------------------------------------------------


@pytest.mark.parametrize("text", ['"requ\\u0069res" = ["a"]\n', 'requires = ["\\u0061"]\n',
                                  'requires = ["\\U00000061"]\n'])
def test_an_escape_spelled_requirement_is_found(tmp_path, text):
    """F7: the key or the name spelled with TOML escapes: the file is parsed, the dependent found."""
    write(tmp_path, "a")
    (tmp_path / "b.toml").write_text('command = ["/bin/true"]\n' + text)
    write(tmp_path, "c", ["x"])  # no escape, no "a": still not parsed
    assert depgraph.mentions_requires(str(tmp_path), "a") == ["b"]
    assert [config.name for config in depgraph.dependents("a", str(tmp_path), load=loader)] == ["b"]


def test_a_broken_candidate_is_given_to_the_fallback(tmp_path):
    """F2: a broken dependent's file: FALLBACK's definition is used (also for a transitive one);
    None skips it with the warning; what FALLBACK raises propagates (restart's refusal)."""
    write(tmp_path, "a")
    (tmp_path / "b.toml").write_text('requires = ["a"]\ngarbage = [\n')
    write(tmp_path, "c", ["b"])
    recorded = configuration.from_mapping("b", "/x/b.toml", {"command": ["/bin/true"], "requires": ["a"]})
    asked = []

    def fallback(name, error):
        asked.append(name)
        return recorded if name == "b" else None

    warnings = []
    found = depgraph.dependents("a", str(tmp_path), load=loader, warn=warnings.append, fallback=fallback)
    assert [config.name for config in found] == ["c", "b"] and asked == ["b"] and warnings == []
    found = depgraph.dependents("a", str(tmp_path), load=loader, warn=warnings.append, fallback=lambda *_: None)
    assert found == [] and warnings[0].startswith("cannot tell whether b requires a:")

    def refuse(name, error):
        raise ConfigError(f"refused {name}")

    with pytest.raises(ConfigError, match="refused b"):
        depgraph.dependents("a", str(tmp_path), load=loader, fallback=refuse)
