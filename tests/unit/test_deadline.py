"""supervisor.core.deadline: long waits are split so the kernel's timer slack can't make them late."""

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.deadline import MAX_EARLY, sleep_for


def test_no_deadline_means_wait_forever():
    assert sleep_for(None) is None


def test_short_waits_are_taken_whole_and_past_deadlines_not_at_all():
    assert sleep_for(0.005) == 0.005
    assert sleep_for(-1.0) == 0.0


def test_a_30_second_wait_wakes_early_by_more_than_the_kernels_slack():
    first = sleep_for(30.0)
    assert 30.0 - first > 30.0 * 0.001  # the kernel may add 0.1 %: 30 ms
    assert sleep_for(30.0 - first) < 0.07  # the rest is one short, precise wait


@given(st.floats(min_value=0.0, max_value=2073600.0))
def test_a_wait_never_overshoots_and_always_makes_progress(remaining):
    timeout = sleep_for(remaining)
    assert 0.0 <= timeout <= remaining
    assert remaining - timeout <= MAX_EARLY + 1e-9
    if remaining > 0.01:
        assert timeout + min(remaining * 0.001, 0.1) < remaining  # even a maximally late wake is early


def test_stop_waits_end_a_little_early_so_an_external_same_schedule_never_wins():
    from supervisor.core.deadline import stop_lead

    assert stop_lead(30.0) == 0.06
    assert stop_lead(1.0) == 0.02
    assert stop_lead(0.0) == 0.0 and stop_lead(-1.0) == 0.0
