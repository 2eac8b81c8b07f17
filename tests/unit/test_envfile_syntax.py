"""The environment file format (issue 13 item 4): what a shell and the parser agree on, nothing else."""

from __future__ import annotations

import pytest

from supervisor.core.envfile import EnvFileError, parse

GOOD = """\
# a comment
   # an indented comment

PLAIN=value
export EXPORTED=yes
export\tTABBED=1
SINGLE='it is $HOME `x` \\n "quoted"'
DOUBLE="a \\"b\\" \\\\ \\$HOME \\` c 'd'"
EQUALS=a=b=c
URL=https://example.org/x?y=1&amp
EMPTY=
EMPTY_SINGLE=''
EMPTY_DOUBLE=""
HASH=a#b
  INDENTED=ok@@
CRLF=dos\r
_under_score9=x
""".replace("@@", "  ")  # trailing blanks, kept out of the source text


def test_every_accepted_syntax():
    assert parse(GOOD.replace("&amp", "")) == {
        "PLAIN": "value", "EXPORTED": "yes", "TABBED": "1",
        "SINGLE": 'it is $HOME `x` \\n "quoted"',
        "DOUBLE": "a \"b\" \\ $HOME ` c 'd'",
        "EQUALS": "a=b=c", "URL": "https://example.org/x?y=1", "EMPTY": "", "EMPTY_SINGLE": "",
        "EMPTY_DOUBLE": "", "HASH": "a#b", "INDENTED": "ok", "CRLF": "dos", "_under_score9": "x",
    }


def test_the_last_assignment_wins():
    assert parse("A=1\nB=2\nA=3\n") == {"B": "2", "A": "3"}


def test_empty_file_and_no_final_newline():
    assert parse("") == {}
    assert parse("A=1") == {"A": "1"}


@pytest.mark.parametrize("line, reason", [
    ("A=$HOME", "'$'"),
    ("A=${HOME}", "'$'"),
    ("A=$(id)", "'$'"),
    ("A=`id`", "backtick"),
    ('A="$HOME"', "'$'"),
    ('A="$(id)"', "'$'"),
    ('A="`id`"', "backtick"),
    ("A='unbalanced", "unbalanced single quote"),
    ('A="unbalanced', "unbalanced double quote"),
    ('A="ends with backslash\\"', "unbalanced double quote"),
    ("A=two words", "a space"),
    ("A=tab\there", "a tab"),
    ("A='x' trailing", "after the closing quote"),
    ("A='x'y", "after the closing quote"),
    ('A="x"y', "after the closing quote"),
    ("A='x' # comment", "after the closing quote"),
    ("A=x'y'", "a quote inside"),
    ('A="\\n"', "backslash may only escape"),
    ('A="\\a"', "backslash may only escape"),
    ("A=back\\slash", "a backslash"),
    ("A=~/bin", "'~'"),
    ("A=x;id", "';'"),
    ("A=x|id", "'|'"),
    ("A=x&", "'&'"),
    ("A=x>y", "'>'"),
    ("A=(x)", "'('"),
    ("1A=x", "is not [A-Za-z_]"),
    ("A-B=x", "is not [A-Za-z_]"),
    ("A B=x", "is not [A-Za-z_]"),
    ("A =x", "is not [A-Za-z_]"),
    ("=x", "is not [A-Za-z_]"),
    ("exported=1 x", "a space"),
    ("export", "not a KEY=value"),
    ("just words", "not a KEY=value"),
    ("A=x\0y", "NUL"),
])
def test_each_bad_line_is_refused_naming_its_line(line, reason):
    with pytest.raises(EnvFileError) as caught:
        parse(f"# first\nOK=1\n\n{line}\nLATER=2\n")
    message = str(caught.value)
    assert message.startswith("line 4: "), message
    assert reason in message, message


def test_the_message_never_quotes_the_line():
    """A bad line may be a secret pasted without its KEY=: the reason goes to state.json."""
    with pytest.raises(EnvFileError) as caught:
        parse("hunter2-secret-token\n")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(EnvFileError) as caught:
        parse("PASSWORD=s3cr3t value\n")
    assert "s3cr3t" not in str(caught.value)


def test_export_needs_a_blank_after_it():
    assert parse("exported=1\n") == {"exported": "1"}
    assert parse("export_x=1\n") == {"export_x": "1"}
