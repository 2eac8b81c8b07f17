"""``svctl check NAME [--json]``: validate the service definition and the service's own config.

Findings print as ``SEVERITY: message`` with an indented ``fix:`` line; the exit code is 0 when
nothing is an error and 6 (not configured / config invalid) otherwise. A service definition that
does not load is itself exit 6, with the one-line ConfigError.
"""

from __future__ import annotations

import json
import sys

from supervisor.errors import Exit
from supervisor.names import validate_name


def _check_command_finding(config):
    """The service's own ``check`` command (for JupyterHub: --show-config --no-db)."""
    from supervisor.jupyterhub.doctor import ERROR, INFO, Finding
    from supervisor.unix.validate import run_check

    if not config.check:
        return Finding(INFO, "no-check", "the service file has no `check` command: config edits are not "
                       "validated before a restart", "add check = [...] to " + config.path)
    result = run_check(config)
    if result.ok:
        return Finding(INFO, "check-passed", f"{' '.join(config.check[:1])} check passed ({result.seconds:.1f} s)")
    tail = "\n".join(result.output.strip().splitlines()[-5:])
    return Finding(ERROR, "check-failed", f"`check` command failed: {result.summary}"
                   + (f"\n    {tail.replace(chr(10), chr(10) + '    ')}" if tail else ""),
                   f"fix the config; the full command is: {' '.join(config.check)}")


def check(context, args: list[str]) -> int:
    from supervisor.cli import options_for
    from supervisor.config import ensure_programs_trusted, load

    options = options_for(context, "check", args)
    as_json = options.flag("--json")
    config = load(validate_name(options.name), context.config_dir)  # ConfigError -> exit 6 via the CLI
    ensure_programs_trusted(config)  # the check runs check[0] as root: same rule as a start
    findings = [_check_command_finding(config)]
    if config.preset == "jupyterhub":
        from supervisor.jupyterhub.probe import run_doctor

        findings += run_doctor(config)
    from supervisor.jupyterhub.doctor import ERROR, SEVERITY_ORDER

    findings.sort(key=lambda finding: SEVERITY_ORDER[finding.severity])
    errors = sum(finding.severity == ERROR for finding in findings)
    if as_json:
        json.dump({"service": config.name, "file": config.path, "ok": errors == 0,
                   "findings": [finding.__dict__ for finding in findings]}, sys.stdout, indent=2)
        print()
    else:
        for finding in findings:
            print(f"{finding.severity}: {finding.message}")
            if finding.fix:
                print(f"    fix: {finding.fix}")
        verdict = "OK" if errors == 0 else f"{errors} error{'s' if errors != 1 else ''}"
        print(f"{config.name}: {verdict} ({len(findings)} findings)")
    return Exit.OK if errors == 0 else Exit.NOT_CONFIGURED
