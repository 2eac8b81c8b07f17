"""The environment file format (``environment_file = "/etc/default/NAME"``), parsed without a shell.

The file is what /etc/default files are: shell assignments that init.d scripts source. The
supervisor never runs a shell on it, so it accepts only the lines whose meaning a shell and this
parser agree on, and refuses the rest rather than guess:

* ``KEY=value`` lines; blank lines and lines starting with ``#`` are skipped; leading and trailing
  blanks (spaces, tabs) and a trailing ``\\r`` are ignored; an optional leading ``export``.
* KEY is ``[A-Za-z_][A-Za-z0-9_]*``, written right before the ``=`` (``KEY = v`` is a command to a
  shell, not an assignment).
* value: empty; unquoted (no blanks, quotes, backslashes, ``$``, backticks, ``~`` or the shell's
  ``;&|<>()``: each would mean something to a shell); ``'single-quoted'`` (literal, like the
  shell); or ``"double-quoted"``, where ``$`` and backticks must be escaped and the only escapes are
  ``\\"`` ``\\\\`` ``\\$`` ``\\``` (the shell's own set). ``\\n`` is refused, not turned into a
  newline: the shell keeps it as a backslash and an n, so either reading would surprise someone.
  A value is one line (a newline cannot be written), and nothing may follow its closing quote.
* A later assignment of the same KEY wins, as in the shell.

Errors are ``EnvFileError("line N: reason")``; they never quote the line, which may hold a secret
and ends up in state.json and the events file.
"""

from __future__ import annotations

MAX_BYTES = 1 << 20  # an /etc/default file is a screenful
MAX_VARIABLES = 10_000

_KEY_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_KEY_REST = _KEY_START | frozenset("0123456789")
_BLANKS = " \t"
# characters a shell would act on in an unquoted value (and blanks, which end it)
_UNQUOTED_REFUSED = {
    "$": "'$' (no variable expansion here: quote it with '...' or write \\$ in \"...\")",
    "`": "a backtick (no command substitution here: quote it with '...')",
    "\\": "a backslash (quote the value with '...')",
    "~": "'~' (a shell would expand it to a home directory: quote it with '...')",
    " ": "a space (quote the value)", "\t": "a tab (quote the value)",
    **{char: f"{char!r} (a shell would act on it: quote the value)" for char in ";&|<>()"},
}
_DOUBLE_ESCAPES = frozenset('"\\$`')


class EnvFileError(ValueError):
    """One bad line: ``line N: reason`` (the caller adds the file's path)."""


def parse(text: str) -> dict[str, str]:
    """The variables TEXT assigns, in order; raises EnvFileError for the first bad line."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        try:
            assignment = parse_line(raw)
        except EnvFileError as exc:
            raise EnvFileError(f"line {number}: {exc}") from None
        if assignment is not None:
            key, value = assignment
            result.pop(key, None)  # the last assignment also decides the order
            result[key] = value
            if len(result) > MAX_VARIABLES:
                raise EnvFileError(f"line {number}: more than {MAX_VARIABLES} variables")
    return result


def parse_line(raw: str) -> tuple[str, str] | None:
    """(KEY, value), or None for a blank or comment line."""
    if "\0" in raw:
        raise EnvFileError("contains a NUL byte")
    line = raw.removesuffix("\r").strip(_BLANKS)
    if not line or line.startswith("#"):
        return None
    if line.startswith("export") and line[6:7] in tuple(_BLANKS):
        line = line[6:].lstrip(_BLANKS)
    key, equals, value = line.partition("=")
    if not equals:
        raise EnvFileError("not a KEY=value assignment")
    if not key or key[0] not in _KEY_START or any(char not in _KEY_REST for char in key):
        raise EnvFileError("the name before '=' is not [A-Za-z_][A-Za-z0-9_]* (no blanks around '=')")
    return key, parse_value(value)


def parse_value(value: str) -> str:
    if value.startswith("'"):
        end = value.find("'", 1)
        if end < 0:
            raise EnvFileError("unbalanced single quote (a value is one line)")
        _nothing_after(value[end + 1:])
        return value[1:end]
    if value.startswith('"'):
        return _double_quoted(value)
    for char in value:
        if char in _UNQUOTED_REFUSED:
            raise EnvFileError(f"unquoted value with {_UNQUOTED_REFUSED[char]}")
        if char in "'\"":
            raise EnvFileError("a quote inside an unquoted value (quote the whole value)")
    return value


def _double_quoted(value: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(value):
        char = value[index]
        if char == '"':
            _nothing_after(value[index + 1:])
            return "".join(out)
        if char == "\\":
            following = value[index + 1:index + 2]
            if not following or following not in _DOUBLE_ESCAPES:
                raise EnvFileError('in "...", a backslash may only escape \\" \\\\ \\$ or \\` '
                                   "(no \\n: a value is one line)")
            out.append(following)
            index += 2
            continue
        if char == "$":
            raise EnvFileError('\'$\' in "..." (no variable expansion here: write \\$ or use \'...\')')
        if char == "`":
            raise EnvFileError('a backtick in "..." (no command substitution here: write \\`)')
        out.append(char)
        index += 1
    raise EnvFileError("unbalanced double quote (a value is one line)")


def _nothing_after(rest: str) -> None:
    if rest:
        raise EnvFileError("something after the closing quote (quote the whole value, and put "
                           "comments on their own line)")
