"""JSON for the hot paths, from the interpreter's C scanner and encoder, without ``import json``.

``svctl status`` reads state.json and the supervisor writes it and its events on every change.
``import json`` costs them far more than the parsing: json.decoder and json.encoder compile
regular expressions at import, which pulls in ``re`` and ``enum``: about 1 MB of memory and a
third of status's run time beyond the bare interpreter (docs/architecture.md, "Import budgets").
The scanner and encoder those modules wrap are C functions in ``_json``; ``loads`` and ``dumps``
here call them directly with the settings json's defaults use, so the text and the values are
json's own (tests/unit/test_jsontext.py compares them). Where ``_json`` lacks them (an
interpreter built without it), json itself is used.

Only what the hot paths need: ``loads(text)`` of a ``str`` or UTF-8 ``bytes``; ``dumps(value, default=None,
compact=False)`` with json's default separators, or ``(",", ":")`` when COMPACT.
"""

from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _escape
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has them
    _make_scanner = None


class _Settings:
    """What the C scanner reads from its context (json.JSONDecoder's attributes, defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float  # the C scanner's fast paths are taken for exactly float and int
    parse_int = int
    parse_constant = staticmethod(float)  # NaN, Infinity, -Infinity, as json.loads accepts them


_WHITESPACE = " \t\n\r"

if _make_scanner is not None:
    _scan = _make_scanner(_Settings())

    def loads(text: str | bytes):
        """The value of a JSON document (bytes: UTF-8); ValueError (json.JSONDecodeError, or
        UnicodeDecodeError) when it is not one."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration as stop:  # nothing that starts a value at START
            raise ValueError(f"Expecting value: char {stop.value}") from None
        except SystemError:
            # The scanner raises json.decoder.JSONDecodeError, which it looks up among the
            # modules already imported: without json, a syntax error is a SystemError ("error
            # return without exception set"). It is still a syntax error.
            raise ValueError("not valid JSON") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return value

    def _raise_type_error(value):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def dumps(value, default=None, compact: bool = False) -> str:
        """json.dumps(VALUE, default=DEFAULT[, separators=(",", ":")]) with every other argument
        left at json's default (ASCII output, NaN allowed, keys in the dict's order)."""
        item_separator, key_separator = (",", ":") if compact else (", ", ": ")
        encode = _make_encoder({}, default or _raise_type_error, _escape, None, key_separator,
                               item_separator, False, False, True)
        return "".join(encode(value, 0))
else:  # pragma: no cover
    import json as _json_module

    def loads(text: str | bytes):
        return _json_module.loads(text)

    def dumps(value, default=None, compact: bool = False) -> str:
        return _json_module.dumps(value, default=default, separators=(",", ":") if compact else None)
