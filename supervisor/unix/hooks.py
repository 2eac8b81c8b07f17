"""The on_failure hook: a command run when the service gives up, a reload is rolled back, or
liveness restarts it (issue 13 item 6).

No thread waits on the hook: the supervisor is a subreaper that reaps every child with
waitpid(-1) (Runtime.reap), so a thread in Popen.wait() would race it for the exit status. The
hook is started like the service (subprocess.Popen's C fork/exec, no thread), Runtime.reap()
hands its status to exited(), its output pipe is one more descriptor in the runtime's selector
and its deadline is the runtime timer "hook" (Runtime.fire calls deadline()).

A hook is a notifier; nothing it does may touch supervision: it runs as the service's user with
a minimal environment (PATH, LANG, SVCTL_SERVICE, SVCTL_EVENT, SVCTL_REASON; not the service's
environment, which may hold secrets), in its own session, stdin /dev/null, from /. Its output is
read as it comes (a full pipe never blocks it) and only the last OUTPUT_KEPT bytes go into the
events file ("hook_finished", redacted like every event). After on_failure_timeout its whole
process group gets SIGKILL ("hook_timeout"). Its process group never outlives it: what it left
behind is killed before its main process is reaped (see before_reap). One hook runs at a time;
later firings wait, up to QUEUE_LIMIT, then are dropped ("hook_dropped"). No method raises.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import time

from supervisor.faults import describe
from supervisor.log import redact

# the machine's / liveness code's event names -> SVCTL_EVENT
EVENTS = {"gave_up": "gave_up", "rolled_back": "rolled_back", "health_restart": "health_restart"}
TIMER = "hook"
QUEUE_LIMIT = 4
OUTPUT_KEPT = 4096  # bytes of output (its end: where errors are) kept for the event
READ_SIZE = 65536
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the service's default


class FailureHooks:
    def __init__(self, config, log, selector, timers: dict) -> None:
        self.config, self.log, self.selector, self.timers = config, log, selector, timers
        self.queue: collections.deque = collections.deque()
        self.popen: subprocess.Popen | None = None
        self.pid: int | None = None  # the running hook's PID (and process group)
        self.event = ""
        self.pipe: int | None = None
        self.output = b""
        self.output_bytes = 0
        self.started_at = 0.0
        self.timed_out = False

    # ---- firing -----------------------------------------------------------------------------

    def fire_for(self, name: str, fields: dict) -> None:
        """Called for every ev.Log the runtime performs; starts the hook on the three failures."""
        event = EVENTS.get(name)
        if event is not None and self.config.on_failure:
            self.start(event, str(fields.get("reason") or ""))

    def start(self, event: str, reason: str) -> None:
        try:
            if self.pid is not None:
                if len(self.queue) >= QUEUE_LIMIT:
                    self.log.event("hook_dropped", level="warning", hook_event=event, reason=reason,
                                   detail=f"{QUEUE_LIMIT} hook runs already waiting")
                else:
                    self.queue.append((event, reason))
                return
            self.launch(event, reason)
        except Exception as exc:  # never into the loop
            self.log.event("hook_failed", level="error", hook_event=event, error=describe(exc))

    def launch(self, event: str, reason: str) -> None:
        from supervisor.unix.spawn import user_environment

        argv = list(self.config.on_failure)
        try:
            # the service's uid, gid, groups and process settings; {}: not its environment file
            _, identity = user_environment(self.config, {})
            environment = {"PATH": PATH, "LANG": "C.UTF-8", "SVCTL_SERVICE": self.config.name,
                           "SVCTL_EVENT": event, "SVCTL_REASON": redact(reason, self.log.secrets)}
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            try:
                self.popen = subprocess.Popen(
                    argv, cwd="/", env=environment, stdin=subprocess.DEVNULL, stdout=write_end,
                    stderr=write_end, start_new_session=True, restore_signals=True, **identity)
            except BaseException:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
        except Exception as exc:  # cannot exec, no such user, the fd limit
            self.log.event("hook_failed", level="error", hook_event=event, command=argv[0],
                           error=getattr(exc, "strerror", None) or describe(exc))
            return self.next()
        self.pid, self.event, self.timed_out = self.popen.pid, event, False
        self.output, self.output_bytes, self.started_at = b"", 0, time.monotonic()
        self.pipe = read_end
        try:
            os.set_blocking(read_end, False)
            self.selector.register(read_end, selectors.EVENT_READ, self.drain)
        except Exception as exc:  # unread, it would fill and block the hook until its timeout
            self.close_pipe()
            self.log.event("hook_output_lost", level="warning", error=describe(exc))
        self.timers[TIMER] = self.started_at + self.config.on_failure_timeout
        self.log.event("hook_started", hook_event=event, pid=self.pid, command=argv[0])

    def next(self) -> None:
        if self.queue and self.pid is None:
            self.launch(*self.queue.popleft())

    # ---- the runtime's calls ----------------------------------------------------------------

    def owns(self, pid: int) -> bool:
        return self.pid is not None and pid == self.pid

    def deadline(self) -> None:
        """The "hook" timer: kill the whole group. Its main process is not reaped yet (we are its
        only reaper), so its PID, and with it the group's ID, cannot belong to anyone else."""
        if self.pid is None:
            return
        self.timed_out = True
        self.kill_group()

    def before_reap(self, pid: int) -> None:
        """PID has exited but is still a zombie (Runtime.reap peeks with WNOWAIT): if it is the
        hook, what it left in its group dies now, while the zombie still holds the group's ID."""
        if self.owns(pid):
            self.kill_group()

    def exited(self, pid: int, status: int) -> None:
        if not self.owns(pid):
            return
        try:
            self.finish(status)
        except Exception as exc:
            self.log.event("hook_failed", level="error", hook_event=self.event, error=describe(exc))
        finally:
            self.pid = self.popen = None
            self.timers.pop(TIMER, None)
            self.close_pipe()
        self.start_queued()

    def finish(self, status: int) -> None:
        from supervisor.unix.spawn import decode_wait_status

        if self.popen is not None:
            self.popen.returncode = status  # so that subprocess never waits for it behind our back
        if self.pipe is not None:  # the writers are dead (the group was killed): what is left
            for _ in range(16):
                if not self.read_some():
                    break
        reason, clean = decode_wait_status(status)
        name = "hook_timeout" if self.timed_out else "hook_finished"
        level = "info" if clean and not self.timed_out else "warning"
        text = self.output.decode("utf-8", "replace")
        fields = {"hook_event": self.event, "pid": self.pid, "status": reason,
                  "seconds": round(time.monotonic() - self.started_at, 3), "output": text}
        if self.output_bytes > len(self.output):
            fields["output_bytes"] = self.output_bytes  # clipped: only the end is kept
        if self.timed_out:
            fields["timeout"] = self.config.on_failure_timeout
        self.log.event(name, level=level, **fields)

    def start_queued(self) -> None:
        try:
            self.next()
        except Exception as exc:
            self.log.event("hook_failed", level="error", error=describe(exc))

    def drain(self, _fd) -> None:
        """Selector callback: take what the hook wrote (never raises)."""
        try:
            if not self.read_some():
                self.close_pipe()
        except Exception:
            self.close_pipe()

    def read_some(self) -> bool:
        """Read once; False at the end of the output (or nothing left for now after an exit)."""
        try:
            data = os.read(self.pipe, READ_SIZE)
        except BlockingIOError:
            return self.pid is not None
        except OSError:
            data = b""
        if not data:
            self.close_pipe()
            return False
        self.output_bytes += len(data)
        self.output = (self.output + data)[-OUTPUT_KEPT:]
        return True

    def close(self) -> None:
        """The supervisor exits: a hook still running would be left unsupervised, so it is killed."""
        for event, reason in self.queue:
            self.log.event("hook_dropped", level="warning", hook_event=event, reason=reason,
                           detail="the supervisor is exiting")
        self.queue.clear()
        if self.pid is None:
            return
        self.kill_group()
        try:
            for _ in range(100):  # SIGKILL is quick; a process in D state is left to init
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.log.event("hook_killed", level="warning", hook_event=self.event, pid=pid,
                                   reason="the supervisor is exiting")
                    if self.popen is not None:
                        self.popen.returncode = status
                    break
                time.sleep(0.01)
        except OSError:
            pass
        self.pid = None
        self.close_pipe()

    # ---- helpers ----------------------------------------------------------------------------

    def kill_group(self) -> None:
        for kill, target in ((os.killpg, self.pid), (os.kill, self.pid)):  # kill: it may have left its group
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass

    def close_pipe(self) -> None:
        if self.pipe is None:
            return
        try:
            self.selector.unregister(self.pipe)
        except (KeyError, ValueError):
            pass
        os.close(self.pipe)
        self.pipe = None
