"""Exit codes (LSB) and the one exception type that reaches the CLI.

Kept free of imports so that every module, including the fast ``status`` path, can use it.
"""


class Exit:
    """LSB init-script exit codes for every verb except ``status``."""

    OK = 0
    FAILED = 1
    BAD_ARGS = 2
    UNKNOWN_VERB = 3  # LSB "unimplemented feature"
    NOT_ROOT = 4
    NOT_INSTALLED = 5
    NOT_CONFIGURED = 6
    NOT_RUNNING = 7


class Status:
    """LSB exit codes for ``status``."""

    RUNNING = 0
    DEAD_WITH_PIDFILE = 1
    NOT_RUNNING = 3
    UNKNOWN = 4


class SvctlError(Exception):
    """A user-facing failure: one line of text and the exit code the CLI returns."""

    def __init__(self, message: str, code: int = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return self.args[0]


class ConfigError(SvctlError):
    """A service definition that cannot be used (exit 6, names the file and key)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.NOT_CONFIGURED)


def printable(text: str) -> str:
    """TEXT for a one-line message: whitespace runs become one space, other control characters
    escapes (a process's command line, say, is whatever its owner made it)."""
    return " ".join("".join(ch if ch.isprintable() or ch.isspace() else repr(ch)[1:-1] for ch in text).split())
