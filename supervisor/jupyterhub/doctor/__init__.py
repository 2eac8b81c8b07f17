"""``svctl check jupyterhub``: what is wrong with a JupyterHub config, and the fix (pure rules).

Every rule is a function of the parsed config (pyconfig, never executed), the service definition and
``Facts`` gathered by probe.py, so each can be unit-tested with made-up facts. The facts behind
each rule are summarised in docs/jupyterhub.md (and in the rule's comment). The rules live in
facts (the types), network (addresses, ports, kernels), files (options, state, TLS), programs
(executables, stop timing, accounts, what a root hub runs) and values (NUL bytes, URLs and ports
that cannot work); this module runs them all and re-exports their names.
"""

from __future__ import annotations

from supervisor.config import ServiceConfig
from supervisor.jupyterhub.doctor.facts import (AS_ROOT, ERROR, INFO, SEVERITY_ORDER, UNCHECKED, WARNING, Facts,
                                                Finding, HostFacts, PortState, Program, ProxyTls, unchecked)
from supervisor.jupyterhub.doctor.files import (deprecation_findings, expiry_findings, path_findings, resolve,
                                                tls_findings)
from supervisor.jupyterhub.doctor.network import (ADDRESS_SETTINGS, IPC_ARG, host_of, ipv6_findings,
                                                  kernel_findings, kernel_transport, port_findings)
from supervisor.jupyterhub.doctor.programs import (auth_findings, hub_program_findings, hub_user_names,
                                                   stop_findings, tool_findings, trust_findings)
from supervisor.jupyterhub.doctor.values import value_findings
from supervisor.jupyterhub.pyconfig import ConfigFile

__all__ = [
    "ADDRESS_SETTINGS", "AS_ROOT", "ERROR", "INFO", "IPC_ARG", "SEVERITY_ORDER", "UNCHECKED", "WARNING", "Facts",
    "Finding", "HostFacts", "PortState", "Program", "ProxyTls", "auth_findings", "deprecation_findings", "diagnose",
    "expiry_findings", "host_of", "hub_program_findings", "hub_user_names", "ipv6_findings", "kernel_findings",
    "kernel_transport", "path_findings", "port_findings", "resolve", "stop_findings", "tls_findings",
    "tool_findings", "trust_findings", "unchecked", "value_findings",
]


def diagnose(config: ServiceConfig, hub: ConfigFile, facts: Facts, *, running_as_root: bool = True) -> list[Finding]:
    """All findings for one hub config, errors first, then warnings, what could not be checked, info (pure)."""
    if hub.syntax_error:
        return [Finding(ERROR, "syntax", f"not valid Python: {hub.syntax_error}", "fix the line; the hub exits 1 on it")]
    findings = (value_findings(hub) + hub_program_findings(facts, config) + trust_findings(facts)
                + ipv6_findings(hub, facts.host) + kernel_findings(hub, facts)
                + deprecation_findings(hub) + path_findings(hub, config) + tls_findings(hub, config, facts)
                + port_findings(facts) + tool_findings(hub, facts) + stop_findings(hub, config)
                + auth_findings(hub, config, running_as_root, facts))
    return sorted(findings, key=lambda finding: SEVERITY_ORDER[finding.severity])
