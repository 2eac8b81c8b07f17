"""Stop schedules: start-stop-daemon --retry syntax, parsed and formatted."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.schedule import Schedule, ScheduleError, Send, Wait, format_schedule, parse_schedule
from supervisor.core.signals import NUMBERS


@pytest.mark.parametrize("text, steps, repeat", [
    ("TERM/30/KILL/5", (Send(15), Wait(30), Send(9), Wait(5)), None),
    ("30", (Send(15), Wait(30), Send(9), Wait(30)), None),
    ("0/30/KILL/5", (Wait(0), Wait(30), Send(9), Wait(5)), None),  # 0 is a timeout, not signal 0
    ("-HUP/1/-9/2", (Send(1), Wait(1), Send(9), Wait(2)), None),
    ("TERM/0.5/KILL/1", (Send(15), Wait(0.5), Send(9), Wait(1)), None),
    ("HUP/1/forever/TERM/2", (Send(1), Wait(1), Send(15), Wait(2)), 2),
    ("USR1/1/KILL/1", (Send(10), Wait(1), Send(9), Wait(1)), None),
])
def test_parses_start_stop_daemon_syntax(text, steps, repeat):
    """Each form start-stop-daemon accepts means the same thing here."""
    assert parse_schedule(text) == Schedule(steps, repeat)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("TERM", "must be a timeout"),
    ("SIGTERM/30", "no SIG prefix"),
    ("TREM/30", "not a signal name"),
    ("TERM/KILL", "end with a timeout"),
    ("forever/TERM/2/forever/3", "only once"),
    ("TERM/3/forever", "cannot be the last"),
    ("TERM//3", "empty item"),
    ("-0/3", "out of range"),
    ("TERM/x3", "not a signal name"),
    ("TERM/1e3", "not a timeout"),
    ("1/2", "sends no signal"),
    ("TERM/99999999999", "longer than 2073600 s"),  # issue 10 item 9: OverflowError in the supervisor
    ("2073601", "longer than 2073600 s"),
    ("TERM/" + "9" * 400, "longer than"),
    ("/".join(["TERM/1"] * 33), "at most 64"),
])
def test_rejects_invalid_schedules_with_the_reason(text, reason):
    """An invalid schedule is refused, and the message says why."""
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(text)


def test_the_longest_timeout_is_accepted():
    assert parse_schedule("TERM/2073600/KILL/1").total_seconds == 2073601


def test_total_seconds():
    assert parse_schedule("TERM/30/KILL/5").total_seconds == 35
    assert parse_schedule("TERM/1/forever/KILL/1").total_seconds is None


def test_step_after_loops_back_after_forever():
    schedule = parse_schedule("TERM/1/forever/KILL/2")
    assert [schedule.step_after(i) for i in range(4)] == [1, 2, 3, 2]


signals = st.sampled_from(sorted(NUMBERS.values())) | st.integers(1, 64)
seconds = st.integers(0, 3600).map(float) | st.sampled_from([0.5, 0.25, 1.5])
steps = st.lists(st.one_of(signals.map(Send), seconds.map(Wait)), min_size=1, max_size=8)


@st.composite
def schedules(draw):
    body = draw(steps)
    body.append(Wait(draw(seconds)))
    if not any(isinstance(step, Send) for step in body):
        body.insert(0, Send(draw(signals)))
    repeat = draw(st.none() | st.integers(0, len(body) - 1))
    return Schedule(tuple(body), repeat)


@given(schedules())
def test_format_then_parse_round_trips(schedule):
    """parse(format(s)) == s for every valid schedule."""
    assert parse_schedule(format_schedule(schedule)) == schedule


@given(schedules())
def test_formatted_text_is_canonical(schedule):
    """format(parse(text)) == text for the canonical spelling."""
    text = format_schedule(schedule)
    assert format_schedule(parse_schedule(text)) == text
