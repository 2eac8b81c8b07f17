"""The debouncer with a fake clock: bursts collapse, max_delay bounds starvation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.debounce import Debouncer

T0 = 1000.0


def simulate(debouncer: Debouncer, kicks: list[float]) -> list[float]:
    """Run the loop the runtime would: wake at each kick and at each deadline; return firing times."""
    firings: list[float] = []
    pending = sorted(kicks)
    while pending or debouncer.pending:
        deadline = debouncer.deadline()
        if pending and (deadline is None or pending[0] < deadline):
            debouncer.kick(pending.pop(0))
            continue
        assert deadline is not None
        assert debouncer.take(deadline)
        firings.append(deadline)
    return firings


def test_idle_has_no_deadline_and_is_never_due():
    d = Debouncer(0.3, 1.0)
    assert d.deadline() is None
    assert not d.due(T0)
    assert not d.take(T0 + 100)


def test_single_kick_fires_once_after_delay():
    d = Debouncer(0.3, 1.0)
    d.kick(T0)
    assert d.deadline() == pytest.approx(T0 + 0.3)
    assert not d.take(T0 + 0.29)
    assert d.take(T0 + 0.3)
    assert not d.take(T0 + 0.31), "a burst fires exactly once"
    assert d.deadline() is None


def test_each_kick_pushes_the_deadline_back_until_max_delay():
    d = Debouncer(0.3, 1.0)
    d.kick(T0)
    d.kick(T0 + 0.2)
    assert d.deadline() == pytest.approx(T0 + 0.5)
    d.kick(T0 + 0.9)
    assert d.deadline() == pytest.approx(T0 + 1.0), "capped at first kick + max_delay"


def test_burst_of_100_writes_in_one_second_fires_at_most_twice():
    kicks = [T0 + i * 0.01 for i in range(100)]  # 0.00 .. 0.99
    firings = simulate(Debouncer(0.3, 1.0), kicks)
    assert 1 <= len(firings) <= 2
    assert firings[-1] >= kicks[-1], "the last write is covered by a firing"


def test_continuous_writes_are_not_starved():
    kicks = [T0 + i * 0.05 for i in range(200)]  # 10 s of writes every 50 ms
    firings = simulate(Debouncer(0.3, 1.0), kicks)
    assert firings[0] == pytest.approx(T0 + 1.0)
    gaps = [b - a for a, b in zip(firings, firings[1:], strict=False)]
    assert max(gaps) <= 1.0 + 1e-9


def test_cancel_forgets_the_burst():
    d = Debouncer(0.3, 1.0)
    d.kick(T0)
    d.cancel()
    assert not d.pending and not d.take(T0 + 5)


def test_out_of_order_kick_does_not_move_deadline_earlier():
    d = Debouncer(0.3, 5.0)
    d.kick(T0 + 1.0)
    d.kick(T0 + 0.5)
    assert d.deadline() == pytest.approx(T0 + 1.3)


def test_negative_delays_are_refused_and_small_max_is_clamped():
    with pytest.raises(ValueError):
        Debouncer(-1, 1)
    assert Debouncer(0.5, 0.1).max_delay == 0.5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.29, allow_nan=False), min_size=1, max_size=300))
def test_any_dense_burst_fires_at_most_twice_per_max_delay_and_covers_the_last_kick(gaps):
    """Writes closer together than ``delay`` are one burst: ceil(span / max_delay) + 1 firings at most."""
    kicks, now = [], T0
    for gap in gaps:
        now += gap
        kicks.append(now)
    firings = simulate(Debouncer(0.3, 1.0), kicks)
    span = kicks[-1] - kicks[0]
    assert 1 <= len(firings) <= int(span // 1.0) + 2
    if span <= 1.0:
        assert len(firings) <= 2
    assert firings[-1] >= kicks[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=5.0, allow_nan=False), min_size=1, max_size=100))
def test_every_kick_is_followed_by_a_firing_no_later_than_max_delay(offsets):
    kicks = sorted(T0 + o for o in offsets)
    firings = simulate(Debouncer(0.3, 1.0), kicks)
    for kick in kicks:
        assert any(kick <= f <= kick + 1.0 for f in firings)
