"""The hub's programs and accounts: jupyterhub, the proxy, node, user servers, stop timing, logins."""

from __future__ import annotations

from supervisor.config import ServiceConfig
from supervisor.core.schedule import Send, Wait
from supervisor.jupyterhub.doctor.facts import ERROR, WARNING, Facts, Finding, Program, unchecked
from supervisor.jupyterhub.pyconfig import UNKNOWN, ConfigFile

GENERIC_INSTALL = ("python3 -m venv /opt/jupyterhub && /opt/jupyterhub/bin/pip install jupyterhub notebook "
                   "(the README has the commands for each OS)")


def hub_program_findings(facts: Facts) -> list[Finding]:
    """command[0], the jupyterhub executable: init used to write /usr/local/bin/jupyterhub blindly."""
    program = facts.program("jupyterhub")
    if program is None:
        return []
    if program.closed:
        return [unchecked(facts, "missing-tool", f"the hub's program {program.wanted} (command[0])", program.closed)]
    if not program.problem:
        return []
    install = "; ".join(facts.install.get("jupyterhub", ())) or GENERIC_INSTALL
    return [Finding(ERROR, "missing-tool", f"command[0] {program.wanted} {program.problem}: the hub cannot start",
                    f"svctl init jupyterhub --jupyterhub PATH --force (PATH: your jupyterhub executable); "
                    f"or install it: {install}")]


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
            install = "; ".join(facts.install.get("configurable-http-proxy", ())) or \
                "npm install -g configurable-http-proxy (or make jupyterhub-deps)"
            findings += _tool_finding(facts, proxy, "the hub starts it: ConfigurableHTTPProxy.command, else PATH",
                                      f"{install}; or set c.ConfigurableHTTPProxy.command to its path")
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
        findings.append(Finding(ERROR, "missing-tool", "jupyter_server is not installed next to jupyterhub: "
                                "user servers cannot start", "pip install jupyter_server"))
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
                                "anyone", "svctl init jupyterhub --auth dummy --force (a generated shared password)"))
    if hub.get("Authenticator.allow_all") is True:
        findings.append(Finding(WARNING, "open-hub", "Authenticator.allow_all = True: every account the "
                                "authenticator accepts may log in", "list users in c.Authenticator.allowed_users"))
    spawner = hub.get("JupyterHub.spawner_class", "localprocess")
    if spawner in ("localprocess", "jupyterhub.spawner.LocalProcessSpawner") and not running_as_root \
            and config.user not in (None, "root"):
        findings.append(Finding(WARNING, "privileges", "LocalProcessSpawner starts servers as each user: the hub "
                                "must run as root", "drop `user` from the service file, or use another spawner"))
    return findings
