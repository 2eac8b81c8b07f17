"""Liveness in the machine (supervisor/core/liveness.py), driven by a fake clock (no processes)."""

import pytest

from supervisor import config_values
from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy
from supervisor.core.liveness import HealthPolicy
from supervisor.core.machine import Machine, Policy, State
from supervisor.core.schedule import parse_schedule
from supervisor.core.signals import parse_signal

INTERVAL, TIMEOUT = 10.0, 2.0


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def make(failures=3, min_uptime=1.0, give_up_after=4, **policy):
    policy.setdefault("backoff", BackoffPolicy(min_uptime=min_uptime, initial=0.1, maximum=1.0,
                                               give_up_after=give_up_after, window=60, cooldown=300))
    health = HealthPolicy(INTERVAL, TIMEOUT, failures)
    return Machine(Policy(parse_schedule("TERM/1/KILL/1"), health=health, **policy)), FakeClock()


def start_running(machine, clock, pid=100):
    machine.handle(ev.Start("cli"), clock.now)
    machine.handle(ev.Spawned(pid), clock.now)
    clock.advance(machine.policy.start_seconds)
    return machine.handle(ev.Timer("started"), clock.now)


def probes(effects):
    return [effect for effect in effects if isinstance(effect, ev.StartHealthProbe)]


def logs(effects, name):
    return [effect.fields for effect in effects if isinstance(effect, ev.Log) and effect.event == name]


def next_probe(machine, clock):
    """Advance to the armed "health" timer and fire it; return the probe started."""
    clock.advance(INTERVAL)
    started = probes(machine.handle(ev.Timer("health"), clock.now))
    assert len(started) == 1 and started[0].timeout == TIMEOUT
    return started[0].probe


def answer(machine, clock, probe, ok, reason="", after=0.1):
    clock.advance(after)
    return machine.handle(ev.HealthResult(ok, reason, probe), clock.now)


def test_first_probe_one_interval_after_running_and_status_pending():
    machine, clock = make()
    effects = start_running(machine, clock)
    assert ev.ArmTimer("health", clock.now + INTERVAL) in effects
    assert machine.status()["health"] == {"state": "pending", "failures": 0, "last_failure": None,
                                          "last_failure_at": None, "restarts": 0}
    probe = next_probe(machine, clock)
    effects = answer(machine, clock, probe, True)
    assert machine.status()["health"]["state"] == "passing"
    # fixed rate: the next probe one interval after this one started, not after its answer
    assert effects == [ev.ArmTimer("health", clock.now - 0.1 + INTERVAL)]


def test_no_health_configured_means_none_and_no_timer():
    machine = Machine(Policy(parse_schedule("TERM/1/KILL/1")))
    effects = start_running(machine, FakeClock())
    assert machine.status()["health"] is None
    assert not any(isinstance(effect, ev.ArmTimer) and effect.name == "health" for effect in effects)
    assert machine.handle(ev.Timer("health"), 2000.0) == []


def test_failures_are_counted_and_a_success_resets_the_count():
    """Case: failures counted, reset on success."""
    machine, clock = make(failures=3)
    start_running(machine, clock)
    for count in (1, 2):
        effects = answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
        health = machine.status()["health"]
        assert health["state"] == "failing" and health["failures"] == count
        assert health["last_failure"] == "HTTP 503" and health["last_failure_at"] == clock.now
        assert logs(effects, "health_failed") == [{"pid": 100, "reason": "HTTP 503", "failures": count}]
        assert machine.state is State.RUNNING
    answer(machine, clock, next_probe(machine, clock), True)
    health = machine.status()["health"]
    assert health["state"] == "passing" and health["failures"] == 0
    assert health["last_failure"] == "HTTP 503"  # the last failure stays for status
    for _ in range(2):  # the count starts over: two more failures are not three in a row
        answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
    assert machine.state is State.RUNNING and machine.status()["health"]["failures"] == 2


def test_a_probe_without_answer_within_the_timeout_is_a_failure():
    machine, clock = make()
    start_running(machine, clock)
    probe = next_probe(machine, clock)
    clock.advance(TIMEOUT)
    effects = machine.handle(ev.Timer("health"), clock.now)
    assert ev.StopHealthProbe() in effects
    assert machine.status()["health"]["last_failure"] == f"no answer within {TIMEOUT:g}s"
    assert ev.ArmTimer("health", clock.now - TIMEOUT + INTERVAL) in effects
    # its answer after the deadline is ignored (case: late results ignored)
    assert answer(machine, clock, probe, True) == []
    assert machine.status()["health"]["state"] == "failing"


def test_restart_after_n_consecutive_failures_with_the_stop_schedule():
    """Case: restart after N; the event, the stop schedule, a restart (not a stop), status."""
    machine, clock = make(failures=2)
    start_running(machine, clock)
    answer(machine, clock, next_probe(machine, clock), False, "connection refused")
    effects = answer(machine, clock, next_probe(machine, clock), False, "timed out after 2s")
    assert logs(effects, "health_restart") == [{"reason": "timed out after 2s", "failures": 2}]
    assert machine.state is State.STOPPING and machine.stop_run.purpose == "health"
    assert ev.Signal(parse_signal("TERM"), cont=True) in effects and ev.CancelTimer("health") in effects
    assert not any(isinstance(effect, ev.Notify) for effect in effects)  # no STOPPING=1: it comes back
    assert machine.status()["health"]["restarts"] == 1
    assert machine.status()["health"]["failures"] == 2
    clock.advance(0.2)
    effects = machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    # the run passed no probe: a quick failure, so it backs off (counts toward the backoff)
    assert machine.state is State.BACKOFF and machine.last_exit == "unhealthy: timed out after 2s"
    clock.advance(0.1)
    effects = machine.handle(ev.Timer("restart"), clock.now)
    assert effects == [ev.Spawn("restart")] and machine.restarts == 1
    machine.handle(ev.Spawned(101), clock.now)
    clock.advance(0.5)
    machine.handle(ev.Timer("started"), clock.now)
    health = machine.status()["health"]
    assert health["state"] == "pending" and health["failures"] == 0 and health["restarts"] == 1


def test_a_run_that_passed_probes_restarts_at_once_like_a_crash_after_min_uptime():
    machine, clock = make(failures=1)
    start_running(machine, clock)
    answer(machine, clock, next_probe(machine, clock), True)
    answer(machine, clock, next_probe(machine, clock), False, "HTTP 500")
    assert machine.state is State.STOPPING
    effects = machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    assert ev.Spawn("restart") in effects and machine.state is State.STARTING


def test_a_service_that_keeps_hanging_is_given_up():
    """Each hang takes longer to notice than give_up_window, yet give_up_after of them in a row
    (no probe passed in between) give the service up, like quick crashes would."""
    machine, clock = make(failures=1, give_up_after=3)
    pid = 100
    start_running(machine, clock, pid)
    for round_ in range(3):
        clock.advance(60)  # longer than give_up_window
        answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
        assert machine.state is State.STOPPING
        effects = machine.handle(ev.Exited(pid, "killed by SIGTERM", clean=False), clock.now)
        if round_ < 2:
            if machine.state is State.BACKOFF:
                clock.advance(machine.next_retry_at - clock.now)
                machine.handle(ev.Timer("restart"), clock.now)
            pid += 1
            start_running(machine, clock, pid)
    assert machine.state is State.GAVE_UP
    assert machine.gave_up_reason == "3 liveness restarts in a row without a passing probe"
    assert logs(effects, "gave_up") and ev.ArmTimer("retry", clock.now + 300) in effects


def test_no_probes_outside_running():
    """Case: never during STARTING / STOPPING / BACKOFF; a stray timer or answer does nothing."""
    machine, clock = make()
    machine.handle(ev.Start("cli"), clock.now)
    for event in (ev.Timer("health"), ev.HealthResult(False, "x", 1)):
        assert machine.handle(event, clock.now) == []  # STARTING
    effects = machine.handle(ev.Spawned(100), clock.now)
    assert not probes(effects) and machine.handle(ev.Timer("health"), clock.now) == []
    clock.advance(0.5)
    machine.handle(ev.Timer("started"), clock.now)
    effects = machine.handle(ev.Stop("cli"), clock.now)
    assert ev.CancelTimer("health") in effects
    assert machine.state is State.STOPPING
    clock.advance(INTERVAL)
    assert not probes(machine.handle(ev.Timer("health"), clock.now))
    machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    assert machine.state is State.STOPPED and machine.handle(ev.Timer("health"), clock.now) == []


def test_a_stop_cancels_the_probe_in_flight_and_its_late_answer_is_ignored():
    """Case: stop cancels; late results ignored."""
    machine, clock = make()
    start_running(machine, clock)
    probe = next_probe(machine, clock)
    effects = machine.handle(ev.Stop("cli"), clock.now)
    assert ev.StopHealthProbe() in effects and ev.CancelTimer("health") in effects
    assert answer(machine, clock, probe, False, "HTTP 503") == []
    assert machine.status()["health"]["failures"] == 0


def test_a_restart_reload_cancels_the_probe_and_the_new_run_starts_over():
    """Case: reload cancels (validated graceful restart)."""
    machine, clock = make()
    start_running(machine, clock)
    answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
    probe = next_probe(machine, clock)
    effects = machine.handle(ev.Reload("cli"), clock.now)
    assert ev.StopHealthProbe() in effects and machine.state is State.STOPPING
    assert answer(machine, clock, probe, False, "HTTP 503") == []  # late: ignored in STOPPING
    machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    assert machine.state is State.STARTING  # no health timer while starting the new config
    effects = machine.handle(ev.Spawned(101), clock.now)
    assert not probes(effects)
    clock.advance(0.5)
    effects = machine.handle(ev.Timer("started"), clock.now)
    assert ev.ArmTimer("health", clock.now + INTERVAL) in effects
    assert machine.status()["health"]["state"] == "pending" and machine.status()["health"]["failures"] == 0
    # the old run's probe number never matches again
    assert answer(machine, clock, probe, False, "HTTP 503") == []


def test_a_signal_reload_cancels_the_probe_and_starts_the_interval_over():
    machine, clock = make(reload_signal=parse_signal("HUP"))
    start_running(machine, clock)
    probe = next_probe(machine, clock)
    effects = machine.handle(ev.Reload("cli"), clock.now)
    assert machine.state is State.RUNNING
    assert ev.StopHealthProbe() in effects and ev.ArmTimer("health", clock.now + INTERVAL) in effects
    assert answer(machine, clock, probe, False, "HTTP 503") == []
    assert next_probe(machine, clock) == probe + 1


def test_a_crash_cancels_the_probe():
    machine, clock = make()
    start_running(machine, clock)
    probe = next_probe(machine, clock)
    effects = machine.handle(ev.Exited(100, "exit status 1", clean=False), clock.now + 5)
    assert ev.StopHealthProbe() in effects and ev.CancelTimer("health") in effects
    assert machine.handle(ev.HealthResult(True, "", probe), clock.now + 5) == []


def test_a_stop_during_the_liveness_restart_stops_for_good():
    machine, clock = make(failures=1)
    start_running(machine, clock)
    answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
    assert machine.state is State.STOPPING
    machine.handle(ev.Stop("cli"), clock.now)
    effects = machine.handle(ev.Exited(100, "killed by SIGTERM", clean=False), clock.now)
    assert machine.state is State.STOPPED and ev.ExitSupervisor(0) in effects


def test_an_adopted_service_is_probed_too():
    machine, clock = make()
    effects = machine.handle(ev.Adopt(200), clock.now)
    assert ev.ArmTimer("health", clock.now + INTERVAL) in effects
    probe = next_probe(machine, clock)
    answer(machine, clock, probe, True)
    assert machine.status()["health"]["state"] == "passing"


def test_public_status_shows_last_failure_at_as_wall_time():
    from supervisor.unix.statefile import public_status

    machine, clock = make()
    start_running(machine, clock)
    answer(machine, clock, next_probe(machine, clock), False, "HTTP 503")
    status = public_status(machine.status(), now_wall=1_700_000_000.0, now_mono=clock.now + 5, secrets=())
    assert status["health"]["last_failure_at"] == 1_700_000_000.0 - 5
    assert status["health"]["failures"] == 1


# ---- the runtime's probe worker (supervisor/unix/health.py): real sockets on ::1, no service ----


def _serve(status_code: int, delay: float = 0.0):
    import http.server
    import socket
    import threading
    import time

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(delay)
            self.send_response(status_code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = Server(("::1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server, f"http://[::1]:{server.server_address[1]}/"


def _probe(url: str, probe: int = 1, timeout: float = 2.0, cancel: bool = False):
    import queue

    from supervisor.unix.health import HealthProbes

    answers: queue.SimpleQueue = queue.SimpleQueue()
    probes = HealthProbes(url, answers.put)
    probes.start(probe, timeout)
    if cancel:
        probes.cancel()
    try:
        return answers.get(timeout=timeout + (0.5 if cancel else 2))  # a cancelled one: past its timeout
    except queue.Empty:
        return None
    finally:
        probes.close()


def test_the_worker_posts_each_probes_verdict_with_its_number():
    server, url = _serve(200)
    try:
        assert _probe(url, probe=7) == ev.HealthResult(True, "", 7)
    finally:
        server.shutdown()
        server.server_close()
    server, url = _serve(503)
    try:
        assert _probe(url, probe=8) == ev.HealthResult(False, "HTTP 503", 8)
    finally:
        server.shutdown()
        server.server_close()
    assert _probe(url, probe=9) == ev.HealthResult(False, "connection refused", 9)  # closed now
    tcp = url.replace("http://", "tcp://").rstrip("/")
    assert _probe(tcp) == ev.HealthResult(False, "connection refused", 1)


def test_the_worker_times_out_and_a_cancelled_probe_posts_nothing():
    server, url = _serve(200, delay=0.6)
    try:
        assert _probe(url, timeout=0.2) == ev.HealthResult(False, "timed out after 0.2s", 1)
        assert _probe(url, timeout=0.3, cancel=True) is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_reason_quoting_the_service_is_cut_short_and_printable():
    from supervisor.unix.health import shown

    assert shown("HTTP 503") == "HTTP 503"
    assert shown("bad status line: '\x1b[2J" + "x" * 500) == "bad status line: '?[2J" + "x" * 178 + "..."


# ---- the URL a probe may be given (config_values.ready_url: health and ready) --------------

def refusal(url: str) -> str | None:
    try:
        config_values.ready_url(url, ValueError)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("url", ["http://h/health?token=abc", "https://[::1]:8000/hub/health", "tcp://[::1]:9443",
                                 "http://127.0.0.1:8081/hub/api"])
def test_urls_a_probe_sends_whole_are_accepted(url):
    assert refusal(url) is None


def test_user_information_is_refused_without_echoing_the_password():
    reason = refusal("http://admin:s3cret@h/health")
    assert reason and "not supported" in reason and "s3cret" not in reason and "\n" not in reason


@pytest.mark.parametrize("url, where", [("http://h/my health", "character 12 (' ')"),
                                        ("http://h/health\t", "character 16 ('\\t')"),
                                        ("http://h/\x1b[2J", "character 10 ('\\x1b')"),
                                        ("http://h/sant\u00e9", "character 14 ('\\xe9')"),
                                        ("http://h\u00e9.example/health", "character 9 ('\\xe9')"),
                                        ("http://h/health\n", "character 16 ('\\n')"),
                                        ("http://admin:s3 cret@h/", "character 16 (' ')")])
def test_whitespace_control_characters_and_non_ascii_are_refused_with_one_line(url, where):
    """Sent as written they make a request no server accepts: every probe would fail forever."""
    reason = refusal(url)
    assert reason and reason.startswith(where) and "percent-encode" in reason
    assert "\n" not in reason and reason.isascii() and reason.isprintable() and "cret" not in reason


def test_a_fragment_is_refused():
    reason = refusal("http://h/health#section")
    assert reason and "fragment" in reason and "\n" not in reason

