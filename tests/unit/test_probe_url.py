"""probe.tcp_address reads a tcp:// URL as urlsplit does (the probe no longer imports urllib)."""

from urllib.parse import urlsplit

import pytest

from supervisor.config_values import ready_url
from supervisor.unix.probe import tcp_address


@pytest.mark.parametrize("url", ["tcp://[::1]:9443", "tcp://127.0.0.1:80", "tcp://LocalHost:1/", "tcp://[fe80::1%25lo]:22",
                                 "tcp://example.org:65535/path?x=1", "tcp://[2001:db8::1]:8081?q"])
def test_tcp_address_agrees_with_urlsplit(url):
    assert ready_url(url, ValueError) == url  # a URL the config accepts
    parts = urlsplit(url)
    assert tcp_address(url) == (parts.hostname.encode(), parts.port)
