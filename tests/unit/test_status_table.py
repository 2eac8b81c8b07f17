"""The pure parts of `svctl status` without NAME / `svctl list`: argument parsing, the health
verdict read from state.json, and the table's cells (issue 13 item 1). No processes."""

from __future__ import annotations

import pytest

from supervisor import cli
from supervisor.commands import status, status_all
from supervisor.errors import ConfigError, SvctlError


def test_status_takes_an_optional_name_and_list_takes_none():
    assert cli.parse_args("status", []).name is None
    assert cli.parse_args("status", ["--json"]).flag("--json")
    assert cli.parse_args("status", ["demo", "--lines", "3"]).value("--lines") == "3"
    assert cli.parse_args("list", ["--json"]).name is None
    with pytest.raises(SvctlError, match="unexpected argument 'demo'"):
        cli.parse_args("list", ["demo"])
    with pytest.raises(SvctlError, match="unexpected argument 'b'"):
        cli.parse_args("status", ["a", "b"])
    with pytest.raises(SvctlError, match="missing NAME"):
        cli.parse_args("start", [])


@pytest.mark.parametrize("health", [None, "passing", [], {}, {"state": "fine"}, {"state": ["passing"]}])
def test_a_missing_or_wrong_shaped_health_shows_nothing(health):
    assert status.health_of({} if health is None else {"health": health}) is None


def test_health_fields_are_checked_one_by_one():
    checked = status.health_of({"health": {"state": "failing", "failures": True, "last_failure": "a\nb\x1b",
                                           "last_failure_at": float("nan"), "restarts": -2}})
    assert checked == {"state": "failing", "failures": 0, "last_failure": "a b\\x1b", "last_failure_at": None,
                       "restarts": 0}


def test_the_health_line_says_how_often_and_what_failed_last():
    health = {"state": "failing", "failures": 3, "last_failure": "connection refused",
              "last_failure_at": 1000.0, "restarts": 2}
    assert status.health_line(health, 1065.0) == ("failing (3 failures in a row); last failure: connection "
                                                  "refused, 1 min ago; 2 restarts by the health check")
    assert status.health_line({**health, "state": "pending", "failures": 0, "last_failure": None,
                               "restarts": 0}, 0) == "pending"


def test_the_reason_of_an_unusable_file_drops_the_path_and_the_boilerplate():
    error = ConfigError("/etc/svctl/web.toml: refusing this service definition, root would run what it says: "
                        "/etc/svctl/web.toml is world-writable (mode 0666); fix: chmod go-w /etc/svctl/web.toml")
    row = status_all.unusable("web", error)
    assert row["state"] == "untrusted" and row["code"] == 6
    assert row["error"] == "/etc/svctl/web.toml is world-writable (mode 0666); fix: chmod go-w /etc/svctl/web.toml"
    invalid = status_all.unusable("web", ConfigError("/etc/svctl/web.toml: stop: not a schedule\nmore"))
    assert invalid["state"] == "invalid" and invalid["error"] == "stop: not a schedule"


def test_the_table_aligns_its_columns_and_fills_empty_cells():
    rows = [status_all.unusable("a-long-name", ConfigError("/x/a-long-name.toml: not valid TOML: oops")),
            {**status_all.unusable("b", ConfigError("x")), "state": "running", "error": None, "service_pid": 42,
             "uptime_seconds": 3700.0, "restarts": 5, "ready": True,
             "health": {"state": "failing", "failures": 2, "last_failure": "503", "last_failure_at": None,
                        "restarts": 0},
             "last_exit": "killed by SIGKILL", "last_exit_at": None}]
    lines = status_all.table(rows).splitlines()
    assert lines[0].split() == list(status_all.COLUMNS)
    assert [line.index(lines[0].split()[1]) for line in lines[:1]] == [lines[1].index("invalid")]
    assert lines[1].split()[1:6] == ["invalid", "-", "-", "-", "-"] and lines[1].endswith("not valid TOML: oops")
    assert lines[2].split()[:4] == ["b", "running", "42", "1"]  # (uptime "1 h")
    assert "ready, failing 2x" in lines[2] and lines[2].endswith("health: 503; exit: killed by SIGKILL")


def test_long_texts_are_cut():
    row = {**status_all.unusable("x", ConfigError("x")), "error": None, "gave_up_reason": "g" * 500,
           "state": "gave-up", "last_exit": "e" * 500, "last_exit_at": None}
    text = status_all.last(row, 0)
    assert len(text) <= 2 * status_all.PART_WIDTH + 2 and text.count("…") == 2
