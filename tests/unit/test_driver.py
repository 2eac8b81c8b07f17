"""The per-service driver (supervisor/driver.py) with fakes: a fake loop, clock and spawner, and
no process at all. What it proves: effects become adapter calls, timers are the loop's keyed by
(driver, purpose), a reaped PID is claimed only by the driver that started it, an effect nobody
handles fails loudly, and two drivers on one loop stay apart."""

import json
import os
import selectors

import pytest

from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.core.schedule import parse_schedule
from supervisor.core.states import State
from supervisor.driver import ServiceDriver
from supervisor.loop import OwnerTimers
from supervisor.unix.spawn import Child

NO_SUCH_GROUP = 4_194_303  # above the default pid_max: killpg(..., 0) finds nobody


class FakeLoop:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.table: dict = {}
        self.wakes = 0
        self.calls: list = []

    def timers_for(self, owner) -> OwnerTimers:
        return OwnerTimers(self.table, owner)

    def wake(self) -> None:
        self.wakes += 1

    def call_soon(self, function) -> None:
        self.calls.append(function)

    def forget(self, fileobj) -> None:
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSpawner:
    """Hands out made-up PIDs instead of starting anything."""

    def __init__(self, first_pid: int = NO_SUCH_GROUP - 100) -> None:
        self.next_pid, self.spawned = first_pid, []

    def __call__(self, config, write_fd, keep_fds=()):
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.spawned.append(pid)
        return Child(None, pid, None)


def config_for(tmp_path, name="demo", **keys) -> ServiceConfig:
    return ServiceConfig(name=name, path=str(tmp_path / f"{name}.toml"), command=("/bin/true",),
                         stop=parse_schedule("TERM/1/KILL/1"), log_file=str(tmp_path / f"{name}.log"),
                         events_file=str(tmp_path / f"{name}.events"), pidfile=str(tmp_path / f"{name}.pid"),
                         **keys)


@pytest.fixture
def made(tmp_path):
    drivers = []

    def make(name="demo", loop=None, **keys):
        loop = loop or FakeLoop()
        clock, spawner = FakeClock(), FakeSpawner()
        run_dir = tmp_path / "run"
        run_dir.mkdir(mode=0o755, exist_ok=True)
        driver = ServiceDriver(config_for(tmp_path, name, **keys), str(run_dir), loop, clock=clock, spawner=spawner)
        driver.signals = []
        driver.send = lambda number, group, cont: driver.signals.append((number, group))  # no real signal
        drivers.append(driver)
        return driver, loop, clock, spawner

    yield make
    for driver in drivers:
        driver.shutdown()
        driver.send_last_words()


def run_to_running(driver, loop, clock):
    driver.events.append(ev.Start(None))
    driver.process()
    assert driver.machine.state is State.STARTING and driver.child is not None
    started_at = loop.table[(driver, "started")]
    clock.now = started_at
    driver.fire("started")
    driver.process()
    assert driver.machine.state is State.RUNNING


def test_a_start_spawns_through_the_spawner_and_arms_the_loops_timer(made):
    driver, loop, clock, spawner = made()
    driver.events.append(ev.Start(None))
    driver.process()
    assert spawner.spawned == [driver.child.pid] and driver.pgid == driver.child.pid
    assert loop.table[(driver, "started")] == pytest.approx(clock.now + 0.5)
    clock.now += 0.5
    driver.fire("started")
    driver.process()
    assert driver.machine.state is State.RUNNING
    with open(os.path.join(driver.directory, "state.json")) as handle:  # what `svctl status` reads
        published = json.load(handle)
    assert published["mode"] == "daemon" and published["machine"]["state"] == "running"
    assert published["service"] is None  # a made-up PID has no identity in /proc: none is claimed


def test_only_the_driver_that_started_a_pid_claims_it(made):
    loop = FakeLoop()
    one, _, clock_one, _ = made("one", loop=loop)
    two, _, clock_two, spawner_two = made("two", loop=loop)
    spawner_two.next_pid = NO_SUCH_GROUP - 50
    run_to_running(one, loop, clock_one)
    run_to_running(two, loop, clock_two)
    assert one.claims(one.child.pid) and not one.claims(two.child.pid)
    assert two.claims(two.child.pid) and not two.claims(12345)


def test_a_reaped_child_is_respawned_at_once_then_backed_off(made):
    driver, loop, clock, spawner = made()
    run_to_running(driver, loop, clock)
    first = driver.child.pid
    clock.now += 5  # a long run (past min_uptime): respawned at once
    driver.reaped(first, 9)  # wait status 9: killed by SIGKILL
    driver.process()
    second = driver.child.pid
    assert spawner.spawned == [first, second] and driver.machine.restarts == 1
    clock.now += 0.01  # a crash right after the start: the backoff's first step
    driver.reaped(second, 9)
    driver.process()
    assert driver.machine.state is State.BACKOFF and driver.child is None
    clock.now = loop.table[(driver, "restart")]
    driver.fire("restart")
    driver.process()
    assert len(spawner.spawned) == 3 and driver.machine.restarts == 2


def test_stop_sends_the_schedule_and_the_stopped_service_ends_the_driver(made):
    driver, loop, clock, _ = made()
    run_to_running(driver, loop, clock)
    driver.events.append(ev.Stop(None))
    driver.process()
    assert driver.signals == [(15, False)] and (driver, "stop") in loop.table
    driver.reaped(driver.child.pid, 15)
    driver.process()
    assert driver.finished and driver.exit_code == 0 and driver.machine.state is State.STOPPED


def test_timers_of_two_drivers_on_one_loop_stay_apart(made):
    loop = FakeLoop()
    one, _, _, _ = made("one", loop=loop)
    two, _, _, _ = made("two", loop=loop)
    one.timers["stop"] = 5.0
    two.timers["stop"] = 7.0
    assert loop.table[(one, "stop")] == 5.0 and loop.table[(two, "stop")] == 7.0
    one.timers.pop("stop")
    assert (one, "stop") not in loop.table and two.timers.get("stop") == 7.0
    assert two.timers.items() == [("stop", 7.0)]


def test_an_effect_without_a_handler_fails_loudly(made):
    driver, _, _, _ = made()

    class Unheard:
        pass

    with pytest.raises(TypeError, match="no handler for the effect"):
        driver.perform(Unheard())


def test_a_failing_effect_is_a_problem_not_a_dead_driver(made):
    driver, loop, clock, spawner = made()

    def broken(*_args, **_kwargs):
        raise RuntimeError("the adapter broke")

    driver.perform = lambda effect: broken() if isinstance(effect, ev.ArmTimer) else ServiceDriver.perform(driver, effect)
    driver.events.append(ev.Start(None))
    driver.process()
    assert driver.faults.errors >= 1 and "the adapter broke" in " ".join(driver.faults.problems())
    assert driver.machine.state is State.STARTING  # the machine went on


def test_a_spawn_that_fails_is_a_spawn_failure_not_a_hang(made):
    driver, loop, clock, spawner = made()

    def refuse(*_args, **_kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    driver.spawner = refuse
    driver.events.append(ev.Start(None))
    driver.process()
    assert driver.finished and driver.exit_code == 1  # an initial start that failed ends the driver
    assert "No such file or directory" in driver.machine.last_exit


def test_a_watch_kick_from_a_thread_runs_in_the_loop(made):
    driver, loop, _, _ = made()
    driver.wake_for_watch()
    assert len(loop.calls) == 1 and loop.calls[0] == driver.watch_kicked  # not called in the thread
