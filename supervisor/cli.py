"""The command line: ``svctl [--config-dir DIR] [--run-dir DIR] VERB NAME [options]``.

The only place that turns results into text on stdout/stderr and into exit codes. Verb modules are
imported on demand, so ``svctl status`` pays only for what status needs (no psutil, no daemon).
"""

from __future__ import annotations

import sys

from supervisor.errors import Exit, SvctlError

USAGE = (
    "Usage: svctl [--config-dir DIR] [--run-dir DIR] "
    "{start|stop|status|restart|try-restart|reload|force-reload|run|check|install|uninstall|init|logs|reopen-logs} "
    "NAME [options]"
)

# verb -> (module under supervisor.commands, function). One table, no registry magic.
VERBS: dict[str, tuple[str, str]] = {
    "start": ("lifecycle", "start"),
    "stop": ("stop", "stop"),
    "restart": ("lifecycle", "restart"),
    "try-restart": ("lifecycle", "try_restart"),
    "reload": ("lifecycle", "reload"),
    "force-reload": ("lifecycle", "force_reload"),
    "status": ("status", "status"),
    "run": ("lifecycle", "run"),
    "logs": ("status", "logs"),
    "reopen-logs": ("lifecycle", "reopen_logs"),
    "check": ("check", "check"),
    "install": ("install", "install"),
    "uninstall": ("install", "uninstall"),
    "init": ("init", "init"),
}


class Context:
    """Where service definitions and run directories are (from --config-dir/--run-dir or the env)."""

    __slots__ = ("config_dir", "run_dir")

    def __init__(self, config_dir: str, run_dir: str) -> None:
        self.config_dir, self.run_dir = config_dir, run_dir


def parse_globals(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0].startswith("--") and rest[0] not in ("--help", "--version"):
        flag = rest.pop(0)
        key, _, value = flag.partition("=")
        if key not in ("--config-dir", "--run-dir"):
            raise SvctlError(f"unknown option {flag}\n{USAGE}", Exit.BAD_ARGS)
        if not value:
            if not rest:
                raise SvctlError(f"{key} needs a directory\n{USAGE}", Exit.BAD_ARGS)
            value = rest.pop(0)
        options[key] = value
    return options, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, rest = parse_globals(argv)
        if not rest or rest[0] in ("-h", "--help", "help"):
            print(USAGE, file=sys.stdout if rest else sys.stderr)
            return Exit.OK if rest else Exit.BAD_ARGS
        if rest[0] == "--version":
            from supervisor import __version__

            print(f"svctl {__version__}")
            return Exit.OK
        verb, args = rest[0], rest[1:]
        if verb not in VERBS:
            print(f"svctl: unknown verb {verb!r}\n{USAGE}", file=sys.stderr)
            return Exit.UNKNOWN_VERB
        from supervisor.names import config_dir, run_dir

        context = Context(config_dir(options.get("--config-dir")), run_dir(options.get("--run-dir")))
        module_name, function_name = VERBS[verb]
        # __import__ rather than importlib.import_module: one module less on every start-up
        module = __import__(f"supervisor.commands.{module_name}", fromlist=[function_name])
        function = getattr(module, function_name)
        return function(context, args)
    except SvctlError as exc:
        print(f"svctl: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("svctl: interrupted", file=sys.stderr)
        return 130
