"""etc/example.toml documents every key the parser knows, and parses."""

import re
from pathlib import Path

from supervisor import config

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "example.toml"


def test_example_parses():
    parsed = config.parse("jupyterhub", str(EXAMPLE), EXAMPLE.read_bytes())
    assert parsed.preset == "jupyterhub" and parsed.stop_text == "TERM/30/KILL/5"


def test_example_documents_every_key_with_its_default():
    text = EXAMPLE.read_text()
    for key in config.KEYS:
        assert re.search(rf"^#? ?{key} = .*# default:", text, re.M), f"{key} is not documented with its default"
