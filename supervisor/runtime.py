"""The supervisor's loop: turns OS happenings into events for the machine and performs its effects.

Everything that can wake the supervisor is a file descriptor in one selector: the signal wake-up
pipe (SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGUSR1 via ``signal.set_wakeup_fd``, plus a zero byte when
a helper thread posts an event), the control socket, the service's output pipe and, for a service
adopted from a dead supervisor, its pidfd. The loop sleeps until one is readable or the next
deadline; there is no polling tick.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import socket
import time

from supervisor.config import ServiceConfig
from supervisor.core import events as ev
from supervisor.core.backoff import BackoffPolicy
from supervisor.core.machine import IllegalTransition, Machine, Policy
from supervisor.errors import SvctlError
from supervisor.launch import Launcher
from supervisor.log import EventLog
from supervisor.unix import control, identity, proc, rundir
from supervisor.unix.logcapture import LogCapture
from supervisor.unix.spawn import Child, decode_wait_status, spawn

HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1)
WATCH_BYTE = 0xFE  # written to the wake-up pipe by the file watcher's thread (signal numbers are < 65)


def policy_for(config: ServiceConfig) -> Policy:
    return Policy(
        schedule=config.stop, restart=config.restart,
        ready_timeout=config.ready_timeout if config.ready else None, start_seconds=config.start_seconds,
        reload_signal=config.reload_signal, has_check=bool(config.check or config.watch),
        backoff=BackoffPolicy(config.min_uptime, config.backoff_initial, config.backoff_max,
                              config.give_up_after, config.give_up_window, config.give_up_cooldown),
    )


class Runtime:
    def __init__(self, config: ServiceConfig, run_dir: str, console: bool = False, lock=None) -> None:
        self.config = config
        self.lock = lock
        self.directory = rundir.ensure(run_dir, config.name)
        self.machine = Machine(policy_for(config))
        self.selector = selectors.DefaultSelector()
        self.events: collections.deque = collections.deque()  # posted by the loop and by helper threads
        self.timers: dict[str, float] = {}
        self.child: Child | None = None
        self.pgid: int | None = None
        self.service_identity: identity.Identity | None = None
        self.awaiting_group = False
        self.probe = None
        self.reloader = None
        self.exit_code: int | None = None
        self.last_words: list = []  # replies held back until the PID file is gone
        self.cleaned_up = False
        self.me = identity.identify(os.getpid())
        from supervisor.config import record

        self.config_record = record(config)  # lets `svctl status` skip the TOML parser
        if self.me is not None:  # lets `svctl stop` find and verify us without parsing anything
            rundir.write_ident(self.directory, f"{self.me.pid} {self.me.start_ticks} {self.me.boot_id} {self.me.exe}")
        self.log = EventLog(config.events_file, config.name, console)
        self.output = LogCapture(config.log_file, config.log_max_bytes, config.log_backups)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.server = control.listen(os.path.join(self.directory, rundir.SOCKET))
        self.selector.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        self.selector.register(self.server, selectors.EVENT_READ, self.on_connection)
        self.selector.register(self.output.read_fd, selectors.EVENT_READ, lambda _: self.output.drain())

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, *first: ev.Event) -> int:
        for number in HANDLED_SIGNALS:
            signal.signal(number, lambda *_: None)  # the C handler writes the number to wake_w
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        proc.become_subreaper()
        if self.config.watch or self.config.check:
            from supervisor.reloader import ConfigReloader

            self.reloader = ConfigReloader(self.config, self.directory, self.log, self.wake_for_watch)
            self.reloader.start()
        self.events.extend(first)
        self.process()
        while self.exit_code is None:
            deadline = min(self.timers.values(), default=None)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                key.data(key.fileobj)
            self.fire_timers()
            self.process()
        self.shutdown()
        return self.exit_code

    def post(self, event: ev.Event) -> None:
        """Thread-safe: queue an event and wake the loop."""
        self.events.append(event)
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def process(self) -> None:
        while self.events and self.exit_code is None:
            event = self.events.popleft()
            try:
                effects = self.machine.handle(event, time.monotonic())
            except IllegalTransition as exc:
                self.log.event("illegal_transition", level="error", detail=str(exc))
                continue
            for effect in effects:
                self.perform(effect)
            self.publish()

    def fire_timers(self) -> None:
        now = time.monotonic()
        for name, at in sorted(self.timers.items(), key=lambda item: item[1]):
            if at <= now:
                del self.timers[name]
                if name == "check":
                    self.reloader.kill_check()
                elif name == "watch":
                    reload, later = self.reloader.fire()
                    if later is not None:
                        self.timers["watch"] = later
                    if reload is not None:
                        self.events.append(reload)
                elif name == "stop" and self.awaiting_group and not identity.process_group_alive(self.pgid):
                    self.group_gone()
                else:
                    self.events.append(ev.Timer(name))

    # ---- wake-ups ---------------------------------------------------------------------------

    def on_wake(self, _fd) -> None:
        try:
            data = os.read(self.wake_r, 4096)
        except BlockingIOError:
            return
        for number in data:
            if number == signal.SIGCHLD:
                self.reap()
            elif number in (signal.SIGTERM, signal.SIGINT):
                self.events.append(ev.Stop())
            elif number == signal.SIGHUP:
                self.events.append(ev.Reload(source="signal"))
            elif number == signal.SIGUSR1:
                self.reopen_logs()
            elif number == WATCH_BYTE and self.reloader is not None:
                self.timers["watch"] = self.reloader.kick()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self.child is not None and pid == self.child.pid:
                self.child_exited(status)
            elif self.reloader is not None and pid == self.reloader.check_pid:
                self.timers.pop("check", None)
                self.events.append(self.reloader.finish_check(status))
            else:
                self.log.event("reaped", pid=pid, status=decode_wait_status(status)[0])
        if self.awaiting_group and not identity.process_group_alive(self.pgid):
            self.group_gone()

    def child_exited(self, status: int | None) -> None:
        child, self.child = self.child, None
        if child.popen is not None and status is not None:
            child.popen.returncode = status
        if child.pidfd is not None:
            try:
                self.selector.unregister(child.pidfd)
            except (KeyError, ValueError):
                pass
            os.close(child.pidfd)
        reason, clean = decode_wait_status(status) if status is not None else ("exited (status unknown: adopted)", False)
        self.output.drain()
        self.service_identity = None
        self.events.append(ev.Exited(child.pid, reason, clean, identity.process_group_alive(self.pgid)))

    def group_gone(self) -> None:
        self.awaiting_group = False
        self.events.append(ev.GroupGone())

    def on_connection(self, server: socket.socket) -> None:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return
        command = control.read_request(connection)
        if command in ("start", "reload"):
            self.repair_pidfile()
        if command is None:
            control.send_reply(connection, 2, "bad request")
        elif command == "start":
            self.events.append(ev.Start(connection))
        elif command == "reopen-logs":
            self.reopen_logs()
            control.send_reply(connection, 0, "logs reopened")
        else:
            self.events.append(ev.Stop(connection) if command == "stop" else ev.Reload(connection, "cli"))

    def repair_pidfile(self) -> None:
        """`start` on a running service also restores a PID file someone damaged (garbage, 0666)."""
        from supervisor.unix.pidfile import read_pidfile

        found = read_pidfile(self.config.pidfile)
        if self.lock is not None and (found.kind != "ok" or found.pid != os.getpid()):
            self.lock.write(os.getpid())
            self.log.event("pidfile_repaired", was=found.reason or f"pid {found.pid}")

    def reopen_logs(self) -> None:
        self.output.reopen()
        self.log.reopen()
        self.log.event("logs_reopened")

    # ---- effects ----------------------------------------------------------------------------

    def perform(self, effect) -> None:
        match effect:
            case ev.Spawn():
                self.start_service(effect.attempt)
            case ev.Signal(signal=number, group=group):
                self.send(number, group)
            case ev.ArmTimer(name=name, at=at):
                self.timers[name] = at
            case ev.CancelTimer(name=name):
                self.timers.pop(name, None)
            case ev.StartProbe():
                from supervisor.unix.probe import Probe

                self.probe = Probe(self.config.ready, lambda: self.post(ev.Ready()))
            case ev.StopProbe():
                if self.probe is not None:
                    self.probe.cancel()
                    self.probe = None
            case ev.RunCheck():
                verdict = self.reloader.begin_check()
                if verdict is not None:
                    self.events.append(verdict)
                else:
                    self.timers["check"] = self.reloader.check_deadline
            case ev.AwaitGroup():
                self.awaiting_group = True
                if not identity.process_group_alive(self.pgid):
                    self.group_gone()
            case ev.Reply(token=token, code=code, message=message):
                self.answer(token, code, message)
            case ev.Notify(message=message):
                proc.sd_notify(message)
            case ev.Log(event=name, fields=fields):
                self.log.event(name, **fields)
            case ev.SaveGood() | ev.RestoreGood() if self.reloader is not None:
                self.reloader.snapshot("save" if isinstance(effect, ev.SaveGood) else "restore")
            case ev.ExitSupervisor(code=code):
                self.exit_code = code

    def answer(self, token, code: int, message: str) -> None:
        if self.exit_code is not None and not self.cleaned_up:
            self.last_words.append((token, code, message))  # sent by shutdown, after the cleanup
            return
        if isinstance(token, Launcher):
            token.answer(code, message)
        elif isinstance(token, socket.socket):
            try:
                self.selector.unregister(token)
            except (KeyError, ValueError):
                pass
            control.send_reply(token, code, message)

    def start_service(self, attempt: str) -> None:
        if self.config.preset == "jupyterhub":
            from supervisor.jupyterhub.preset import cleanup_before_start

            for line in cleanup_before_start(self.config):
                self.log.event("preset_cleanup", detail=line)
        try:
            self.child = spawn(self.config, self.output.write_fd, keep_fds=(self.output.read_fd,))
        except (OSError, SvctlError) as exc:
            reason = f"cannot run {self.config.command[0]}: {getattr(exc, 'strerror', None) or exc}"
            self.events.append(ev.SpawnFailed(reason))
            return
        self.pgid = self.child.pid  # the service leads its own session and process group
        self.service_identity = identity.identify(self.child.pid)
        self.events.append(ev.Spawned(self.child.pid))

    def adopt(self, pid: int, pgid: int, output_fd: int | None = None) -> None:
        """Watch a service we did not start (its supervisor died) through a pidfd.

        The service still holds the read end of its old output pipe (see logcapture); taking a copy
        of it back resumes capturing its output where the dead supervisor left off.
        """
        pidfd = proc.pidfd_open(pid)
        self.child = Child(None, pid, pidfd)
        self.pgid = pgid
        self.service_identity = identity.identify(pid)
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, lambda _: self.child_exited(None))
            old_pipe = proc.pidfd_getfd(pidfd, output_fd) if output_fd is not None else None
            if old_pipe is not None:
                os.set_blocking(old_pipe, False)
                self.selector.register(old_pipe, selectors.EVENT_READ, self.drain_adopted_output)
        else:
            self.events.append(ev.Exited(pid, "exited before it could be adopted", False,
                                         identity.process_group_alive(pgid)))

    def drain_adopted_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            self.output.write(data)
        else:  # every writer is gone
            self.selector.unregister(fd)
            os.close(fd)

    def send(self, number: int, group: bool) -> None:
        if not group and self.child is not None:
            proc.send_signal(self.child.pidfd, self.child.pid, number)
        elif self.pgid is not None and self.pgid > 1:
            try:
                os.killpg(self.pgid, number)
            except ProcessLookupError:
                pass

    def wake_for_watch(self) -> None:
        """Runs in the watcher's thread: only a byte down the pipe, the loop does the rest."""
        try:
            os.write(self.wake_w, bytes([WATCH_BYTE]))
        except BlockingIOError:
            pass

    # ---- state for `svctl status` -----------------------------------------------------------

    def publish(self) -> None:
        status = self.machine.status()
        now_wall, now_mono = time.time(), time.monotonic()
        for key in ("started_at", "ready_at", "last_exit_at", "next_retry_at", "degraded_at"):
            if status[key] is not None:
                status[key] = now_wall - (now_mono - status[key])
        if status["rejected"] is not None:
            status["rejected"] = [status["rejected"][0], now_wall - (now_mono - status["rejected"][1])]
        rundir.write_state(self.directory, {
            "version": 1, "name": self.config.name, "updated": now_wall,
            "supervisor": self.me.to_dict() if self.me else None,
            "service": self.service_identity.to_dict() if self.service_identity else None,
            "pgid": self.pgid, "output_fd": self.output.read_fd, "machine": status,
            "config": self.config_record,
        })

    def shutdown(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        if self.probe is not None:
            self.probe.cancel()
        for key in list(self.selector.get_map().values()):
            if isinstance(key.fileobj, socket.socket) and key.fileobj is not self.server:
                control.send_reply(key.fileobj, 1, "the supervisor is exiting")
        self.server.close()
        for entry in (rundir.SOCKET, rundir.IDENT):
            try:
                os.unlink(os.path.join(self.directory, entry))
            except FileNotFoundError:
                pass
        self.output.close()
        self.publish()
        if self.lock is not None:
            self.lock.remove()  # before answering: "stopped" means the PID file is gone too
        self.cleaned_up = True
        for token, code, message in self.last_words:
            self.answer(token, code, message)
