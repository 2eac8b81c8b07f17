"""The events file keeps structlog's format without importing structlog in the supervisor.

structlog (a test dependency) renders the same event through the processors the supervisor used
before: add_log_level, TimeStamper(fmt="iso", utc=True), JSONRenderer. Lines must be equal.
"""

import json

import pytest
import structlog

from supervisor.log import json_line


class _Capture:
    def __init__(self):
        self.lines = []

    def msg(self, message):
        self.lines.append(message)

    info = warning = error = debug = msg


def structlog_line(name, level, fields, now, monkeypatch):
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.fromtimestamp(now, tz)

        @classmethod
        def utcnow(cls):
            return datetime.datetime.utcfromtimestamp(now)

    monkeypatch.setattr(datetime, "datetime", Frozen)
    sink = _Capture()
    logger = structlog.wrap_logger(sink, processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(sort_keys=False)])
    getattr(logger, level)(name, **fields)
    return sink.lines[0]


class Opaque:
    def __repr__(self):
        return "<opaque>"


@pytest.mark.parametrize("now", [1764632271.594220, 1764632271.0, 1764632271.000001])
@pytest.mark.parametrize("level", ["info", "warning", "error"])
def test_lines_equal_structlogs(now, level, monkeypatch):
    fields = {"service": "web", "pid": 42, "reason": "exit status 1", "clean": False,
              "argv": ["a", "é"], "nested": {"k": None}, "odd": Opaque()}
    ours = json_line("exited", level, fields, now)
    theirs = structlog_line("exited", level, fields, now, monkeypatch)
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs


def test_field_order_and_timestamp():
    line = json_line("spawned", "info", {"service": "web", "pid": 7}, 0.5)
    assert line == ('{"service": "web", "pid": 7, "event": "spawned", "level": "info", '
                    '"timestamp": "1970-01-01T00:00:00.500000Z"}')
