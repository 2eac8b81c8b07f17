"""The floor: the least a Python supervisor must do to restart a crashed child.

usage: floor_parent.py COMMAND [ARGS...]
Block in waitpid until the child exits, then fork+exec it again. No logging, no policy, no poll.
"""

import os
import sys

argv = sys.argv[1:]
while True:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
