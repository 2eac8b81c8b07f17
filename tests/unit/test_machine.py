"""The supervisor state machine, driven by event histories and a fake clock (no processes)."""

import itertools

import pytest

from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy
from supervisor.core.machine import TRANSITIONS, IllegalTransition, Machine, Policy, State
from supervisor.core.schedule import parse_schedule


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self.now += seconds
        return self.now


def make(schedule="TERM/30/KILL/5", **policy):
    policy.setdefault("backoff", BackoffPolicy(min_uptime=1.0, initial=0.1, maximum=1.0, give_up_after=4,
                                               window=60, cooldown=300))
    return Machine(Policy(parse_schedule(schedule), **policy)), FakeClock()


def kinds(effects):
    return [type(effect).__name__ for effect in effects]


def without_logs(effects):
    return [effect for effect in effects if not isinstance(effect, ev.Log)]


def start_running(machine, clock, pid=100):
    machine.handle(ev.Start("cli"), clock.now)
    machine.handle(ev.Spawned(pid), clock.now)
    clock.advance(machine.policy.start_seconds)
    return machine.handle(ev.Timer("started"), clock.now)


def test_start_without_probe_counts_as_started_after_start_seconds():
    """Spawned is not started: the service must stay up start_seconds first."""
    machine, clock = make()
    assert machine.handle(ev.Start("cli"), clock.now) == [ev.CancelTimer("restart"), ev.CancelTimer("retry"),
                                                         ev.Spawn("initial")]
    effects = machine.handle(ev.Spawned(100), clock.now)
    assert ev.ArmTimer("started", 1000.5) in effects
    assert machine.state is State.STARTING
    clock.advance(0.5)
    effects = machine.handle(ev.Timer("started"), clock.now)
    assert machine.state is State.RUNNING
    assert ev.Reply("cli", 0, "started") in effects
    assert ev.Notify("READY=1") in effects and ev.SaveGood() in effects


def test_start_with_probe_waits_for_ready():
    machine, clock = make(ready_timeout=60)
    machine.handle(ev.Start("cli"), clock.now)
    effects = machine.handle(ev.Spawned(100), clock.now)
    assert ev.StartProbe() in effects and ev.ArmTimer("ready", 1060) in effects
    clock.advance(4.2)
    effects = machine.handle(ev.Ready(), clock.now)
    assert machine.state is State.RUNNING and machine.ready_at == 1004.2
    assert ev.StopProbe() in effects and ev.Reply("cli", 0, "started") in effects


def test_exit_during_initial_start_fails_the_start_and_ends_the_supervisor():
    """S8: the daemon dies at startup -> start reports it, nothing stays behind."""
    machine, clock = make()
    machine.handle(ev.Start("cli"), clock.now)
    machine.handle(ev.Spawned(100), clock.now)
    effects = machine.handle(ev.Exited(100, "exit status 1", clean=False), clock.now)
    assert ev.Reply("cli", 1, "failed to start: exit status 1") in effects
    assert ev.ExitSupervisor(1) in effects
    assert machine.state is State.STOPPED


def test_not_ready_in_time_stops_the_service_then_fails():
    machine, clock = make("TERM/2/KILL/1", ready_timeout=10)
    machine.handle(ev.Start("cli"), clock.now)
    machine.handle(ev.Spawned(100), clock.now)
    clock.advance(10)
    effects = machine.handle(ev.Timer("ready"), clock.now)
    assert ev.Signal(15, cont=True) in effects and ev.ArmTimer("stop", 1012) in effects
    effects = machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    assert ev.Reply("cli", 1, "failed to start: not ready within 10s") in effects
    assert ev.ExitSupervisor(1) in effects


def test_stop_runs_the_schedule_term_wait_kill_wait():
    """TERM, 30 s, KILL, 5 s: each step only after the previous timed out."""
    machine, clock = make()
    start_running(machine, clock)
    effects = without_logs(machine.handle(ev.Stop("cli"), clock.now))
    assert effects[-2:] == [ev.Signal(15, cont=True), ev.ArmTimer("stop", clock.now + 30)]
    clock.advance(30)
    assert without_logs(machine.handle(ev.Timer("stop"), clock.now)) == [ev.Signal(9, cont=True),
                                                                          ev.ArmTimer("stop", 1035.5)]
    effects = machine.handle(ev.Exited(100, "killed by SIGKILL", clean=False), clock.now)
    assert ev.Reply("cli", 0, "stopped") in effects and ev.ExitSupervisor(0) in effects


def test_a_process_that_outlives_the_schedule_fails_the_stop_and_stays_supervised():
    machine, clock = make("TERM/1/KILL/1")
    start_running(machine, clock)
    machine.handle(ev.Stop("cli"), clock.now)
    machine.handle(ev.Timer("stop"), clock.advance(1))
    effects = machine.handle(ev.Timer("stop"), clock.advance(1))
    assert [e for e in effects if isinstance(e, ev.Reply)][0].code == 1
    assert ev.ExitSupervisor(0) not in effects
    assert machine.state is State.RUNNING and "still running" in machine.stop_failed
    # it finally dies: the stop completes, it is not restarted
    effects = machine.handle(ev.Exited(100, "killed by SIGKILL", clean=False), clock.advance(5))
    assert ev.ExitSupervisor(0) in effects and not any(isinstance(e, ev.Spawn) for e in effects)


def test_forever_repeats_the_tail_of_the_schedule():
    machine, clock = make("TERM/1/forever/KILL/1")
    start_running(machine, clock)
    machine.handle(ev.Stop(), clock.now)
    signals = []
    for _ in range(4):
        signals += [e.signal for e in machine.handle(ev.Timer("stop"), clock.advance(1)) if isinstance(e, ev.Signal)]
    assert signals == [9, 9, 9, 9]
    assert machine.state is State.STOPPING


def test_leftover_group_members_get_the_same_schedule():
    """After the main process is gone, what is left of its process group is stopped too."""
    machine, clock = make("TERM/1/KILL/1")
    start_running(machine, clock)
    machine.handle(ev.Stop("cli"), clock.now)
    effects = machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False, group_alive=True), clock.now)
    assert ev.AwaitGroup() in effects and ev.Signal(15, group=True, cont=True) in effects
    effects = machine.handle(ev.GroupGone(), clock.advance(0.1))
    assert ev.ExitSupervisor(0) in effects


def test_crash_after_a_healthy_run_restarts_at_once():
    machine, clock = make()
    start_running(machine, clock)
    clock.advance(10)
    effects = machine.handle(ev.Exited(100, "killed by SIGKILL", clean=False), clock.now)
    assert ev.Spawn("restart") in effects and machine.restarts == 1


def test_quick_failures_back_off_exponentially_then_give_up_then_retry():
    machine, clock = make(restart="always")
    start_running(machine, clock)
    clock.advance(10)
    machine.handle(ev.Exited(100, "exit status 1", clean=False), clock.now)  # healthy run: immediate
    delays = []
    for attempt in range(4):
        machine.handle(ev.Spawned(101 + attempt), clock.now)
        effects = machine.handle(ev.Exited(101 + attempt, "exit status 1", clean=False), clock.advance(0.05))
        timers = [e for e in effects if isinstance(e, ev.ArmTimer)]
        if machine.state is State.BACKOFF:
            delays.append(round(timers[0].at - clock.now, 3))
            clock.advance(timers[0].at - clock.now)
            assert machine.handle(ev.Timer("restart"), clock.now) == [ev.Spawn("restart")]
    assert delays == [0.1, 0.2, 0.4]
    assert machine.state is State.GAVE_UP and "4 quick failures" in machine.gave_up_reason
    assert machine.next_retry_at == clock.now + 300
    clock.advance(300)
    assert machine.handle(ev.Timer("retry"), clock.now) == [ev.Spawn("retry")]
    assert machine.gave_up_reason is None


@pytest.mark.parametrize("policy, clean, restarts", [
    ("on-failure", True, False), ("on-failure", False, True), ("always", True, True), ("never", False, False)])
def test_restart_policy(policy, clean, restarts):
    machine, clock = make(restart=policy)
    start_running(machine, clock)
    effects = machine.handle(ev.Exited(100, "x", clean=clean), clock.advance(5))
    assert any(isinstance(e, ev.Spawn) for e in effects) is restarts
    if not restarts:
        assert machine.state is State.EXITED


def test_reload_by_signal_sends_exactly_one_signal():
    """...and no SIGCONT after it (cont=False): a frozen service stays frozen."""
    machine, clock = make(reload_signal=1)
    start_running(machine, clock)
    effects = without_logs(machine.handle(ev.Reload("cli"), clock.now))
    assert effects == [ev.Signal(1), ev.SaveGood(), ev.Reply("cli", 0, "reloaded (sent HUP)")]


def test_reload_of_a_stopped_service_is_not_running():
    machine, clock = make()
    assert ev.Reply("cli", 7, "not running (stopped)") in machine.handle(ev.Reload("cli"), clock.now)


def test_rejected_config_leaves_the_service_alone():
    machine, clock = make(has_check=True)
    start_running(machine, clock)
    assert ev.RunCheck() in machine.handle(ev.Reload("cli"), clock.now)
    effects = machine.handle(ev.CheckDone(False, "exit status 1: SyntaxError"), clock.now)
    assert without_logs(effects) == [ev.Reply("cli", 6, "config rejected: exit status 1: SyntaxError")]
    assert machine.state is State.RUNNING and machine.pid == 100
    assert machine.rejected == ("exit status 1: SyntaxError", clock.now)


def test_valid_config_is_applied_by_graceful_restart():
    machine, clock = make(has_check=True)
    start_running(machine, clock)
    machine.handle(ev.Reload("cli"), clock.now)
    effects = machine.handle(ev.CheckDone(True, "valid"), clock.now)
    assert ev.Notify("RELOADING=1") in effects and ev.Signal(15, cont=True) in effects
    assert ev.Spawn("reload") in machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    machine.handle(ev.Spawned(200), clock.now)
    effects = machine.handle(ev.Timer("started"), clock.advance(0.5))
    assert ev.Reply("cli", 0, "reloaded: the new config is running") in effects and ev.SaveGood() in effects
    assert machine.restarts == 0  # a requested reload is not a failure


def test_config_that_fails_at_start_is_rolled_back():
    machine, clock = make(has_check=True)
    start_running(machine, clock)
    machine.handle(ev.Reload("cli"), clock.now)
    machine.handle(ev.CheckDone(True, "valid"), clock.now)
    machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    machine.handle(ev.Spawned(200), clock.now)
    effects = machine.handle(ev.Exited(200, "exit status 1", clean=False), clock.advance(0.1))
    assert effects[-2:] == [ev.RestoreGood(), ev.Spawn("rollback")]
    machine.handle(ev.Spawned(300), clock.now)
    effects = machine.handle(ev.Timer("started"), clock.advance(0.5))
    replies = [e for e in effects if isinstance(e, ev.Reply)]
    assert replies[0].code == 1 and "rolled back" in replies[0].message
    assert machine.state is State.RUNNING and machine.degraded_at == clock.now


def test_edits_during_a_check_are_checked_again():
    """The newest content decides: a second edit while checking re-runs the check."""
    machine, clock = make(has_check=True)
    start_running(machine, clock)
    machine.handle(ev.Reload(source="watch"), clock.now)
    machine.handle(ev.Reload(source="watch"), clock.now)
    assert ev.RunCheck() in machine.handle(ev.CheckDone(True, "valid"), clock.now)
    assert machine.state is State.RUNNING


def test_adopted_service_is_running_and_restarted_when_it_dies():
    machine, clock = make()
    effects = machine.handle(ev.Adopt(4242, "cli"), clock.now)
    assert machine.state is State.RUNNING and machine.pid == 4242
    assert ev.Reply("cli", 0, "adopted the running service (pid 4242)") in effects
    effects = machine.handle(ev.Exited(4242, "exited (status unknown)", clean=False), clock.advance(100))
    assert ev.Spawn("restart") in effects


def test_adopted_service_keeps_its_real_start_time():
    """Issue 11 item 8: after re-adoption the uptime counts from the service's real start (the runtime
    reads it from the kernel), not from the adoption; and a long run that dies right after being
    adopted is a healthy run (restart at once), not a quick failure to back off from."""
    machine, clock = make()
    machine.handle(ev.Adopt(4242, "cli", started_at=clock.now - 25), clock.now)
    assert machine.started_at == clock.now - 25 and machine.status()["started_at"] == clock.now - 25
    assert machine.ready_at == clock.now
    effects = machine.handle(ev.Exited(4242, "exited (status unknown)", clean=False), clock.advance(0.1))
    assert ev.Spawn("restart") in effects and machine.state is State.STARTING


def test_adopted_start_time_unknown_or_in_the_future_counts_from_the_adoption():
    machine, clock = make()
    machine.handle(ev.Adopt(4242), clock.now)  # the old call site: no start time
    assert machine.started_at == clock.now
    machine, clock = make()
    machine.handle(ev.Adopt(4242, started_at=clock.now + 5), clock.now)  # tick rounding: never ahead of now
    assert machine.started_at == clock.now


def test_stop_while_backing_off_ends_at_once():
    machine, clock = make(restart="always")
    start_running(machine, clock)
    machine.handle(ev.Exited(100, "exit status 1", clean=False), clock.advance(0.1))
    assert machine.state is State.BACKOFF
    effects = machine.handle(ev.Stop("cli"), clock.now)
    assert ev.Reply("cli", 0, "stopped") in effects and ev.ExitSupervisor(0) in effects


EVENTS = [ev.Start(), ev.Adopt(1), ev.Stop(), ev.Reload(), ev.Spawned(1), ev.SpawnFailed("x"),
          ev.Exited(1, "x", False), ev.GroupGone(), ev.Ready(), ev.Timer("stop"), ev.CheckDone(True, "")]


@pytest.mark.parametrize("state, event", list(itertools.product(State, EVENTS)),
                         ids=lambda value: getattr(value, "value", type(value).__name__))
def test_every_state_event_pair_is_listed_or_illegal(state, event):
    """The table is total: a pair is handled, or raises IllegalTransition (never a silent surprise)."""
    machine, clock = make()
    machine.state = state
    if (state, type(event)) in TRANSITIONS:
        return
    with pytest.raises(IllegalTransition):
        machine.handle(event, clock.now)


def test_late_timers_and_probe_results_are_explicit_no_ops():
    machine, clock = make()
    start_running(machine, clock)
    assert machine.handle(ev.Ready(), clock.now) == []
    assert machine.handle(ev.Timer("ready"), clock.now) == []
