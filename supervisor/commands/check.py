"""``svctl check NAME [--json]``: validate the service definition and the service's own config.

Findings print as ``SEVERITY: message`` with an indented ``fix:`` line. Exit codes:
0 nothing wrong; 6 (not configured) when any finding is an error, or the service definition does
not load (the one-line ConfigError); 4 (LSB "insufficient privilege") when there is no error but
some findings could not be checked by this caller (a non-root user: the key is 0600, the state
directory 0750, the check command runs as root): those print as "not checked as USER: ...", never
as "missing", and the summary line says how many.

The environment file is read as a start would read it (its variables are shown by name only), and
the process settings (umask, nice, groups, limits) are shown, and under --json as "process"; what
this supervisor could not apply (a hard limit above its own without CAP_SYS_RESOURCE) is an error.
Each environment-file problem comes with its own fix (chmod, chown, create it, the syntax), and an
on_failure program that is missing or not executable is an error, not a surprise at the first failure.
"""

from __future__ import annotations

import json
import os
import sys

from supervisor.errors import Exit, SvctlError
from supervisor.names import validate_name


def _check_command_finding(config):
    """The service's own ``check`` command (for JupyterHub: --show-config --no-db)."""
    from supervisor.jupyterhub.doctor import ERROR, INFO, Finding, unchecked
    from supervisor.jupyterhub.probe_files import acts_as_service, caller_name
    from supervisor.unix.validate import run_check

    if not config.check:
        return Finding(INFO, "no-check", "the service file has no `check` command: config edits are not "
                       "validated before a restart", "add check = [...] to " + config.path)
    why = acts_as_service(config)
    if why:
        # Run as this caller instead, it would fail on what only the service's user may read (the
        # hub's cookie secret) and report a broken config that is not broken.
        from supervisor.jupyterhub.doctor import Facts, HostFacts

        facts = Facts(HostFacts(True, True, True), caller=caller_name())
        return unchecked(facts, "check-not-run", f"the service's `check` command ({config.check[0]})", why)
    result = run_check(config)
    if result.ok:
        return Finding(INFO, "check-passed", f"{' '.join(config.check[:1])} check passed ({result.seconds:.1f} s)")
    tail = "\n".join(result.output.strip().splitlines()[-5:])
    return Finding(ERROR, "check-failed", f"`check` command failed: {result.summary}"
                   + (f"\n    {tail.replace(chr(10), chr(10) + '    ')}" if tail else ""),
                   f"fix the config; the full command is: {' '.join(config.check)}")


def _environment_file_finding(config):
    """The environment file read as a start would read it: trusted, readable, every line valid.
    Only the names of its variables are shown: the values may be secrets."""
    from supervisor.jupyterhub.doctor import ERROR, INFO, UNCHECKED, Finding
    from supervisor.unix import envfile

    try:
        variables = envfile.read(config)
    except envfile.EnvFileUnusable as exc:
        if os.geteuid() != 0 and "Permission denied" in str(exc):
            from supervisor.jupyterhub.probe_files import caller_name

            return Finding(UNCHECKED, "environment-file-unchecked", f"not checked as {caller_name()}: {exc}",
                           "run svctl check as root")
        # each kind of problem its own fix (envfile sets it): chmod, chown, create, the syntax
        return Finding(ERROR, "environment-file-invalid", str(exc),
                       exc.fix or f"fix {config.environment_file} (see environment_file in etc/example.toml)")
    names = ", ".join(variables) if len(variables) <= 20 else ", ".join(list(variables)[:20]) + ", ..."
    count = len(variables)
    return Finding(INFO, "environment-file", f"environment_file {config.environment_file}: {count} "
                   f"variable{'s' if count != 1 else ''}" + (f" ({names})" if names else "")
                   + ("; `environment` overrides it" if config.environment else ""))


def _on_failure_finding(config):
    """The failure hook would otherwise fail only when the service fails, when nobody is looking."""
    from supervisor.jupyterhub.doctor import ERROR, Finding

    program = config.on_failure[0]
    if os.path.isfile(program) and os.access(program, os.X_OK):
        return None
    return Finding(ERROR, "on-failure-missing", f"on_failure: {program} is not installed (not an executable "
                   "file): the hook would fail when the service fails",
                   f"install {program} (chmod +x), or change on_failure in {config.path}")


def _process_settings_finding(config, shown: dict):
    """What the service's process gets beyond its user, and whether this supervisor can apply it."""
    from supervisor.jupyterhub.doctor import ERROR, INFO, Finding
    from supervisor.unix import spawn

    parts = []
    if "umask" in shown:
        parts.append(f"umask {shown['umask']}")
    if "nice" in shown:
        parts.append(f"nice {shown['nice']}")
    if "groups" in shown:
        parts.append(f"groups {','.join(shown['groups'])} (besides the user's own)")
    for name, (soft, hard) in shown.get("limits", {}).items():
        parts.append(f"limit {name} {soft}" if soft == hard else f"limit {name} {soft}:{hard}")
    if os.geteuid() == 0:  # as another caller, "needs root" would be about the wrong process
        try:
            spawn.user_environment(config, {})
        except SvctlError as exc:
            return Finding(ERROR, "process-settings-invalid", str(exc), "change the value in " + config.path)
    return Finding(INFO, "process-settings", "process settings: " + "; ".join(parts))


def _load(name: str, config_dir: str):
    """The service definition; one that this non-root caller may not read is exit 4, not "invalid"."""
    from supervisor.config import load, service_path
    from supervisor.errors import ConfigError

    try:
        return load(name, config_dir)  # ConfigError -> exit 6 via the CLI
    except ConfigError:
        path = service_path(name, config_dir)
        if os.geteuid() != 0:
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW))
            except PermissionError:
                from supervisor.jupyterhub.probe_files import caller_name, closed_reason

                raise SvctlError(f"not checked as {caller_name()}: {closed_reason(path)}; run svctl check as root",
                                 Exit.NOT_ROOT) from None
            except OSError:
                pass
        raise


def check(context, args: list[str]) -> int:
    from supervisor.cli import options_for
    from supervisor.config import ensure_programs_trusted

    options = options_for(context, "check", args)
    as_json = options.flag("--json")
    config = _load(validate_name(options.name), context.config_dir)
    from supervisor.depgraph import requirements

    requirements(config.name, context.config_dir)  # unknown requirements and cycles: exit 6, naming them
    ensure_programs_trusted(config)  # the check runs check[0] as root: same rule as a start
    findings = [_check_command_finding(config)]
    if config.environment_file:
        findings.append(_environment_file_finding(config))
    if config.on_failure and (finding := _on_failure_finding(config)):
        findings.append(finding)
    from supervisor.unix.spawn import process_settings

    process = process_settings(config)
    if process:
        findings.append(_process_settings_finding(config, process))
    from supervisor.presets import preset_for

    findings += preset_for(config.preset).doctor(config)  # the preset's own findings (JupyterHub's doctor)
    from supervisor.jupyterhub.doctor import ERROR, SEVERITY_ORDER, UNCHECKED

    findings.sort(key=lambda finding: SEVERITY_ORDER[finding.severity])
    errors = sum(finding.severity == ERROR for finding in findings)
    not_checked = sum(finding.severity == UNCHECKED for finding in findings)
    if as_json:
        json.dump({"service": config.name, "file": config.path, "ok": errors == 0, "unchecked": not_checked,
                   "process": process, "findings": [finding.__dict__ for finding in findings]},
                  sys.stdout, indent=2)
        print()
    else:
        for finding in findings:
            # an unchecked finding's message already starts "not checked as USER:"
            message = finding.message if finding.severity == UNCHECKED else f"{finding.severity}: {finding.message}"
            print(printable(message))
            if finding.fix:
                print(printable(f"    fix: {finding.fix}"))
        print(f"{config.name}: {_verdict(errors, not_checked)} ({len(findings)} findings)")
    if errors:
        return Exit.NOT_CONFIGURED
    return Exit.NOT_ROOT if not_checked else Exit.OK


def printable(text: str) -> str:
    """TEXT safe for a terminal and for any stdout encoding: findings quote what a user's config says,
    and a control character there (an escape sequence, a NUL) or a lone surrogate (from a "\\ud800"
    escape, which print() cannot encode) is shown as its escape. Newlines stay: messages use them."""
    # str.isprintable() is False for control characters and for surrogates (category Cs)
    return "".join(char if char == "\n" or char.isprintable() else repr(char)[1:-1] for char in text)


def _verdict(errors: int, not_checked: int) -> str:
    if errors:
        return f"{errors} error{'s' if errors != 1 else ''}" + (f", {not_checked} not checked" if not_checked else "")
    if not_checked:
        return (f"no errors found, but {not_checked} finding{'s' if not_checked != 1 else ''} could not be "
                "checked without root: run svctl check as root")
    return "OK"
