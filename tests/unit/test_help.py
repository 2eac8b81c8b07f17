"""`svctl --help`, `svctl VERB --help` and the man page say the same things (issue 11 item 10)."""

from __future__ import annotations

import re
from pathlib import Path

from supervisor import cli

MAN = (Path(__file__).resolve().parents[2] / "packaging" / "svctl.8").read_text()
MAN_TEXT = MAN.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")


def test_every_verb_has_a_summary_line_in_help(capsys):
    assert set(cli.SUMMARY) == set(cli.VERBS)
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in cli.VERBS:
        assert re.search(rf"^  {re.escape(verb)} +\S", out, re.M), verb


def test_every_verb_and_option_is_in_the_man_page():
    missing = [verb for verb in cli.VERBS if not re.search(rf"(^|[\s,]){re.escape(verb)}\b", MAN_TEXT, re.M)]
    for verb, (_, _, _, options) in cli.VERBS.items():
        # a whole word: "-n" must not pass because "--no-boot" contains it
        missing += [f"{verb} {option}" for option in options
                    if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", MAN_TEXT)]
    assert missing == [], f"svctl --help knows these, the man page does not: {missing}"


def test_every_verb_answers_help_with_exit_0(capsys):
    for verb in cli.VERBS:
        assert cli.main([verb, "--help"]) == 0, verb
        assert capsys.readouterr().out.startswith("Usage: svctl")


def test_every_option_is_in_its_verbs_usage_line():
    for verb, (_, _, _, options) in cli.VERBS.items():
        missing = [option for option in options
                   if not re.search(rf"[\[|]{re.escape(option)}[\] |]", cli.usage(verb))]
        assert missing == [], f"{verb}: the usage line lacks {missing}"


def test_init_help_explains_every_option(capsys):
    """Each init option gets its own line in `svctl init --help` (they change what is written)."""
    assert cli.main(["init", "--help"]) == 0
    out = capsys.readouterr().out
    for option in cli.INIT_OPTIONS:
        assert re.search(rf"^  {re.escape(option)}\b", out, re.M), option


def test_init_options_are_items_of_the_init_section_of_the_man_page():
    """Not just mentioned somewhere: a .TP entry of its own under `init jupyterhub`."""
    section = MAN.split(".B init jupyterhub\n", 1)[1].split(".RE\n", 1)[0]
    entries = re.findall(r"^\.TP\n\.B[IR]? (\S+)", section, re.M)
    listed = {entry.replace("\\-", "-") for entry in entries}
    listed |= {option.replace("\\-", "-") for option in re.findall(r"^\.BI (\\-\\-[a-z\\-]+) ", section, re.M)}
    assert set(cli.INIT_OPTIONS) <= listed, f"missing from the man page's init section: {set(cli.INIT_OPTIONS) - listed}"
