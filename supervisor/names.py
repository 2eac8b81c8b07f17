"""Service names and where services live: the first things every verb needs.

A tiny module of its own, so the fastest verbs (``stop``, ``status``) don't import config.py.
Names become file names and init-script words, so only a safe alphabet is allowed.
"""

import os

from supervisor.errors import Exit, SvctlError

DEFAULT_CONFIG_DIR = "/etc/svctl"
DEFAULT_RUN_DIR = "/run/svctl"

NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def validate_name(name: str) -> str:
    """Letters, digits, ``_.-``; starts with a letter or digit; at most 64 characters."""
    if not (0 < len(name) <= 64 and name[0].isascii() and name[0].isalnum() and NAME_CHARACTERS.issuperset(name)):
        raise SvctlError(
            f"invalid service name {name!r}: use letters, digits, '_', '.', '-' (at most 64)", Exit.BAD_ARGS
        )
    return name


# Absolute from the start: a supervisor daemonizes (cwd /), so a relative directory would name
# another place after the fork than the one the caller meant.
def config_dir(cli_value: str | None = None) -> str:
    return os.path.abspath(cli_value or os.environ.get("SVCTL_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def run_dir(cli_value: str | None = None) -> str:
    return os.path.abspath(cli_value or os.environ.get("SVCTL_RUN_DIR") or DEFAULT_RUN_DIR)
