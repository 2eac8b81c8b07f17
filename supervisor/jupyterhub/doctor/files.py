"""The config's options and files: deprecated names, relative state, secrets, certificates."""

from __future__ import annotations

import datetime
import os

from supervisor.config import ServiceConfig
from supervisor.jupyterhub.certs import CertReport
from supervisor.jupyterhub.doctor.facts import ERROR, INFO, WARNING, Facts, Finding, unchecked
from supervisor.jupyterhub.pyconfig import ConfigFile

DEPRECATED = {
    "whitelist": ("allowed_users", "renamed in JupyterHub 1.2; some authenticators ignore the old name"),
    "blacklist": ("blocked_users", "renamed in JupyterHub 1.2"),
}


def deprecation_findings(hub: ConfigFile) -> list[Finding]:
    """Deprecated or silently ignored options."""
    findings = []
    for key, setting in hub.settings.items():
        section, _, trait = key.partition(".")
        if trait in DEPRECATED:
            new, why = DEPRECATED[trait]
            findings.append(Finding(WARNING, "deprecated", f"c.{key} (line {setting.line}): {why}",
                                    f"write c.{section}.{new} instead"))
    ignored = {
        "JupyterHub.log_file": "does not exist: JupyterHub ignores it (only a warning in its log)",
        "JupyterHub.extra_log_file": "deprecated since 0.8.2 and covers the hub's own lines only",
    }
    for key, why in ignored.items():
        if hub.has(key):
            findings.append(Finding(WARNING, "ignored-option", f"c.{key} (line {hub.line(key)}) {why}",
                                    "remove it: svctl captures hub, proxy and server output in the service's "
                                    "log_file"))
    if hub.has("JupyterHub.admin_users"):
        findings.append(Finding(WARNING, "deprecated", "c.JupyterHub.admin_users is deprecated since 0.7.2",
                                "write c.Authenticator.admin_users instead"))
    if hub.has("JupyterHub.ip") and hub.has("JupyterHub.bind_url"):
        findings.append(Finding(WARNING, "conflict", "both JupyterHub.ip and JupyterHub.bind_url are set",
                                "keep only bind_url"))
    return findings


def _is_relative_db(url: str) -> bool:
    if "://" not in url:
        return not os.path.isabs(url)
    return url.startswith("sqlite:///") and not url[len("sqlite:///"):].startswith("/")


STATE_SETTINGS = (("JupyterHub.db_url", "sqlite:///jupyterhub.sqlite"),
                  ("JupyterHub.cookie_secret_file", "jupyterhub_cookie_secret"),
                  ("ConfigurableHTTPProxy.pid_file", "jupyterhub-proxy.pid"),
                  ("JupyterHub.pid_file", ""), ("JupyterHub.ssl_key", ""), ("JupyterHub.ssl_cert", ""))


def path_findings(hub: ConfigFile, config: ServiceConfig) -> list[Finding]:
    """CWD-relative state: set -> warning; left at a relative default -> info."""
    findings = []
    for key, default in STATE_SETTINGS:
        value = hub.get(key, default)
        if not isinstance(value, str) or not value:
            continue
        relative = _is_relative_db(value) if key.endswith("db_url") else not os.path.isabs(value)
        if not relative:
            continue
        resolved = f"resolves against the hub's working directory {config.working_directory}"
        if hub.has(key):
            findings.append(Finding(WARNING, "relative-path", f"c.{key} = {value!r} is relative: it {resolved}",
                                    f"give an absolute path under {config.working_directory}"))
        else:
            severity = WARNING if config.working_directory == "/" else INFO
            findings.append(Finding(severity, "relative-path", f"c.{key} is not set: its default {value!r} "
                                    f"{resolved}", f"set c.{key} to an absolute path"))
    return findings


def resolve(path: str, config: ServiceConfig) -> str:
    return os.path.normpath(os.path.join(config.working_directory, path))


RENEW = "svctl init jupyterhub --renew-cert replaces a self-signed one"
EXPIRY_WARNING = datetime.timedelta(days=30)  # the seed's certificate lasts 365 days


def init_prefix(config: ServiceConfig) -> str:
    """' --prefix P' when the service file is P/etc/svctl/NAME.toml (from `init --prefix P`), else ''."""
    tail = "/etc/svctl/" + os.path.basename(config.path)
    return f" --prefix {config.path[:-len(tail)]}" if config.path.endswith(tail) and config.path != tail else ""


def renew_fix(config: ServiceConfig) -> str:
    """RENEW for this deployment: a --prefix install's own --prefix, so the command works as printed."""
    return RENEW.replace(" --renew-cert", f"{init_prefix(config)} --renew-cert")


def tls_findings(hub: ConfigFile, config: ServiceConfig, facts: Facts) -> list[Finding]:
    """Cookie secret and key permissions; certificate presence, dates and key match."""
    findings = []
    secret = hub.get("JupyterHub.cookie_secret_file", "jupyterhub_cookie_secret")
    if isinstance(secret, str) and secret:
        path = resolve(secret, config)
        mode = facts.modes.get(path)
        if path in facts.closed:
            findings.append(unchecked(facts, "permissions", f"the mode of cookie secret {secret}", facts.closed[path]))
        elif mode is not None and mode & 0o007:
            findings.append(Finding(ERROR, "permissions", f"cookie secret {secret} has mode {mode:04o}: "
                                    "JupyterHub refuses to start", f"chmod 600 {secret}"))
    cert, key = hub.get("JupyterHub.ssl_cert"), hub.get("JupyterHub.ssl_key")
    bind = hub.get("JupyterHub.bind_url", "")
    if not cert:
        if isinstance(bind, str) and bind.startswith("https://") and facts.proxy_tls is None:
            findings.append(Finding(WARNING, "no-tls", "bind_url is https:// but ssl_cert is not set: JupyterHub "
                                    "silently serves plain http", "set c.JupyterHub.ssl_cert and ssl_key"))
    elif not isinstance(cert, str) or not isinstance(key, str) or not key:
        if not key:
            findings.append(Finding(ERROR, "tls", "ssl_cert is set but ssl_key is not", "set c.JupyterHub.ssl_key"))
    elif "\0" not in cert + key:  # else values.value_findings reports the NUL
        findings += pair_findings(resolve(cert, config), resolve(key, config), facts.cert, facts,
                                  "the proxy fails to start", renew_fix(config))
    proxy = facts.proxy_tls
    if proxy is not None:
        # --proxy external: the browser sees the proxy's pair, named in its own service file.
        if proxy.closed:
            findings.append(unchecked(facts, "tls", f"the proxy's certificate (named in {proxy.service_file})",
                                      proxy.closed))
        elif proxy.cert and proxy.key and proxy.cert != (resolve(cert, config) if isinstance(cert, str) else None):
            findings += pair_findings(proxy.cert, proxy.key, proxy.report, facts,
                                      f"the proxy ({proxy.service_file}) fails to start", renew_fix(config))
    return findings


def pair_findings(cert: str, key: str, report: CertReport | None, facts: Facts, failure: str,
                  renew: str = RENEW) -> list[Finding]:
    """One certificate/key pair: present, the key private, the certificate current and the key's."""
    findings = []
    matches = "whether it matches the certificate"
    # `init --renew-cert` writes a new self-signed pair when either file is missing (it refuses only
    # to replace a certificate an authority issued); never `init --force`, which would also replace
    # the cookie secret, the allowed users and every edit of the config.
    make_new = renew.replace("replaces a self-signed one", "writes a new self-signed pair (and restarts the "
                             "hub if it runs)")
    for label, path, what in (("certificate", cert, "its dates"),
                              ("private key", key, matches if facts.modes.get(key) is not None
                               else f"its mode, and {matches}")):
        if path in facts.closed:
            findings.append(unchecked(facts, "tls", f"{label} {path} ({what})", facts.closed[path]))
        elif facts.modes.get(path) is None:
            issued = label == "private key" and report is not None and report.self_signed is False
            fix = f"put back the key issued with {cert} (--renew-cert replaces only a self-signed certificate)" \
                if issued else make_new
            findings.append(Finding(ERROR, "tls", f"{label} {path} does not exist: {failure}", fix))
    key_mode = facts.modes.get(key)
    if key_mode is not None and key_mode & 0o077:
        findings.append(Finding(ERROR if key_mode & 0o004 else WARNING, "permissions",
                                f"private key {key} has mode {key_mode:04o}", f"chmod 600 {key}"))
    if report is not None:
        fix = renew if report.self_signed is not False else "ask the authority that issued it for a new one"
        findings += [Finding(ERROR, "tls", problem, fix) for problem in report.problems]
        findings += [Finding(ERROR, "tls", refused, "make it a regular file of root's (or of the owner of its "
                             "directory): svctl reads no link, FIFO or device in a directory a user controls")
                     for refused in report.refused]
        findings += expiry_findings(cert, report, facts.now or datetime.datetime.now(datetime.UTC), renew)
    return findings


def expiry_findings(cert: str, report: CertReport, now: datetime.datetime, renew: str = RENEW) -> list[Finding]:
    """Expired: browsers refuse the hub. Under 30 days: say so while there is time (the seed's lasts 365)."""
    findings = []
    fix = renew if report.self_signed is not False else \
        "renew it with the authority that issued it, then svctl reload jupyterhub"
    if report.not_after is not None:
        left = report.not_after - now
        date = f"{report.not_after:%Y-%m-%d}"
        if left <= datetime.timedelta(0):
            ago = (now - report.not_after).days
            findings.append(Finding(ERROR, "cert-expired", f"certificate {cert} expired "
                                    f"{_days(ago) + ' ago' if ago else 'less than a day ago'} ({date}): "
                                    "browsers refuse the hub", fix))
        elif left < EXPIRY_WARNING:
            when = f"in {_days(left.days)}" if left.days else "within a day"
            findings.append(Finding(WARNING, "cert-expiring", f"certificate {cert} expires {when} ({date})", fix))
    if report.not_before is not None and report.not_before > now:
        findings.append(Finding(ERROR, "cert-not-yet-valid", f"certificate {cert} is not valid before "
                                f"{report.not_before:%Y-%m-%d %H:%M} UTC: browsers refuse it (is the clock right?)",
                                fix))
    return findings


def _days(count: int) -> str:
    return f"{count} day{'s' if count != 1 else ''}"
