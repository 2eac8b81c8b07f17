"""supervisor.jsontext gives json's own text and values, without importing json (or re)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import jsontext

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_dumps_and_loads_agree_with_json(value):
    assert jsontext.dumps(value) == json.dumps(value)
    assert jsontext.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    text = json.dumps(value)
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', "[1,]", "nul", '"\\x"', "{'a': 1}", "\x00",
                                  '{"a": 1}{"b": 2}'])
def test_garbage_is_a_value_error_like_json(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_bytes_that_are_not_utf8_are_a_value_error():
    with pytest.raises(ValueError):
        jsontext.loads(b'{"a": "\xff"}')


def test_whitespace_and_constants_as_json_accepts_them():
    assert jsontext.loads(' \n{"a": [1, 2.5, true, null]}\n ') == {"a": [1, 2.5, True, None]}
    assert math.isnan(jsontext.loads("NaN")) and jsontext.loads("-Infinity") == -math.inf
    assert jsontext.dumps(math.inf) == "Infinity"


def test_default_renders_what_json_cannot():
    class Opaque:
        def __repr__(self):
            return "<opaque>"

    assert jsontext.dumps({"x": Opaque()}, default=repr) == json.dumps({"x": Opaque()}, default=repr)
    with pytest.raises(TypeError):
        jsontext.dumps({"x": Opaque()})
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError):
        jsontext.dumps(circular)


def test_imports_neither_json_nor_re():
    code = ("import sys; from supervisor import jsontext; jsontext.loads(jsontext.dumps({'a': [1]}));"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); {code}"],
                         capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ['{"state": "runn', '{"a" 1}', '{"a": "\\x"}', "[1, 2"])
def test_garbage_is_a_value_error_in_a_process_without_json(text):
    """The C scanner looks JSONDecodeError up in json.decoder if imported, else fails without an
    exception set (SystemError): both must be a ValueError, the only thing the readers catch."""
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from supervisor import jsontext\n"
            "try:\n    jsontext.loads(sys.argv[1])\nexcept ValueError:\n    print('ValueError')\n"
            "print('json' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, text, str(Path(__file__).resolve().parents[2])],
                         capture_output=True, text=True, cwd="/")
    assert out.stdout.split() == ["ValueError", "False"], out.stdout + out.stderr
