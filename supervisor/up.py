"""`svctl up`: many services in one foreground process, the init of a container or of a host.

The second front end over the same pieces as the per-service daemon (runtime.py): one process loop
(loop.py), one driver per service (driver.py), each with its own machine, watcher, probes, hooks,
log capture, events file and state file, exactly as under `svctl start`. What this front end adds:

- Order. A service starts once every service it `requires` is running (ready, when it has
  `ready`); independent ones start at once. On SIGTERM or SIGINT a service is stopped once every
  service that requires it has stopped, each with its own schedule; then what is left among our
  children (orphans no service claims, such as JupyterHub users' servers) gets TERM, SWEEP_GRACE
  seconds, KILL; then the process exits: 0, or 1 if a service failed to start or to stop.
- One control socket, RUN_DIR/.up/PID.sock; each service's RUN_DIR/NAME/control.sock is a symlink
  to it and its supervisor.id names this process, so every verb finds a member as it finds a
  per-service daemon. Requests carry the service's name. A member stopped by `svctl stop` stays a
  member: `svctl start NAME` starts it again here, from its service file read anew.
- Reaping everything: as PID 1 (a container, `unshare --pid --fork`), and as a child subreaper
  otherwise, every orphan becomes our child; the loop reaps it whoever it was.
- No PID files: one process for many services has no PID that means one of them. state.json says
  `"mode": "up"`, so that `status` does not miss the PID file and `start` does not wait for us to exit.

SIGHUP reloads every running service; SIGUSR1 reopens every service's logs.
"""

from __future__ import annotations

import os
import signal
import time

from supervisor.clients import ControlServer
from supervisor.core import events as ev
from supervisor.core.states import State
from supervisor.driver import ServiceDriver
from supervisor.faults import Faults, describe
from supervisor.log import console_line
from supervisor.loop import Loop
from supervisor.unix import identity, proc, rundir
from supervisor.unix.escapees import children_of, in_service, send_stop_signal

SOCKET_DIR = ".up"  # RUN_DIR/.up: no service can be called that (names start with a letter or digit)
SWEEP_GRACE = 5.0  # what no service claims has this long after TERM before KILL, at exit
class ConsoleLog:
    """`up`'s own events (not a service's), one line each on stderr: `docker logs` shows them."""

    def event(self, name: str, level: str = "info", **fields) -> None:
        console_line(level, name, {**fields, "service": "(svctl up)"})


class Member:
    """A service of this `up`: its config, its lock (held as long as we run), its driver."""

    def __init__(self, config, lock) -> None:
        self.config, self.lock = config, lock
        self.driver: ServiceDriver | None = None
        self.started = False  # Start sent (by the start order or a client)
        self.by_order = False  # by up's start order: a failure then counts in up's exit code
        self.stop_sent = False
        self.done = False  # finished, given up on, or never to be started
        self.ident_inode = self.link_inode = None

    @property
    def name(self) -> str:
        return self.config.name


class Up:
    """CONFIGS: in start order (requirements first), each with the lock of its run directory."""

    def __init__(self, configs: list, locks: dict, run_dir: str, config_dir: str, adopt: dict | None = None) -> None:
        self.run_dir, self.config_dir = run_dir, config_dir
        self.adopt = dict(adopt or {})  # NAME -> (pid, pgid, output fd): running, its supervisor died
        self.log = ConsoleLog()
        self.faults = Faults("up")
        self.faults.log = self.log
        self.loop = Loop(self)
        self.me = identity.identify(os.getpid(), allow_init=True)
        self.members = {config.name: Member(config, locks[config.name]) for config in configs}
        self.requires = {config.name: tuple(needed for needed in config.requires if needed in self.members)
                         for config in configs}
        self.dependents = {name: tuple(other for other, needs in self.requires.items() if name in needs)
                           for name in self.members}
        self.foreign = set(children_of(os.getpid()))  # a boot script's `cmd &`: nobody's escapee
        self.failures: list[str] = []
        self.stopping = False
        self.sweep_until: float | None = None  # the final sweep's next step, once it began
        self.swept_with_kill = False
        self.exit_code: int | None = None
        self.drivers: list[ServiceDriver] = []
        self.known_cache: frozenset | None = None
        self.unstarted = len(self.members)  # until start_in_order has counted them
        directory = rundir.ensure(run_dir, SOCKET_DIR)
        rundir.forget_dead_sockets(directory)
        # named by PID namespace too: two containers' ups, both PID 1, may share a run directory
        self.server = ControlServer(os.path.join(directory, rundir.socket_name(os.getpid())), self.loop, self)

    # ---- members ----------------------------------------------------------------------------

    def attach(self, member: Member, announce: bool = True) -> None:
        """A new driver for MEMBER (at the beginning, or for a `start` after it stopped); ANNOUNCE:
        its run directory says so at once (else announce() does, once the first ones run)."""
        old = member.driver
        member.driver = ServiceDriver(
            member.config, self.run_dir, self.loop, console=True, mode="up", name_on_console=True,
            membership=(self.belongs, self.foreign, self.all_known_pids), on_run_dir_recreated=self.enter)
        member.started = member.stop_sent = member.done = False
        self.drivers = [driver for driver in self.drivers if driver is not old] + [member.driver]
        if announce:
            self.announce(member.driver)

    def announce(self, driver: ServiceDriver) -> None:
        """Its identity file, socket link and state.json ("stopped" until its turn comes), naming
        this process as its supervisor."""
        driver.hold_publish = False
        driver.guarded("entering the run directory", self.enter, driver)
        driver.publish()

    def enter(self, driver: ServiceDriver) -> None:
        """The member's entries in its run directory: who supervises it, and where to ask."""
        member = self.members[driver.config.name]
        me = self.me
        if me is not None:
            member.ident_inode = rundir.write_ident(driver.directory, f"{me.pid} {me.start_ticks} {me.boot_id} {me.exe}")
        member.link_inode = rundir.link_socket(driver.directory, self.server.path)

    def belongs(self, pid: int, driver: ServiceDriver) -> bool:
        return in_service(pid, driver.config.name, driver.sessions, driver.uid)

    def all_known_pids(self) -> frozenset:
        """Every driver's service, check and hook PIDs: no escapee of anyone. Built once per round of
        the loop (a respawn among 100 services would build it twice per exit): a PID that came or
        went since is still judged right by belongs(), only more slowly."""
        if self.known_cache is None:
            self.known_cache = frozenset(pid for driver in self.drivers for pid in driver.known_pids() if pid)
        return self.known_cache

    # ---- what the loop asks of its front end ------------------------------------------------

    def finished(self) -> bool:
        return self.exit_code is not None

    def owns(self, fileobj) -> bool:
        return self.server.owns(fileobj) or any(driver.owns(fileobj) for driver in self.drivers)

    def on_signal(self, number: int) -> None:
        if number in (signal.SIGTERM, signal.SIGINT):
            if not self.stopping:
                self.log.event("stopping_all", signal=signal.Signals(number).name)
            self.stopping = True
        elif number == signal.SIGHUP:  # a reload where it is one: a plain restart (the proxy's) is no reload
            for driver in self.running():
                if driver.config.watch or driver.config.check or driver.config.reload_signal:
                    driver.request_reload(None, "signal")
                else:
                    driver.log.event("reload_skipped", detail="SIGHUP to svctl up reloads only services with "
                                     "`watch`, `check` or a reload signal; `svctl reload NAME` restarts this one")
        elif number == signal.SIGUSR1:
            for driver in self.drivers:
                driver.reopen_logs()

    def orphan_reaped(self, pid: int, status: int) -> None:
        pass  # an orphan (PID 1's duty) or an escapee nobody claimed: reaped is all it needs

    def running(self) -> list[ServiceDriver]:
        return [driver for driver in self.drivers if not driver.finished]

    def after_round(self) -> None:
        """After every round of the loop, so kept cheap (a crash-restart among 100 services runs
        it before the respawn): the drivers with news, then the start or the stop order."""
        self.known_cache = None
        for driver in self.drivers:
            if driver.faults.changed:
                driver.settle()
            if driver.exit_code is not None or (self.stopping and driver.machine.stop_failed):
                self.settle_member(self.members[driver.config.name])
        if self.stopping:
            self.stop_in_order()
        elif self.waiting:
            self.start_in_order()

    def settle_member(self, member: Member) -> None:
        driver = member.driver
        if driver.finished:
            self.retire(member)
        elif member.stop_sent and not member.done and self.stop_ran_out(driver):
            member.done = True  # its schedule ran out: the sweep's KILL is what is left
            self.failures.append(f"{member.name}: {driver.machine.stop_failed}")

    @property
    def waiting(self) -> bool:
        """Some member is neither started nor done: the start order has work (a flag kept by
        start_in_order, not a scan of every member each round)."""
        return self.unstarted > 0

    @staticmethod
    def stop_ran_out(driver: ServiceDriver) -> bool:
        """Our stop's schedule is spent and the service is still there (not an earlier stop's:
        a new Stop begins a new run)."""
        run = driver.machine.stop_run
        return run is not None and run.exhausted and run.purpose == "exit" and bool(driver.machine.stop_failed)

    def retire(self, member: Member) -> None:
        """Its machine is done (stopped, or failed to start): clean up, answer, stay a member."""
        driver = member.driver
        member.done = True
        if driver is None or driver.cleaned_up:
            return
        if driver.exit_code and member.by_order and not (self.stopping and member.stop_sent):
            self.failures.append(f"{member.name}: failed to start ({driver.machine.last_exit})")
        driver.shutdown()
        driver.send_last_words()
        driver.guarded("closing the events file", driver.log.close)  # (a `start` makes a new driver)
        member.done = True
        self.drivers = [d for d in self.drivers if d is not driver]

    def start_in_order(self) -> None:
        self.unstarted = 0
        for member in self.members.values():
            if member.started or member.done:
                continue
            self.unstarted += 1
            needs = [self.members[name] for name in self.requires[member.name]]
            gone = next((need.name for need in needs if need.done), None)
            if gone is not None:  # a requirement failed or was stopped before this one ever ran
                self.failures.append(f"{member.name}: not started: it requires {gone}, which is not running")
                self.log.event("not_started", level="error", service=member.name,
                               reason=f"it requires {gone}, which is not running")
                self.retire(member)
                continue
            if all(need.driver.machine.state is State.RUNNING for need in needs):
                self.start_member(member)

    def start_member(self, member: Member) -> None:
        member.started = member.by_order = True
        member.driver.begin()
        member.driver.events.append(self.first_event(member))

    def first_event(self, member: Member) -> ev.Event:
        adopt = self.adopt.pop(member.name, None)
        if adopt is None:
            return ev.Start(None)
        from supervisor.unix.identity import monotonic_start

        driver = member.driver
        driver.adopt(*adopt)  # its uptime counts from its real start, read from the kernel
        return ev.Adopt(adopt[0], None, monotonic_start(driver.service_identity))

    def stop_in_order(self) -> None:
        if self.exit_code is not None or self.sweep_until is not None:
            return self.sweep()
        for member in self.members.values():
            if member.done or member.stop_sent:
                continue
            if not member.started:  # never ran: nothing to stop
                self.retire(member)
                continue
            if all(self.members[name].done for name in self.dependents[member.name]):
                member.stop_sent = True
                driver = member.driver
                if driver.machine.state is State.GAVE_UP:  # it did not stay started: up exits 1
                    self.failures.append(f"{member.name}: gave up ({driver.machine.gave_up_reason})")
                # what it left running (its escapees) gets its own schedule, as with `svctl stop`
                leftovers = driver.child is None and bool(driver.guarded("looking for escapees",
                                                                         driver.leftovers.escapees))
                driver.events.append(ev.Stop(leftovers=leftovers))
        if all(member.done for member in self.members.values()):
            self.sweep()

    def sweep(self) -> None:
        """What no service took with it: TERM, SWEEP_GRACE, KILL (and 1 s for the KILL to work:
        a process in uninterruptible sleep is left to the kernel); then we are done. Our own
        children only: signalling them by PID is safe, as we are the one who reaps them."""
        left = [pid for pid in children_of(os.getpid()) if pid not in self.foreign]
        now, timers = time.monotonic(), self.loop.timers_for(self)
        if left and self.sweep_until is None:
            self.log.event("sweeping", pids=" ".join(map(str, left)), detail="left by the services: TERM")
            self.signal_all(left, signal.SIGTERM)
            self.sweep_until = timers["sweep"] = now + SWEEP_GRACE
        elif left and not self.swept_with_kill and now >= self.sweep_until:
            self.log.event("sweeping", level="warning", pids=" ".join(map(str, left)), detail="still there: KILL")
            self.signal_all(left, signal.SIGKILL)
            self.swept_with_kill = True
            self.sweep_until = timers["sweep"] = now + 1.0  # their exits wake us; this is a backstop
        elif not left or (self.swept_with_kill and now >= self.sweep_until):
            timers.pop("sweep", None)
            self.exit_code = 1 if self.failures else 0

    @staticmethod
    def signal_all(pids: list[int], number: int) -> None:
        for pid in pids:
            send_stop_signal(lambda each, pid=pid: os.kill(pid, each), number)

    def fire(self, purpose: str) -> None:
        if purpose == "sweep":
            self.sweep()

    # ---- requests ---------------------------------------------------------------------------

    def driver_for(self, name: str | None):
        member = self.members.get(name) if name else None
        return member.driver if member is not None else None

    def on_request(self, driver: ServiceDriver, command: str, reply) -> None:
        member = self.members[driver.config.name]
        if self.stopping and command == "start":
            return reply.answer(1, "svctl up is stopping every service")
        if not driver.cleaned_up:
            if command == "start" and not member.started:
                member.started = True
                driver.begin()
            elif command in ("stop", "stop-all") and not member.started:
                return reply.answer(0, "not running")
            return driver.on_request(command, reply)
        if command == "start":
            return self.start_again(member, reply)
        if command == "reload":
            return reply.answer(7, "is not running")
        reply.answer(0, "logs reopened" if command == "reopen-logs" else "not running")

    def start_again(self, member: Member, reply) -> None:
        """`svctl start NAME` of a member that stopped: its file read anew, as a start would."""
        from supervisor import config as configuration
        from supervisor.errors import SvctlError

        try:
            config = configuration.load(member.name, self.config_dir)
            configuration.ensure_paths_exist(config)
        except SvctlError as exc:
            return reply.answer(int(exc.code), str(exc))
        except Exception as exc:
            return reply.answer(1, describe(exc))
        member.config = config
        self.attach(member)
        member.started = True
        member.driver.begin()
        member.driver.events.append(ev.Start(reply))

    # ---- the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        self.loop.install_signals()
        proc.become_subreaper()  # PID 1 reaps orphans anyway; elsewhere, this makes them ours
        self.log.event("up", services=" ".join(self.members), pid=os.getpid())
        # in start order, requirements first; those that require nothing are spawned at once, and
        # the run directory's entries of all come after: the last service runs ~1 s sooner of 100
        for member in self.members.values():
            try:
                self.attach(member, announce=False)
            except Exception as exc:  # its log file refused, say: the others go on without it
                member.done = True
                member.lock.release()  # its lock would say "starting" to `svctl status` forever
                self.failures.append(f"{member.name}: not started: {describe(exc)}")
                self.log.event("not_started", level="error", service=member.name, reason=describe(exc))
                continue
            if not self.requires[member.name]:
                member.driver.hold_publish = True
                self.start_member(member)
                member.driver.process()
        for member in self.members.values():
            if member.driver is not None:
                self.announce(member.driver)
        self.loop.run()
        self.shutdown()
        for failure in self.failures:
            self.log.event("failed", level="error", detail=failure)
        self.log.event("exiting", code=self.exit_code)
        return self.exit_code

    def shutdown(self) -> None:
        last_words: list = []
        for member in self.members.values():
            driver = member.driver
            if driver is not None and not driver.cleaned_up:
                driver.shutdown()
                driver.send_last_words()
        try:
            self.server.close(last_words)
        except Exception as exc:
            self.faults.internal("closing the control socket", exc)
        for member in self.members.values():
            directory = rundir.service_dir(self.run_dir, member.name)
            rundir.remove_own(directory, rundir.SOCKET, member.link_inode)
            rundir.remove_own(directory, rundir.IDENT, member.ident_inode)
            member.lock.release()
        for token, code, message in last_words:
            try:
                token.answer(code, message)
            except Exception:
                pass
        self.loop.close()
