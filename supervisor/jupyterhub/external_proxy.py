"""``svctl init jupyterhub --proxy external``: configurable-http-proxy as a service of its own.

The hub then neither starts nor stops the proxy (``should_start = False``) and leaves user servers
running when it exits (``cleanup_servers = False``, as in every config init writes), so restarting
the hub, which is what every reload does, keeps the proxy, its routes and the user servers
answering (docs/jupyterhub.md, "Zero-disruption reloads"). Hub and proxy share ``CONFIGPROXY_AUTH_TOKEN``: a random token in a 0600 file, and in the
environment of both service files, which are therefore 0600 too.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.jupyterhub.scaffold import InitOptions, Layout

SERVICE = "jupyterhub"
PROXY_SERVICE = "jupyterhub-proxy"
TOKEN_VARIABLE = "CONFIGPROXY_AUTH_TOKEN"


def config_block(layout: Layout, options: InitOptions, templates: Path) -> str:
    """The lines the hub config gets in external mode (empty otherwise)."""
    if not options.external_proxy:
        return ""
    return Template((templates / "jupyterhub_proxy_external.tmpl").read_text()).substitute(
        proxy_service=PROXY_SERVICE, token_variable=TOKEN_VARIABLE,
        token_file=repr(layout.proxy_token_file))


def environment_line(options: InitOptions) -> str:
    """The service files' `environment`: PATH, plus the proxy's token in external mode."""
    pairs = [f"PATH = {json.dumps(options.path_env)}"]
    if options.external_proxy:
        pairs.append(f"{TOKEN_VARIABLE} = {json.dumps(options.proxy_token)}")
    return f"environment = {{ {', '.join(pairs)} }}"


def proxy_command(layout: Layout, options: InitOptions) -> list[str]:
    """configurable-http-proxy as the hub would start it, plus the hub as the default target."""
    hub = f"http://[::1]:{options.hub_port}"
    return [options.proxy or "/usr/local/bin/configurable-http-proxy",
            "--ip", options.ip, "--port", str(options.port),
            "--api-ip", "::1", "--api-port", str(options.api_port),
            "--default-target", hub, "--error-target", f"{hub}/hub/error",
            "--ssl-key", layout.key, "--ssl-cert", layout.cert]


def render_proxy_service(layout: Layout, options: InitOptions) -> str:
    """/etc/svctl/jupyterhub-proxy.toml: configurable-http-proxy supervised on its own (external mode)."""
    lines = [
        f"# {layout.proxy_service_file}: written by `svctl init jupyterhub --proxy external`.",
        f"# The proxy of the {SERVICE} service, supervised on its own so that restarting the hub (every",
        "# reload) keeps the proxy, its routes and the user servers answering. The hub requires it:",
        f"# `svctl start {SERVICE}` starts this first, `svctl stop {PROXY_SERVICE}` stops the hub first.",
        "# This file holds the proxy's API token (shared with the hub's service file), so it is 0600.",
        f"description = {json.dumps('configurable-http-proxy for JupyterHub')}",
        f"command = {json.dumps(proxy_command(layout, options))}",
        f"working_directory = {json.dumps(layout.state_dir)}",
        "# configurable-http-proxy is #!/usr/bin/env node: node must be on PATH.",
        environment_line(options),
        f"pidfile = {json.dumps(layout.proxy_pidfile)}",
        "# The proxy exits (code 2) on SIGTERM at once; it dies on SIGHUP and reads its certificate",
        "# only when it starts, so a reload is a restart (which drops open connections).",
        'stop = "TERM/10/KILL/5"',
        'reload = "restart"',
        'restart = "on-failure"',
        "# The REST API the hub talks to; the public port is checked by the hub's own readiness.",
        f"ready = {json.dumps(f'tcp://[::1]:{options.api_port}')}",
        "ready_timeout = 30",
        f"log_file = {json.dumps(layout.proxy_log_file)}",
    ]
    if layout.prefix:
        lines.append(f"events_file = {json.dumps(layout.proxy_events_file)}")
    return "\n".join(lines) + "\n"


def proxy_token(layout: Layout, *, force: bool = False) -> str:
    """The shared proxy token: the one already written (file, else a kept service file), else new.

    Reusing it keeps a second ``init`` (which keeps existing files) consistent: the hub and proxy
    service files and the token file must all hold the same value.
    """
    if not force:
        try:
            with open(layout.proxy_token_file, encoding="ascii") as handle:
                token = handle.read().strip()
            if token:
                return token
        except (OSError, UnicodeDecodeError):
            pass
        import tomllib

        for path in (layout.service_file, layout.proxy_service_file):
            try:
                with open(path, "rb") as handle:
                    token = tomllib.load(handle).get("environment", {}).get(TOKEN_VARIABLE)
            except (OSError, ValueError):
                continue
            if isinstance(token, str) and token:
                return token
    return secrets.token_hex(32)


def tls_files(command: tuple[str, ...] | list[str], working_directory: str) -> tuple[str | None, str | None]:
    """(certificate, key) the proxy service's command line serves (``--ssl-cert`` / ``--ssl-key``,
    as ``--name value`` or ``--name=value``, the last one winning), absolute; None where not given."""
    import os

    given: dict[str, str] = {}
    for index, word in enumerate(command):
        name, equals, value = word.partition("=")
        if equals and name.startswith("--"):
            given[name] = value
        elif word.startswith("--") and index + 1 < len(command):
            given[word] = command[index + 1]
    cert, key = given.get("--ssl-cert"), given.get("--ssl-key")
    return tuple(os.path.normpath(os.path.join(working_directory, path)) if path else None  # type: ignore[return-value]
                 for path in (cert, key))
