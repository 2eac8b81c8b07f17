"""The command line: ``svctl [--config-dir DIR] [--run-dir DIR] VERB NAME [options]``.

The only place that turns results into text on stdout/stderr and into exit codes. Verb modules are
imported on demand, so ``svctl status`` pays only for what status needs (no psutil, no daemon).
Every verb's options are parsed here, by one parser, before the verb runs: an unknown option is
exit 2 with the verb's usage, never silently ignored; ``svctl VERB --help`` prints the usage.
"""

from __future__ import annotations

import os
import sys

from supervisor.errors import Exit, Status, SvctlError

GLOBALS = "svctl [--config-dir DIR] [--run-dir DIR]"
USAGE = (
    f"Usage: {GLOBALS} "
    "{start|stop|status|restart|try-restart|reload|force-reload|run|check|install|uninstall|init|logs|reopen-logs} "
    "NAME [options]\n"
    f"       {GLOBALS} {{status|list}} [--json]\n"
    f"       {GLOBALS} up [NAME...]"
)
PIPE_CLOSED = 128 + 13  # what a shell reports for a command killed by SIGPIPE (`yes | head -1`)

# Options of a verb: option -> None for a flag, or the name of the value it takes
# (given as `-n 5`, `-n5`, `--root DIR` or `--root=DIR`).
NAME_ONLY: dict[str, str | None] = {}
INIT_OPTIONS: dict[str, str | None] = {
    "--ip": "ADDR", "--port": "N", "--hub-port": "N", "--api-port": "N", "--prefix": "DIR",
    "--users": "a,b", "--admins": "a", "--auth": "pam|dummy", "--proxy": "hub|external",
    "--jupyterhub": "PATH", "--proxy-command": "PATH", "--no-boot": None, "--force": None,
    "--renew-cert": None, "--stop-user-servers": None, "--no-hints": None,
}
INSTALL_OPTIONS: dict[str, str | None] = {
    "--systemd": None, "--no-systemd": None, "--initd": None, "--no-initd": None, "--root": "DIR",
    "--print": None,
}

# verb -> (module under supervisor.commands, function, what follows the verb, its options).
# One table, no registry magic.
VERBS: dict[str, tuple[str, str, str, dict[str, str | None]]] = {
    "start": ("lifecycle", "start", "NAME", NAME_ONLY),
    "stop": ("stop", "stop", "NAME [--stop-user-servers]", {"--stop-user-servers": None}),
    "restart": ("lifecycle", "restart", "NAME", NAME_ONLY),
    "try-restart": ("lifecycle", "try_restart", "NAME", NAME_ONLY),
    "reload": ("lifecycle", "reload", "NAME", NAME_ONLY),
    "force-reload": ("lifecycle", "force_reload", "NAME", NAME_ONLY),
    "status": ("status", "status", "[NAME] [--json] [--lines N]", {"--json": None, "--lines": "N"}),
    "list": ("status_all", "list_all", "[--json]", {"--json": None}),
    "run": ("lifecycle", "run", "NAME", NAME_ONLY),
    "up": ("up", "up", "[NAME...]", NAME_ONLY),
    "logs": ("status", "logs", "NAME [-f] [-n LINES]", {"-f": None, "-n": "LINES"}),
    "reopen-logs": ("lifecycle", "reopen_logs", "NAME", NAME_ONLY),
    "check": ("check", "check", "NAME [--json]", {"--json": None}),
    "install": ("install", "install",
                "NAME [--systemd|--no-systemd] [--initd|--no-initd] [--root DIR] [--print]", INSTALL_OPTIONS),
    "uninstall": ("install", "uninstall", "NAME [--root DIR]", {"--root": "DIR"}),
    "init": ("init", "init", ("jupyterhub [--ip ADDR] [--port N] [--hub-port N] [--api-port N] [--prefix DIR] "
                              "[--users a,b] [--admins a] [--auth pam|dummy] [--proxy hub|external] "
                              "[--jupyterhub PATH] [--proxy-command PATH] [--no-boot] [--force] [--renew-cert] "
                              "[--stop-user-servers] [--no-hints]"),
             INIT_OPTIONS),
}

# One line per verb for `svctl --help` (the man page, svctl(8), says the rest).
SUMMARY = {
    "start": "start the service (LSB): returns once it runs, or is ready when `ready` is set",
    "stop": "stop it with its stop schedule; 0 once it and its supervisor are gone",
    "restart": "stop, then start (the service file is read again), with its dependents",
    "try-restart": "restart only if it is running",
    "reload": "reopen the logs, validate the watched config and apply it (or send the reload signal)",
    "force-reload": "reload if running, else start",
    "status": "LSB status: 0 running, 1 dead with a PID file, 3 stopped, 4 unknown; no NAME: as list",
    "list": "every service at a glance, one line each: 0 all running, 3 none, 1 some",
    "run": "supervise in the foreground (systemd Type=notify, containers, debugging)",
    "up": "supervise every service (or NAME... and what they require) in one foreground process",
    "logs": "the service's captured output",
    "reopen-logs": "reopen the log files (logrotate); 0 on a stopped service",
    "check": "validate the service file and the service's own config (JupyterHub: the doctor)",
    "install": "write the init.d shim (+ update-rc.d) and/or the systemd unit",
    "uninstall": "remove the boot files svctl generated",
    "init": "scaffold JupyterHub on IPv6 with HTTPS: config, cert, cookie secret, service file, boot files",
}

# What `--help` adds below the usage line, for verbs whose options need words.
HELP = {
    "init": (
        "  --ip ADDR           address to serve on (default: the host's global IPv6 address, else ::1)",
        "  --port N            the public HTTPS port (default 9443)",
        "  --hub-port N        the hub's private API port on ::1 (default 9081)",
        "  --api-port N        the proxy's REST API port on ::1 (default 9001)",
        "  --prefix DIR        put everything under this directory (no root needed, no boot files)",
        "  --users a,b         comma-separated allowed users",
        "  --admins a          comma-separated admin users",
        "  --auth pam|dummy    how users log in (default pam)",
        "  --proxy hub|external  external: configurable-http-proxy as its own service (jupyterhub-proxy),",
        "                      so a reload restarts only the hub and user servers keep answering",
        "  --jupyterhub PATH   the jupyterhub program (default: found on PATH, beside the Python running",
        "                      svctl, or in /opt/jupyterhub/bin; none found: exit 5 with install commands)",
        "  --proxy-command PATH  configurable-http-proxy (default: found on PATH, beside jupyterhub, in",
        "                      its venv's node_modules/.bin, in /opt/jupyterhub; with --prefix also the",
        "                      .npm-prefix of svctl's checkout). As root, programs others could change are",
        "                      skipped when found and refused when given (exit 6, nothing written)",
        "  --no-boot           do not install the boot files (init.d shim + update-rc.d, or the systemd",
        "                      unit), which init otherwise installs as `svctl install` does; --prefix never does",
        "  --force             overwrite existing files (the proxy's token is kept; without --proxy the",
        "                      kept config's mode is kept, and a --proxy that contradicts it is exit 6)",
        "  --renew-cert        only replace the self-signed certificate and key (refused for a CA's), then",
        "                      restart what serves them if it runs (takes only --prefix and --ip)",
        "  --stop-user-servers  the hub stops users' servers when it stops (cleanup_servers = True), so",
        "                      edits restart them too; default: they keep running (make run uses it)",
        "  --no-hints          skip the 'next:' line (make run supervises it itself)",
    ),
    "start": ("  starts what NAME requires first (its `requires`, recursively), each until it is started",
              "  (ready, when it has `ready`); an unknown requirement or a cycle is exit 6, nothing started",),
    "stop": ("  stops the running services that require NAME first (dependents first, each named); a",
             "  dependency cycle is a warning and the stop goes ahead; a broken or removed service file",
             "  never keeps a running service from stopping (the definition it runs with is used)",
             "  --stop-user-servers  also stop what the service left running outside its process group",
             "                      that its preset keeps on purpose (JupyterHub: the users' servers);",
             "                      other escapees (a helper started with setsid) are always stopped;",
             "                      the dependents stopped first get it too"),
    "restart": ("  stops the running dependents, restarts NAME (its requirements started first), then starts",
                "  those dependents again; the whole graph is checked first: an unknown requirement or a",
                "  cycle is exit 6 with nothing stopped. (reload acts on NAME alone, never its dependents)"),
    "check": ("  --json    the findings as JSON (with \"ok\" and an \"unchecked\" count)",
              "  exit 0 nothing wrong; 6 an error or an invalid service file; 4 no error, but some",
              "  findings need root (they say 'not checked as USER': run svctl check as root)"),
    "status": ("  NAME        one service: its state, PIDs, readiness, health, last exit and output;",
               "              exit 0 running, 1 dead but its PID file exists, 3 not running, 4 unknown",
               "  (no NAME)   every NAME.toml in the config directory, one line each, as `svctl list`",
               "  --json      the same facts as JSON (without NAME: a list, one object per service)",
               "  --lines N   with NAME: show the last N lines of its output (default 10 at a terminal)"),
    "list": ("  one line per NAME.toml in the config directory, sorted: state, PID, uptime, restarts,",
             "  readiness/health and the last exit or rejection; a file that is invalid or untrusted",
             "  gets its own line saying why; a `requires` naming no file, or a cycle, is a warning in",
             "  the lines concerned; a running service whose file was removed is listed (no service file).",
             "  Exit 0 every service running, 3 none (or none defined, or no such config directory),",
             "  1 otherwise, 4 the config directory can't be listed",
             "  --json    a JSON list, one object per service, the same facts"),
    "up": ("  no NAME: every NAME.toml of the config directory; NAME...: those and what they require.",
           "  Starts each once its requirements run (ready, with `ready`); reaps every orphan (PID 1",
           "  of a container); SIGTERM/SIGINT stop all in reverse dependency order, each with its",
           "  schedule, then exit 0, or 1 if a service failed to start or to stop; SIGHUP reloads",
           "  all, SIGUSR1 reopens their logs. The other verbs reach its services as usual; exit 6",
           "  for an invalid, untrusted or unknown service or a dependency cycle (nothing started)"),
    "logs": ("  -f        keep printing what the service writes", "  -n LINES  how many lines first (default 50)"),
    "install": ("  --root DIR  write under DIR instead of / (no root needed)",
                "  --print     show the files instead of writing them"),
}


def usage(verb: str) -> str:
    return f"Usage: {GLOBALS} {verb} {VERBS[verb][2]}"


class Context:
    """Where service definitions and run directories are (from --config-dir/--run-dir or the env),
    and the verb's parsed options."""

    __slots__ = ("config_dir", "run_dir", "options")

    def __init__(self, config_dir: str, run_dir: str, options: Options | None = None) -> None:
        self.config_dir, self.run_dir, self.options = config_dir, run_dir, options


class Options:
    """A verb's command line, parsed: its one NAME (None for `list`, or `status` of every service)
    and the options given, in order."""

    __slots__ = ("verb", "name", "given", "names")

    def __init__(self, verb: str, name: str | None, given: list[tuple[str, str | None]],
                 names: tuple[str, ...] = ()) -> None:
        self.verb, self.name, self.given = verb, name, given
        self.names = names or ((name,) if name else ())  # `up NAME...`: every one given

    def flag(self, option: str) -> bool:
        return any(given == option for given, _ in self.given)

    def value(self, option: str, default: str | None = None) -> str | None:
        """The value of the last OPTION given, or DEFAULT."""
        for given, value in reversed(self.given):
            if given == option:
                return value
        return default

    def last(self, *options: str) -> str | None:
        """Which of OPTIONS came last (for --x/--no-x pairs), or None if none was given."""
        for given, _ in reversed(self.given):
            if given in options:
                return given
        return None

    def number(self, option: str, default: int, low: int, high: int) -> int:
        """OPTION's value as a whole number from LOW to HIGH (exit 2 otherwise)."""
        text = self.value(option)
        if text is None:
            return default
        try:
            number = int(text.strip(), 10) if text.strip().isdigit() else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise bad_args(self.verb, f"{option} needs a whole number from {low} to {high}, got {_shown(text)}")
        return number


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def bad_args(verb: str, message: str) -> SvctlError:
    return SvctlError(f"{verb}: {message}\n{usage(verb)}", Exit.BAD_ARGS)


def wants_help(args: list[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def parse_args(verb: str, args: list[str]) -> Options:
    """NAME and the options of VERB; anything else is exit 2 with the verb's usage."""
    spec = VERBS[verb][3]
    positional: list[str] = []
    given: list[tuple[str, str | None]] = []
    rest = list(args)
    only_positional = False
    while rest:
        arg = rest.pop(0)
        if only_positional or arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        if arg == "--":
            only_positional = True
            continue
        option, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if option not in spec and spec.get(arg[:2]) is not None and not arg.startswith("--"):
            option, equals, value = arg[:2], "=", arg[2:]  # -n5
        if option not in spec:
            raise bad_args(verb, f"unknown option {_shown(arg)}")
        if spec[option] is None:
            if equals:
                raise bad_args(verb, f"{option} takes no value")
            given.append((option, None))
            continue
        if not equals:
            if not rest:
                raise bad_args(verb, f"{option} needs a value ({spec[option]})")
            value = rest.pop(0)
        given.append((option, value))
    takes = VERBS[verb][2].split()[0]  # "NAME", "[NAME]" (optional), "[NAME...]" (any) or "[--json]" (none)
    if not positional and not takes.startswith("["):
        raise bad_args(verb, f"missing {takes}")
    if takes == "[NAME...]":
        return Options(verb, positional[0] if positional else None, given, tuple(positional))
    allowed = 0 if takes.startswith("[-") else 1
    if len(positional) > allowed:
        raise bad_args(verb, f"unexpected argument {_shown(positional[allowed])}")
    return Options(verb, positional[0] if positional else None, given)


def options_for(context: Context, verb: str, args: list[str]) -> Options:
    """What main() parsed for VERB, or ARGS parsed now (a verb calling another, or called directly)."""
    options = getattr(context, "options", None)
    if options is not None and options.verb == verb:
        return options
    return parse_args(verb, args)


def parse_globals(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0].startswith("--") and rest[0] not in ("--help", "--version"):
        flag = rest.pop(0)
        key, equals, value = flag.partition("=")
        if key not in ("--config-dir", "--run-dir"):
            raise SvctlError(f"unknown option {_shown(flag)}\n{USAGE}", Exit.BAD_ARGS)
        if not equals:
            if not rest:
                raise SvctlError(f"{key} needs a directory\n{USAGE}", Exit.BAD_ARGS)
            value = rest.pop(0)
        if not value:
            raise SvctlError(f"{key} needs a directory, not an empty string\n{USAGE}", Exit.BAD_ARGS)
        options[key] = value
    return options, rest


def run(argv: list[str]) -> int:
    options, rest = parse_globals(argv)
    if not rest or rest[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if rest else sys.stderr)
        if rest:  # asked for help: every verb with one line
            print("\nVerbs:")
            for verb_name, line in SUMMARY.items():
                print(f"  {verb_name:<13} {line}")
            print("\n`svctl VERB --help` shows a verb's options; man svctl for files, keys and exit codes.")
        return Exit.OK if rest else Exit.BAD_ARGS
    if rest[0] == "--version":
        from supervisor import __version__

        print(f"svctl {__version__}")
        return Exit.OK
    verb, args = rest[0], rest[1:]
    if verb not in VERBS:
        print(f"svctl: unknown verb {_shown(verb)}\n{USAGE}", file=sys.stderr)
        return Exit.UNKNOWN_VERB
    if wants_help(args):
        print("\n".join((usage(verb), *HELP.get(verb, ()))))
        return Exit.OK
    parsed = parse_args(verb, args)
    from supervisor.names import config_dir, run_dir

    try:
        context = Context(config_dir(options.get("--config-dir")), run_dir(options.get("--run-dir")), parsed)
    except OSError as exc:  # abspath of a relative directory when the working directory is gone
        raise SvctlError(f"cannot resolve the directories: {exc.strerror}", Exit.BAD_ARGS) from None
    module_name, function_name = VERBS[verb][:2]
    # __import__ rather than importlib.import_module: one module less on every start-up
    module = __import__(f"supervisor.commands.{module_name}", fromlist=[function_name])
    return getattr(module, function_name)(context, args)


# Verbs that init scripts and monitoring run often and that leave no file object to flush: once
# they are done, `command` leaves without the interpreter's teardown, which frees every module
# one by one: 7 ms, a third of what `svctl status` costs beyond starting the interpreter.
EXIT_AT_ONCE = frozenset({"start", "stop", "restart", "try-restart", "reload", "force-reload", "status"})


def command() -> None:
    """The `svctl` program: main(), then exit (at once after the hot verbs)."""
    argv = sys.argv[1:]
    code = main(argv)
    try:
        verb = (parse_globals(argv)[1] or [""])[0]
    except SvctlError:
        verb = ""
    if verb in EXIT_AT_ONCE:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed pipe: main() already said nothing more can go there
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    code = None
    if sys.stdout is None:  # `svctl status NAME >&-` (a cron job): nothing to print to, the code still tells
        sys.stdout = open(os.devnull, "w")
    try:
        code = run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
        return code
    except SvctlError as exc:
        _complain(f"svctl: {exc}")
        return exc.code
    except BrokenPipeError:  # `svctl status | head -1`: the reader left; stop quietly, like coreutils
        silence_stdout()
        return code if code is not None else PIPE_CLOSED
    except KeyboardInterrupt:
        _complain("svctl: interrupted")
        return 130
    except OSError as exc:  # writing what the verb printed failed: a full disk, a terminal gone
        if not _output_failed(exc):
            raise
        silence_stdout()
        _complain(f"svctl: cannot write the output: {exc.strerror or exc}")
        if code is not None:
            return code  # the verb is done; only its words were lost
        return Status.UNKNOWN if "status" in argv else Exit.FAILED


def _output_failed(exc: OSError) -> bool:
    """Whether EXC is what writing to stdout gives when it can't (a full disk, a terminal gone):
    one line then, never a traceback; any other OSError is a bug to see."""
    import errno

    return exc.errno in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG)


def _complain(line: str) -> None:
    """The error line on stderr; what the verb printed before it still goes out first."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        pass
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush of stdout has somewhere to go."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
