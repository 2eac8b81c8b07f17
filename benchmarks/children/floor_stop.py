"""The floor for a stop command: read a PID file, SIGTERM the process, block on its pidfd until gone.

usage: floor_stop.py PIDFILE
What any Python control command must pay at least: interpreter start, one kill, one wait.
"""

import os
import select
import signal
import sys

pid = int(open(sys.argv[1]).read().split()[0])
fd = os.pidfd_open(pid)
os.kill(pid, signal.SIGTERM)
select.select([fd], [], [], 30)
