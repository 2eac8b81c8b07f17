"""The systemd unit's process-settings lines (review item 1): systemd applies a unit's Limit*=,
UMask= and Nice= to ExecStart, i.e. to `svctl run` itself. Limits that would bound the supervisor
(cpu: SIGXCPU; fsize: its own log writes; as/data/rss/stack: its memory; a small nofile: it could
not spawn) are only comments in the unit; svctl applies every setting to the service itself."""

from __future__ import annotations

import pytest

from supervisor import boot
from supervisor.config import parse


def unit_text(extra: str) -> str:
    config = parse("demo", "/etc/svctl/demo.toml", b'command = ["/bin/sleep", "1000"]\n' + extra.encode())
    return boot.render_systemd_unit(config, "/usr/sbin/svctl", "/etc/svctl", "/run/svctl").text


def directive_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Limit", "UMask=", "Nice=", "Supplementary"))]


@pytest.mark.parametrize("key, value, line", [
    ("cpu", "3", "LimitCPU=3"), ("fsize", "1000", "LimitFSIZE=1000"), ("as", "100000000", "LimitAS=100000000"),
    ("data", "100000000", "LimitDATA=100000000"), ("rss", "100000000", "LimitRSS=100000000"),
    ("stack", "8388608", "LimitSTACK=8388608"), ("nofile", "16", "LimitNOFILE=16"),
    ("nofile", "[16, 4096]", "LimitNOFILE=16:4096"),
])
def test_limits_that_would_bound_the_supervisor_are_only_comments(key, value, line):
    text = unit_text(f"limits = {{ {key} = {value} }}\n")
    assert directive_lines(text) == []
    assert f"\n# {line}: not set here, systemd would apply it to svctl run itself; " \
           "svctl applies it to the service only\n" in text


@pytest.mark.parametrize("key, value, line", [
    ("core", '"infinity"', "LimitCORE=infinity"), ("memlock", "65536", "LimitMEMLOCK=65536"),
    ("msgqueue", "819200", "LimitMSGQUEUE=819200"), ("nice", "0", "LimitNICE=0"),
    ("rtprio", "0", "LimitRTPRIO=0"), ("rttime", '"unlimited"', "LimitRTTIME=infinity"),
    ("sigpending", "1000", "LimitSIGPENDING=1000"), ("locks", "100", "LimitLOCKS=100"),
    ("nproc", "5000", "LimitNPROC=5000"), ("nofile", "1024", "LimitNOFILE=1024"),
    ("nofile", "[1024, 4096]", "LimitNOFILE=1024:4096"), ("nofile", "65536", "LimitNOFILE=65536"),
])
def test_limits_harmless_to_the_supervisor_are_directives(key, value, line):
    assert directive_lines(unit_text(f"limits = {{ {key} = {value} }}\n")) == [line]


def test_umask_nice_and_groups_stay_directives_in_order_with_a_commented_limit_between():
    text = unit_text('umask = "0077"\nnice = 5\ngroups = ["root"]\nlimits = { cpu = 3, nofile = 4096 }\n')
    assert directive_lines(text) == ["UMask=0077", "Nice=5", "SupplementaryGroups=root", "LimitNOFILE=4096"]
    assert "\n# LimitCPU=3: not set here" in text


def test_no_process_settings_no_lines():
    text = unit_text("")
    assert directive_lines(text) == [] and "process settings" not in text
