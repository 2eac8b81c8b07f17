"""The supervisor's clients: how they find it, requests in, answers out.

The run directory holds what clients need: the identity file (who the supervisor is) and the
control socket. Requests are one line, ``COMMAND NAME`` (unix/control.py); the ControlServer
takes them and hands each to the driver of service NAME (the per-service daemon has one, `svctl
up` many, all behind one socket); `start`, `stop`, `stop-all` (a stop that also takes what the
preset keeps on purpose, see unix/escapees.py) and `reload` become events for the driver's
machine, which answers them through Reply effects once the outcome is known; `reopen-logs` is
answered at once. A reply token is anything with ``answer(code,
message)``: a ClientReply for a control client, a launch.Launcher for the waiting `svctl start`.

At exit (issue 10 item 10) nobody is left unanswered: twenty concurrent `svctl stop` calls used to
get "Connection reset by peer" from the requests still queued, or still in the socket's backlog,
when the supervisor closed its socket. Now each gets an answer after the PID file is gone: a stop
"0 stopped" (it has what it asked for), anything else "1 the supervisor is exiting".
"""

from __future__ import annotations

import os
import selectors
from supervisor.core import events as ev
from supervisor.faults import describe
from supervisor.unix import control, rundir


def is_stop(request) -> bool:
    return isinstance(request, ev.Stop) or (isinstance(request, tuple) and request[0] in ("stop", "stop-all"))


class ControlServer:
    """The listening socket at PATH. FRONT: driver_for(name) -> driver or None (None: the one
    service of a per-service daemon), on_request(driver, command, connection) and faults."""

    def __init__(self, path: str, loop, front) -> None:
        self.path, self.loop, self.front = path, loop, front
        self.server = control.listen(path)
        self.inode = os.stat(path).st_ino
        loop.selector.register(self.server, selectors.EVENT_READ, self.on_connection)

    def owns(self, fileobj) -> bool:
        return fileobj is self.server and self.server.fileno() >= 0

    def on_connection(self, server) -> None:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # the fd limit: the client stays queued; look again in a moment
            self.front.faults.report("control", f"control socket: cannot accept a connection: {describe(exc)}")
            return self.loop.pause(server, self.on_connection)
        self.front.faults.report("control", None)
        request = control.read_request(connection)
        if request is None:
            return control.send_reply(connection, 2, "bad request")
        command, name = request
        driver = self.front.driver_for(name)
        if driver is None:
            return control.send_reply(connection, 2, f"no service {name!r} here")
        self.front.on_request(driver, command, ClientReply(connection))

    def close(self, last_words: list) -> None:
        """No new clients (the socket's name goes first); everyone in the backlog joins LAST_WORDS."""
        rundir.remove_path(self.path, self.inode)
        try:
            for connection, request in control.pending(self.server):
                reply = ClientReply(connection)
                last_words.append((reply, 0, "stopped") if is_stop(request)
                                  else (reply, 1, "the supervisor is exiting"))
        finally:
            self.loop.forget(self.server)
            self.server.close()


class Requests:
    """The driver's side of requests (a mixin of ServiceDriver); needs .faults, .events, .log,
    .output, .lock, .config, .child, .reloader, .leftovers, .exit_code, .cleaned_up, .last_words
    and .guarded()."""

    def on_request(self, command: str, reply) -> None:
        """REPLY: the client's ClientReply, the token its answer goes to."""
        if command in ("start", "reload"):
            self.guarded("repairing the PID file", self.repair_pidfile)
        if command == "start":
            self.events.append(ev.Start(reply))
        elif command == "reopen-logs":
            problem = self.reopen_logs()
            reply.answer(1 if problem else 0, f"logs not reopened: {problem}" if problem else "logs reopened")
        elif command in ("stop", "stop-all"):
            if command == "stop-all":  # the intent outlives this request: the stop may be under way
                self.leftovers.take_all = True  # until the stop run ends without exiting (the driver resets it)
                self.log.event("stop_all_requested")
            self.events.append(ev.Stop(reply, leftovers=self.child is None and bool(self.leftovers.escapees())))
        else:
            self.request_reload(reply, "cli")

    def request_reload(self, token, source: str) -> None:
        """Every reload first reopens the log files (logrotate's postrotate `reload`), and says
        whether the watched files still hold what the service runs on (then nothing restarts).

        The environment file is read again here: one that a start would refuse (a bad line,
        untrusted, missing) refuses the reload at once, with its reason (exit 6), and the running
        service keeps running, and no Reload reaches the machine. One that differs from what the
        service was spawned with is a change, like a watched file's."""
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
        if self.lock is None:  # under `svctl up`: no PID files
            return
        from supervisor.unix.pidfile import read_pidfile

        found = read_pidfile(self.config.pidfile)
        if found.kind != "ok" or found.pid != os.getpid():
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
        if self.round_replies is not None:  # sent once this round's state.json is written
            self.round_replies.append((token, code, message))
            return
        send_answer(token, code, message, self.faults)

    def answer_the_rest(self) -> None:
        """Requests still queued get an answer rather than a reset: a stop has what it asked
        for once the service is stopped; anything else comes too late."""
        for request in self.events:
            token = getattr(request, "token", None)
            if token is not None:
                self.last_words.append((token, 0, "stopped") if is_stop(request)
                                       else (token, 1, "the supervisor is exiting"))
        self.events.clear()


class ClientReply:
    """A control client waiting for its answer: a reply token, like launch.Launcher."""

    adds_problems = False  # a start's Launcher also tells what is wrong (see send_answer)

    def __init__(self, connection) -> None:
        self.connection = connection

    def answer(self, code: int, message: str) -> None:
        control.send_reply(self.connection, code, message)


def send_answer(token, code: int, message: str, faults) -> None:
    """TOKEN: anything with .answer(code, message) and .adds_problems (ClientReply, Launcher)."""
    if code == 0 and token.adds_problems and faults.current:  # started, but the caller should know what is wrong
        message = f"{message}; problems: {'; '.join(faults.problems()[:2])}"
    token.answer(code, message)
