"""The per-service daemon (`svctl start`, `svctl run`): one process loop, one service's driver.

What this front end adds to the shared pieces (loop.py, driver.py) is what makes the daemon
behave like the init script's: the PID file (written once state.json names this supervisor,
repaired on `start`, removed before the last answers go out), the control socket and identity
file in RUN_DIR/NAME, and its signals: SIGTERM/SIGINT stop the service and end the process, SIGHUP
reloads it, SIGUSR1 reopens its logs. The process ends when the driver's machine says so.
`svctl up` (up.py) is the other front end over the same pieces.
"""

from __future__ import annotations

import os
import signal

from supervisor.clients import ControlServer
from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.driver import ServiceDriver
from supervisor.loop import Loop
from supervisor.unix import proc, rundir


class Runtime:
    def __init__(self, config: ServiceConfig, run_dir: str, console: bool = False, lock=None) -> None:
        self.config = config
        # as PID 1 (`svctl run` as a container's init) no PID file: it would say 1, which no
        # reader may believe, and nothing outside the container could use it
        as_init = os.getpid() == 1
        self.lock = None if as_init else lock
        self.loop = Loop(self)
        self.driver = ServiceDriver(config, run_dir, self.loop, console=console, lock=self.lock,
                                    mode="init" if as_init else "daemon",
                                    on_run_dir_recreated=self.reopen_to_clients)
        self.drivers = [self.driver]
        self.faults = self.driver.faults  # the loop's own troubles show in the service's status
        self.server: ControlServer | None = None
        self.ident_inode = None
        self.open_to_clients()

    # what launch.supervise needs
    @property
    def service_identity(self):
        return self.driver.service_identity

    def adopt(self, pid: int, pgid: int, output_fd: int | None = None) -> None:
        self.driver.adopt(pid, pgid, output_fd)

    def run(self, *first: ev.Event) -> int:
        self.loop.install_signals()
        proc.become_subreaper()
        self.driver.begin()
        self.driver.events.extend(first)
        self.loop.process()  # publishes state.json; only then the PID file (see launch.supervise)
        if self.lock is not None and self.driver.exit_code is None:
            self.driver.guarded("writing the PID file", self.lock.write, os.getpid())
        self.loop.run()
        self.shutdown()
        return self.driver.exit_code

    # ---- what the loop asks of its front end ------------------------------------------------

    def finished(self) -> bool:
        return self.driver.finished

    def after_round(self) -> None:
        self.driver.settle()

    def owns(self, fileobj) -> bool:
        return (self.server is not None and self.server.owns(fileobj)) or self.driver.owns(fileobj)

    def on_signal(self, number: int) -> None:
        if number in (signal.SIGTERM, signal.SIGINT):
            self.driver.events.append(ev.Stop())
        elif number == signal.SIGHUP:
            self.driver.request_reload(None, "signal")
        elif number == signal.SIGUSR1:
            self.driver.reopen_logs()

    def orphan_reaped(self, pid: int, status: int) -> None:
        from supervisor.unix.spawn import decode_wait_status

        self.driver.reaps.reaped(pid, decode_wait_status(status)[0])  # an escapee that exited

    def driver_for(self, name: str | None):
        return self.driver if name in (None, self.config.name) else None

    def on_request(self, driver, command: str, reply) -> None:
        driver.on_request(command, reply)

    # ---- the run directory's entries --------------------------------------------------------

    def open_to_clients(self) -> None:
        """The identity file and the control socket: how `svctl stop` and the rest find and reach us."""
        directory, me = self.driver.directory, self.driver.me
        if me is not None:  # lets `svctl stop` find and verify us without parsing anything
            self.ident_inode = rundir.write_ident(directory, f"{me.pid} {me.start_ticks} {me.boot_id} {me.exe}")
        self.server = ControlServer(os.path.join(directory, rundir.SOCKET), self.loop, self)

    def reopen_to_clients(self, _driver) -> None:
        """The run directory was made again (driver.recreate_run_dir): so are our entries in it."""
        self.loop.forget(self.server.server)
        self.server.server.close()
        self.open_to_clients()

    def shutdown(self) -> None:
        """Clean up and answer everyone waiting; the PID file goes before the answers do."""
        driver = self.driver
        driver.shutdown()
        driver.guarded("answering the last requests", self.server.close, driver.last_words)
        rundir.remove_own(driver.directory, rundir.IDENT, self.ident_inode)
        if self.lock is not None:
            driver.guarded("removing the PID file", self.lock.remove)  # before "stopped": the file is gone too
        driver.send_last_words()
        self.loop.close()
