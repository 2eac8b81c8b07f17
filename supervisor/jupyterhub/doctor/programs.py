"""The hub's programs and accounts: jupyterhub, the proxy, node, user servers, stop timing, logins."""

from __future__ import annotations

import os

from supervisor.config import ServiceConfig
from supervisor.core.schedule import Send, Wait
from supervisor.jupyterhub.doctor.facts import ERROR, INFO, WARNING, Facts, Finding, Program, unchecked
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

GENERIC_INSTALL = ("python3 -m venv /opt/jupyterhub && /opt/jupyterhub/bin/pip install jupyterhub notebook "
                   "(the README has the commands for each OS)")


def hub_program_findings(facts: Facts, config: ServiceConfig | None = None) -> list[Finding]:
    """command[0], the jupyterhub executable: init used to write /usr/local/bin/jupyterhub blindly.

    The fix edits the service file: `init --force` would rewrite the whole deployment (allowed
    users, cookie secret, a CA's certificate, every config edit) to change one path."""
    program = facts.program("jupyterhub")
    if program is None:
        return []
    if program.closed:
        return [unchecked(facts, "missing-tool", f"the hub's program {program.wanted} (command[0])", program.closed)]
    if not program.problem:
        return []
    service_file = config.path if config is not None else "the service file"
    name = config.name if config is not None else "jupyterhub"
    found = facts.elsewhere.get("jupyterhub")
    if found:
        fix = (f"point command[0] and check[0] in {service_file} at {found}, which exists (and put "
               f"{os.path.dirname(found)} first in its environment.PATH), then svctl restart {name}")
    else:
        install = "; ".join(facts.install.get("jupyterhub", ())) or GENERIC_INSTALL
        fix = (f"set command[0] and check[0] in {service_file} to your jupyterhub executable, then svctl restart "
               f"{name} (to see the lines init would write for it, run svctl init jupyterhub --jupyterhub PATH "
               f"--prefix NEW_EMPTY_DIR --no-boot: it touches nothing outside that directory); or install it: "
               f"{install}")
    return [Finding(ERROR, "missing-tool", f"command[0] {program.wanted} {program.problem}: the hub cannot start", fix)]


def trust_findings(facts: Facts) -> list[Finding]:
    """A root hub runs command[0], the proxy and node as root, and finds the last two on its PATH:
    whoever could change one of them, or add a program to a directory on that PATH, runs code as
    root (docs/security.md X2; `svctl start` refuses only command[0] and check[0])."""
    findings = []
    for what, path, reason in facts.untrusted:
        if reason.startswith("cannot check") and facts.caller != "root":
            findings.append(unchecked(facts, "untrusted-program", f"who may change {what} {path}", reason))
            continue
        problem, _, fix = reason.partition("; fix: ")
        lead = "the hub runs as root and looks programs up on its PATH" if what.startswith("a directory") \
            else f"the hub runs as root, so {what} {path} runs as root too"
        findings.append(Finding(ERROR, "untrusted-program", f"{lead}, but {problem}",
                                fix or "make it root's and writable by root alone (chown root, chmod go-w)"))
    return findings


def _tool_finding(facts: Facts, program: Program, where: str, fix: str) -> list[Finding]:
    if program.closed:
        return [unchecked(facts, "missing-tool", f"{program.role} ({where})", program.closed)]
    if program.found is not None:
        return []
    named = f"{program.wanted} {program.problem}" if program.wanted.startswith("/") else \
        f"{program.role} is not on the service's PATH"
    return [Finding(ERROR, "missing-tool", f"{named} ({where})", fix)]


def tool_findings(hub: ConfigFile, facts: Facts) -> list[Finding]:
    """configurable-http-proxy and node when the hub starts the proxy; jupyter_server; singleuser."""
    findings = []
    if hub.get("ConfigurableHTTPProxy.should_start", True) is not False:
        proxy = facts.program("configurable-http-proxy")
        if proxy is not None:
            found = facts.elsewhere.get("configurable-http-proxy")
            if found:
                fix = f"set c.ConfigurableHTTPProxy.command = [{found!r}] (it exists), or put its directory in " \
                      "environment.PATH in the service file"
            else:
                install = "; ".join(facts.install.get("configurable-http-proxy", ())) or \
                    "npm install -g configurable-http-proxy (or make jupyterhub-deps)"
                fix = f"{install}; or set c.ConfigurableHTTPProxy.command to its path"
            findings += _tool_finding(facts, proxy, "the hub starts it: ConfigurableHTTPProxy.command, else PATH", fix)
        node = facts.program("node")
        if node is not None:
            findings += _tool_finding(facts, node, "the proxy is #!/usr/bin/env node",
                                      "apt-get install nodejs, or add its directory to environment.PATH in the "
                                      "service file")
    if facts.singleuser_blocked:
        path, mode = facts.singleuser_blocked
        findings.append(Finding(WARNING, "singleuser-access", f"users cannot run jupyterhub-singleuser: {path} is "
                                f"mode {mode:03o}, closed to other users, so LocalProcessSpawner's servers fail to start",
                                "install JupyterHub where users can execute it (a venv in /opt/jupyterhub), or set "
                                "c.Spawner.cmd to a Python they can run"))
    if facts.jupyter_server is False:
        # pip outside a venv is refused on Debian 12+ and Ubuntu 24.04 (PEP 668): name the venv's own pip
        fix = f"{facts.hub_venv}/bin/pip install notebook (it brings jupyter_server and JupyterLab)" \
            if facts.hub_venv else ("VENV/bin/pip install notebook, with VENV the venv jupyterhub runs from (outside "
                                    "a venv, Debian 12+ refuses pip: PEP 668)")
        findings.append(Finding(ERROR, "missing-tool", "jupyter_server is not installed next to jupyterhub: "
                                "user servers cannot start", fix))
    elif facts.jupyter_server_note:
        findings.append(Finding(INFO, "jupyter-server-unchecked", f"jupyter_server not checked: "
                                f"{facts.jupyter_server_note}", "user servers need it in the Python that "
                                f"jupyterhub-singleuser runs ({facts.hub_venv or 'VENV'}/bin/pip install notebook)"))
    for what, why in facts.not_run.items():
        findings.append(unchecked(facts, "not-run", what, why))
    return findings


def _grace(config: ServiceConfig) -> float | None:
    """Seconds the service gets between the first signal and SIGKILL (None: never killed)."""
    total, started = 0.0, False
    for step in config.stop.steps:
        if isinstance(step, Send):
            if step.signal == 9:
                return total
            started = True
        elif isinstance(step, Wait) and started:
            total += step.seconds
    return None if config.stop.repeat_from is not None else total


def _number(hub: ConfigFile, trait: str, default: float) -> float | None:
    for section in ("SimpleLocalProcessSpawner", "LocalProcessSpawner", "Spawner"):
        value = hub.get(f"{section}.{trait}", None)
        if value is UNKNOWN:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def stop_findings(hub: ConfigFile, config: ServiceConfig) -> list[Finding]:
    """A hub SIGKILLed mid-cleanup orphans its proxy and user servers."""
    if hub.get("JupyterHub.cleanup_servers", True) is not True:
        return []
    parts = [_number(hub, "interrupt_timeout", 30), _number(hub, "term_timeout", 30), _number(hub, "kill_timeout", 5)]
    grace = _grace(config)
    if any(part is None for part in parts) or grace is None:
        return []
    needed = sum(parts) + 5  # the hub's own shutdown around the user servers' (measured: ~1-3 s)
    if grace >= needed:
        return []
    return [Finding(WARNING, "stop-too-short",
                    f"stop = {config.stop_text!r} sends SIGKILL after {grace:g} s, but with cleanup_servers the hub "
                    f"may need {needed:g} s to stop a stuck user server (SIGINT {parts[0]:g} + SIGTERM {parts[1]:g} "
                    f"+ SIGKILL {parts[2]:g} s)",
                    "lower c.LocalProcessSpawner.interrupt_timeout/term_timeout, or lengthen the stop schedule")]


PAM_AUTHENTICATORS = ("pam", "jupyterhub.auth.PAMAuthenticator")


def hub_user_names(hub: ConfigFile) -> tuple[str, ...]:
    """Every name allowed_users and admin_users list (sets of string literals), sorted."""
    names: set[str] = set()
    for key in ("Authenticator.allowed_users", "Authenticator.admin_users"):
        value = hub.get(key)
        if isinstance(value, (set, frozenset, list, tuple)):
            names.update(item for item in value if isinstance(item, str))
    return tuple(sorted(names))


def auth_findings(hub: ConfigFile, config: ServiceConfig, running_as_root: bool,
                  facts: Facts | None = None) -> list[Finding]:
    findings = []
    authenticator = hub.get("JupyterHub.authenticator_class", "pam")
    if authenticator in PAM_AUTHENTICATORS and facts is not None and facts.missing_users:
        names = ", ".join(facts.missing_users)
        findings.append(Finding(WARNING, "no-such-user", f"allowed_users/admin_users name {names}, which have no "
                                "account on this host: PAM can never log them in",
                                f"create the account(s) (adduser {facts.missing_users[0]}), or fix the names"))
    if authenticator in ("dummy", "jupyterhub.auth.DummyAuthenticator") and not hub.get("DummyAuthenticator.password"):
        findings.append(Finding(ERROR, "open-hub", "DummyAuthenticator without a password: anyone can log in as "
                                "anyone", "set c.DummyAuthenticator.password to a long random secret (or log in "
                                "with PAM: c.JupyterHub.authenticator_class = 'pam'), then svctl reload jupyterhub"))
    if hub.get("Authenticator.allow_all") is True:
        findings.append(Finding(WARNING, "open-hub", "Authenticator.allow_all = True: every account the "
                                "authenticator accepts may log in", "list users in c.Authenticator.allowed_users"))
    spawner = hub.get("JupyterHub.spawner_class", "localprocess")
    if spawner in ("localprocess", "jupyterhub.spawner.LocalProcessSpawner") and not running_as_root \
            and config.user not in (None, "root"):
        findings.append(Finding(WARNING, "privileges", "LocalProcessSpawner starts servers as each user: the hub "
                                "must run as root", "drop `user` from the service file, or use another spawner"))
    return findings
