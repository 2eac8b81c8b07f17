"""Adopting a service whose supervisor died (a mixin of Runtime): watch it through a pidfd, and
take back its output pipe so capturing resumes where the dead supervisor left off."""

from __future__ import annotations

import os
import selectors
import stat

from supervisor.core import events as ev
from supervisor.unix import identity, proc
from supervisor.unix.spawn import Child


class Adoption:
    """Needs .child, .pgid, .service_identity, .selector, .events, .output, .adopted_pipes,
    .on_pidfd() and .guarded() (Runtime, Guard)."""

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
            self.selector.register(pidfd, selectors.EVENT_READ, self.on_pidfd)
            old_pipe = proc.pidfd_getfd(pidfd, output_fd) if isinstance(output_fd, int) else None
            if old_pipe is not None:
                self.guarded("taking back the output pipe", self.take_output_pipe, old_pipe)
        else:
            self.events.append(ev.Exited(pid, "exited before it could be adopted", False,
                                         identity.process_group_alive(pgid)))

    def take_output_pipe(self, fd: int) -> None:
        """The descriptor is whatever the service now has at that number (it may have put anything
        there): keep it only if it is a pipe we can watch; otherwise supervise without its output."""
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise OSError(f"descriptor {fd} of the service is no longer a pipe; its output is not captured")
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, self.drain_adopted_output)
        except BaseException:
            os.close(fd)
            raise
        self.adopted_pipes.add(fd)

    def drain_adopted_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            self.output.write(data)
        else:  # every writer is gone
            self.selector.unregister(fd)
            self.adopted_pipes.discard(fd)
            os.close(fd)
