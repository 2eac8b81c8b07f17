"""Crash backoff is a pure function of the history and the (fake) clock."""

from supervisor.core.backoff import BackoffPolicy, FailureHistory, GiveUp, RestartAt, decide

POLICY = BackoffPolicy(min_uptime=1.0, initial=0.1, maximum=0.5, give_up_after=5, window=10, cooldown=60)


def test_a_healthy_run_restarts_immediately_and_resets_the_streak():
    history = FailureHistory(times=[1.0, 2.0], streak=2)
    assert decide(POLICY, history, started=100.0, now=105.0) == RestartAt(105.0, 0.0)
    assert history.streak == 0 and history.times == []


def test_quick_failures_double_up_to_the_cap():
    history, now, delays = FailureHistory(), 100.0, []
    for _ in range(4):
        decision = decide(POLICY, history, started=now - 0.1, now=now)
        delays.append(decision.delay)
        now += 1.0  # spread out, but inside the 10 s window
    assert delays == [0.1, 0.2, 0.4, 0.5]


def test_give_up_after_n_quick_failures_within_the_window():
    history = FailureHistory()
    decisions = [decide(POLICY, history, started=t - 0.1, now=t) for t in (100.0, 101.0, 102.0, 103.0, 104.0)]
    assert isinstance(decisions[-1], GiveUp)
    assert decisions[-1].retry_at == 164.0 and "5 quick failures within 10s" in decisions[-1].reason
    assert history.times == []  # after the cool-down the service gets a fresh set of tries


def test_failures_outside_the_window_do_not_count():
    history = FailureHistory()
    for t in (100.0, 120.0, 140.0, 160.0, 180.0, 200.0):
        assert isinstance(decide(POLICY, history, started=t - 0.1, now=t), RestartAt)


def test_a_spawn_that_failed_always_backs_off_even_with_min_uptime_zero():
    """No tight loop when the service cannot even be spawned (the fd limit, say)."""
    policy = BackoffPolicy(min_uptime=0.0, initial=0.1, maximum=1.0, give_up_after=0)
    history = FailureHistory()
    first = decide(policy, history, 10.0, 10.0, ran=False)
    second = decide(policy, history, 10.1, 10.1, ran=False)
    assert (first.delay, second.delay) == (0.1, 0.2)
    assert decide(policy, history, 11.0, 11.0).delay == 0.0  # a run that happened resets it
