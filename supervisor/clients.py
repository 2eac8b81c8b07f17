"""The Runtime's clients: how they find it, requests in, answers out (a mixin of Runtime).

The run directory holds what clients need: the identity file (who the supervisor is) and the
control socket; if the directory vanishes while we run, it is made again. Requests are one line
on RUN_DIR/NAME/control.sock (unix/control.py); `start`, `stop`, `stop-all` (a stop that also
takes what the preset keeps on purpose, see unix/escapees.py) and `reload` become events for the
machine, which answers them through Reply effects once the outcome is known; `reopen-logs` is
answered at once. The waiting `svctl start` is a Launcher.

At exit (issue 10 item 10) nobody is left unanswered: twenty concurrent `svctl stop` calls used to
get "Connection reset by peer" from the requests still queued, or still in the socket's backlog,
when the supervisor closed its socket. Now each gets an answer after the PID file is gone: a stop
"0 stopped" (it has what it asked for), anything else "1 the supervisor is exiting".
"""

from __future__ import annotations

import os
import selectors
import socket

from supervisor.core import events as ev
from supervisor.faults import describe
from supervisor.launch import Launcher
from supervisor.unix import control, rundir


class Requests:
    """Needs .faults, .events, .log, .output, .lock, .config, .me, .directory, .run_dir, .selector,
    .leftovers, .state_file, .exit_code, .cleaned_up, .last_words, .pause() and .guarded() (Runtime, Guard)."""

    def open_to_clients(self) -> None:
        """The identity file and the control socket: how `svctl stop` and the rest find and reach us."""
        self.ident_inode = None
        if self.me is not None:  # lets `svctl stop` find and verify us without parsing anything
            self.ident_inode = rundir.write_ident(
                self.directory, f"{self.me.pid} {self.me.start_ticks} {self.me.boot_id} {self.me.exe}")
        path = os.path.join(self.directory, rundir.SOCKET)
        self.server = control.listen(path)
        self.socket_inode = os.stat(path).st_ino
        self.selector.register(self.server, selectors.EVENT_READ, self.on_connection)

    def recreate_run_dir(self) -> bool:
        """The run directory went away under us (rm -r, a remounted /run): without it `status` sees
        nothing and `stop` can't reach us, so make it again, with all that was in it."""
        from supervisor.unix.statefile import StateFile

        self.directory = rundir.ensure(self.run_dir, self.config.name)
        self.selector.unregister(self.server)
        self.server.close()
        self.open_to_clients()
        self.state_file.close()
        self.state_file = StateFile(self.directory, rundir.STATE)
        self.log.event("run_directory_recreated", level="warning", directory=self.directory)
        return True

    def close_to_clients(self) -> None:
        """At exit: no new clients (the socket's name goes first), then an answer for everyone left."""
        rundir.remove_own(self.directory, rundir.SOCKET, self.socket_inode)
        try:
            self.answer_the_rest()
        finally:
            self.server.close()
            rundir.remove_own(self.directory, rundir.IDENT, self.ident_inode)

    def on_connection(self, server: socket.socket) -> None:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # the fd limit: the client stays queued; look again in a moment
            self.faults.report("control", f"control socket: cannot accept a connection: {describe(exc)}")
            return self.pause(server, self.on_connection)
        self.faults.report("control", None)
        command = control.read_request(connection)
        if command in ("start", "reload"):
            self.guarded("repairing the PID file", self.repair_pidfile)
        if command is None:
            control.send_reply(connection, 2, "bad request")
        elif command == "start":
            self.events.append(ev.Start(connection))
        elif command == "reopen-logs":
            problem = self.reopen_logs()
            control.send_reply(connection, 1 if problem else 0, f"logs not reopened: {problem}" if problem
                               else "logs reopened")
        elif command in ("stop", "stop-all"):
            if command == "stop-all":  # the intent outlives this request: the stop may be under way
                self.leftovers.take_all = True  # until the stop run ends without exiting (Runtime resets it)
                self.log.event("stop_all_requested")
            self.events.append(ev.Stop(connection, leftovers=self.child is None and bool(self.leftovers.escapees())))
        else:
            self.request_reload(connection, "cli")

    def request_reload(self, token, source: str) -> None:
        """Every reload first reopens the log files (logrotate's postrotate `reload`), and says
        whether the watched files still hold what the service runs on (then nothing restarts).

        The environment file is read again here: one that a start would refuse (a bad line,
        untrusted, missing) refuses the reload at once, with its reason (exit 6), and the running
        service keeps running, and no Reload reaches the machine. One that differs from what the service was spawned with is a change, like a watched file's."""
        self.reopen_logs()
        from_file = None
        if self.config.environment_file:
            from supervisor.unix import envfile

            try:
                from_file = envfile.read(self.config)
            except Exception as exc:  # EnvFileUnusable; anything else must not kill the loop either
                self.log.event("reload_refused", level="error", source=source, reason=str(exc))
                self.answer(token, 6, f"reload refused: {exc}")
                return
        unchanged = self.reloader is not None and bool(self.guarded("comparing the watched files",
                                                                      self.reloader.unchanged))
        if from_file is not None and (self.child is None or self.child.environment_file != from_file):
            unchanged = False  # only a restart gives the service the new environment
        self.events.append(ev.Reload(token, source, unchanged))

    def repair_pidfile(self) -> None:
        """`start` on a running service also restores a PID file someone damaged (garbage, 0666)."""
        from supervisor.unix.pidfile import read_pidfile

        found = read_pidfile(self.config.pidfile)
        if self.lock is not None and (found.kind != "ok" or found.pid != os.getpid()):
            self.lock.write(os.getpid())
            self.log.event("pidfile_repaired", was=found.reason or f"pid {found.pid}")

    def reopen_logs(self) -> str | None:
        """Both files anew (logrotate); None, or what failed (the old descriptors then stay)."""
        problems = [problem for problem in (self.output.reopen(), self.log.reopen()) if problem]
        if problems:
            self.log.event("reopen_failed", level="error", problems=problems)
            return "; ".join(problems)
        self.log.event("logs_reopened")
        return None

    def answer(self, token, code: int, message: str) -> None:
        if token is None:
            return
        if self.exit_code is not None and not self.cleaned_up:
            self.last_words.append((token, code, message))  # sent by shutdown, after the cleanup
            return
        if isinstance(token, Launcher):
            if code == 0 and self.faults.current:  # started, but the caller should know what is wrong
                message = f"{message}; problems: {'; '.join(self.faults.problems()[:2])}"
            token.answer(code, message)
        elif isinstance(token, socket.socket):
            control.send_reply(token, code, message)

    def answer_the_rest(self) -> None:
        """Requests still queued, or not yet accepted, get an answer rather than a reset: a stop
        has what it asked for once the PID file is gone; anything else comes too late."""
        waiting = [(event, getattr(event, "token", None)) for event in self.events]
        waiting += [(command, connection) for connection, command in control.pending(self.server)]
        for request, token in waiting:
            if token is not None:
                stop = isinstance(request, ev.Stop) or request in ("stop", "stop-all")
                self.last_words.append((token, 0, "stopped") if stop else (token, 1, "the supervisor is exiting"))
        self.events.clear()
