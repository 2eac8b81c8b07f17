"""``svctl init jupyterhub --renew-cert``: a new self-signed pair in place of the one being served.

Which pair: the one the hub config names (``c.JupyterHub.ssl_cert``/``ssl_key``), or in external-proxy
mode the one the jupyterhub-proxy service's command names; a relative path resolves against the
working directory of the service that opens it, as the doctor resolves it. Only svctl's kind of
certificate is replaced: one self-signed certificate. A CA's certificate, or a file holding a chain
(several certificates), is left alone with the reason. Then whatever serves it is restarted if it
runs: it reads the certificate only when it starts, and the certificate is not a watched file, so
a reload would say "unchanged". (Options parsed by supervisor/commands/init.py's InitArgs.)
"""

from __future__ import annotations

import os
import re

from supervisor.errors import Exit, SvctlError

PREFIX = "init jupyterhub --renew-cert"
CERTIFICATE_BLOCK = re.compile(rb"-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----.*?-----END [A-Z0-9 ]*-----", re.S)


def renew_cert(context, options) -> int:
    from supervisor.commands.init import config_is_external, host_addresses, require_root
    from supervisor.jupyterhub import certs, scaffold

    layout = scaffold.Layout.under(options.prefix, context.config_dir)
    require_root(layout.prefix, f"it replaces the certificate in {layout.ssl_dir}")
    external = config_is_external(layout.config_path) is True and os.path.exists(layout.proxy_service_file)
    cert, key, bind_url = _served_pair(layout, external)
    try:
        ip = scaffold.check_ip(options.ip or _url_ip(bind_url) or scaffold.default_ip(host_addresses()))
    except scaffold.InitError as exc:
        raise SvctlError(f"init jupyterhub: {exc}", Exit.BAD_ARGS) from None
    existing = _read_certificate(cert)
    if existing is not None:
        _judge(cert, existing)
    try:
        certs.generate(cert, key, ip)
    except (OSError, certs.CertError) as exc:
        raise SvctlError(f"{PREFIX}: {exc}") from None
    names = list(dict.fromkeys([ip, "::1", "localhost"]))  # what certs writes into subjectAltName
    shown = ", ".join(names[:-1]) + " and " + names[-1]
    print(f"renewed: {cert} and {key} (self-signed for {shown}, {certs.VALID_DAYS} days)")
    _restart_servers(context, layout, external)
    return Exit.OK


def _judge(cert: str, data: bytes) -> None:
    """Refuse what svctl did not make: the leaf (the first certificate) issued by someone else, or
    a chain (a leaf with its CA's certificates: renewing it would drop them)."""
    blocks = CERTIFICATE_BLOCK.findall(data)
    if not blocks:
        raise _not_pem(cert)
    issuer, subject = _issuer_and_subject(cert, blocks[0])
    if issuer != subject:
        raise SvctlError(f"{PREFIX}: {cert} was issued by {issuer}, not self-signed: renew it with that CA "
                         "(svctl replaces only a self-signed certificate)")
    if len(blocks) > 1:
        raise SvctlError(f"{PREFIX}: {cert} holds {len(blocks)} certificates, a chain: not svctl's self-signed "
                         "pair; renew it where it came from (svctl replaces only a single self-signed certificate)")


def _resolved(value: str, service: str, layout) -> str:
    """VALUE as the service that opens it sees it: relative to its working_directory (the doctor's rule)."""
    if os.path.isabs(value):
        return value
    from supervisor.config import load

    try:
        directory = load(service, layout.config_dir).working_directory
    except SvctlError as exc:
        raise SvctlError(f"{PREFIX}: {value!r} is relative to {service}'s working_directory, which is not "
                         f"known: {exc}") from None
    return os.path.normpath(os.path.join(directory, value))


def _served_pair(layout, external: bool) -> tuple[str, str, str | None]:
    """(certificate, key, bind URL) as the config (external mode: the proxy's service file) names them,
    else init's own paths; a value the config computes (not a literal) is not guessed at."""
    from supervisor.jupyterhub.pyconfig import read_config

    cert, key, bind_url = layout.cert, layout.key, None
    try:
        hub = read_config(layout.config_path)
    except (OSError, ValueError):
        hub = None
    if hub is not None:
        bind_url = hub.get("JupyterHub.bind_url") if isinstance(hub.get("JupyterHub.bind_url"), str) else None
        for trait in ("ssl_cert", "ssl_key"):
            value = hub.get(f"JupyterHub.{trait}", None)
            if value is not None and not isinstance(value, str):
                raise SvctlError(f"{PREFIX}: c.JupyterHub.{trait} in {layout.config_path} "
                                 "is computed, so which file to replace is not known; renew it by hand")
        cert = _resolved(hub.get("JupyterHub.ssl_cert", cert), "jupyterhub", layout)
        key = _resolved(hub.get("JupyterHub.ssl_key", key), "jupyterhub", layout)
    if external:
        from supervisor.config import load

        from supervisor.jupyterhub.external_proxy import tls_files

        proxy = load("jupyterhub-proxy", layout.config_dir)
        served = tls_files(proxy.command, proxy.working_directory)
        cert, key = served[0] or cert, served[1] or key
    return cert, key, bind_url


def _url_ip(url: str | None) -> str | None:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname if url else None
    except ValueError:
        return None
    return host if host and (":" in host or host.replace(".", "").isdigit()) else None


def _read_certificate(path: str) -> bytes | None:
    """The certificate's bytes (None when there is none yet), read as whoever controls its directory:
    the config names the file, and a FIFO or a link planted there is refused, never followed."""
    from supervisor.unix import userfiles

    try:
        return userfiles.read_bytes(path, 1 << 20)
    except OSError as exc:
        raise SvctlError(f"{PREFIX}: cannot read {path}: {userfiles.describe(exc)}") from None


def _not_pem(path: str) -> SvctlError:
    return SvctlError(f"{PREFIX}: {path} is not a PEM certificate; it is left alone (move it away and run "
                      "the command again to make a new one)")


def _issuer_and_subject(path: str, data: bytes) -> tuple[str, str]:
    """The (first) certificate's issuer and subject names; one that cannot be parsed is refused."""
    try:
        from cryptography import x509
    except ImportError:
        return _issuer_and_subject_openssl(data, _not_pem(path))
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise _not_pem(path) from None
    return certificate.issuer.rfc4514_string(), certificate.subject.rfc4514_string()


def _issuer_and_subject_openssl(data: bytes, not_pem: SvctlError) -> tuple[str, str]:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise SvctlError(f"{PREFIX}: neither the cryptography package nor openssl is installed, so the "
                         "certificate's issuer cannot be checked")
    done = subprocess.run([openssl, "x509", "-noout", "-issuer", "-subject", "-nameopt", "RFC2253"], input=data,
                          capture_output=True, timeout=30, check=False)
    lines = done.stdout.decode("utf-8", errors="replace").splitlines()
    names = dict(line.partition("=")[::2] for line in lines if "=" in line)
    if done.returncode != 0 or "issuer" not in names or "subject" not in names:
        raise not_pem
    return names["issuer"].strip(), names["subject"].strip()


# Why each service is restarted: in external mode the hub serves no TLS; it is restarted because a
# new proxy starts with no routes, and the hub's start puts them back at once (costing users nothing).
WHY = {"serves": ("restarting, so that it serves the new certificate",
                  "not running; it uses the new certificate when it starts"),
       "routes": ("restarting, so that it puts the user routes back into the new proxy at once (the proxy "
                  "serves the certificate, not the hub)",
                  "not running; it puts its routes into the new proxy when it starts")}


def _restart_servers(context, layout, external: bool) -> None:
    """Restart what serves TLS, if it runs. External mode: the proxy, then the hub (see WHY)."""
    from supervisor import config as configuration
    from supervisor.cli import Context
    from supervisor.commands import lifecycle
    from supervisor.observe import observe

    run_dir = layout.run_dir if layout.prefix else context.run_dir
    scope = Context(layout.config_dir, run_dir)
    order = [("jupyterhub-proxy", "serves"), ("jupyterhub", "routes")] if external else [("jupyterhub", "serves")]
    for name, why in order:
        try:
            service = configuration.load(name, layout.config_dir)
        except SvctlError as exc:
            print(f"{name}: {exc}; restart whatever serves the certificate yourself")
            return
        if not lifecycle.is_running(observe(service, run_dir)):
            print(f"{name}: {WHY[why][1]}")
            return
        if why == "routes" and "jupyterhub-proxy" in service.requires:
            return  # the proxy's restart restarted it after itself (requires = ["jupyterhub-proxy"])
        print(f"{name}: {WHY[why][0]}")
        code = lifecycle.restart(scope, [name])
        if code != Exit.OK:
            raise SvctlError(f"{PREFIX}: the certificate is new, but restarting {name} failed (exit {code}): "
                             f"see svctl status {name}", code)
