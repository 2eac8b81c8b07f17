"""A configurable test service. Flags (any order):
  --ignore-term       ignore SIGTERM
  --ignore-usr1       ignore SIGUSR1
  --hup-log PATH      append "hup" to PATH on each SIGHUP (and keep running)
  --marker PATH       append "start <pid>" to PATH at start
  --exit N            exit with status N right away (after printing a line)
  --fork-grandchild   fork a grandchild (same process group) that sleeps, then exit 0
  --chatty            print a line every 50 ms
  --listen PORT       listen on [::1]:PORT (readiness tests)
  --delay S           sleep S seconds before listening
"""

import os
import signal
import socket
import sys
import time

args = sys.argv[1:]


def value(flag):
    return args[args.index(flag) + 1] if flag in args else None


print(f"service starting pid={os.getpid()}", flush=True)
if value("--marker"):
    with open(value("--marker"), "a") as handle:
        handle.write(f"start {os.getpid()}\n")
if value("--exit") is not None:
    print("exiting on purpose", file=sys.stderr, flush=True)
    sys.exit(int(value("--exit")))
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--ignore-usr1" in args:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
if value("--hup-log"):
    path = value("--hup-log")

    def on_hup(*_):
        with open(path, "a") as handle:
            handle.write(f"hup {os.getpid()}\n")

    signal.signal(signal.SIGHUP, on_hup)
if "--fork-grandchild" in args:
    if os.fork() == 0:
        time.sleep(1000)
        os._exit(0)
    sys.exit(0)
if value("--delay"):
    time.sleep(float(value("--delay")))
if value("--listen"):
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("::1", int(value("--listen"))))
    server.listen()
while True:
    if "--chatty" in args:
        print(f"tick {time.time()}", flush=True)
        time.sleep(0.05)
    else:
        time.sleep(1000)
