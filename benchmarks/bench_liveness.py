"""Liveness idle cost: what `health = URL` costs a supervisor that has nothing else to do.

Two svctl services run the same tiny HTTP server (python http.server on [::1], silent, counting the
requests it answers in a file): one with `health` every 1 s, one without. Both have `ready` on the
same URL, so they differ in `health` alone. After a settle, both supervisors are sampled together
over the window (10 s, --quick 5 s):

  - loop wake-ups/s: voluntary + involuntary context switches of the supervisor's main thread
    (/proc/PID/task/PID/status), i.e. how often the loop woke up;
  - thread wake-ups/s: the same over every thread (the loop and the probe worker, which lives
    from the first probe on; a thread that ended would be missing here, the CPU time has it);
  - CPU ms/s: utime + stime of the whole process, ended threads included (/proc/PID/stat);
  - probes/s: requests the server answered (without health: none).

Expected: the loop wakes twice per probe (the "health" timer, and the answer down the wake-up
pipe) and never without health; the worker a few times per probe (its queue, the connect, the
answer); nothing else. A passing probe that changes nothing writes no state.json.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from harness import PYTHON, alive, wait_until
from subjects import Svctl

INTERVAL = 1.0
SETTLE = 1.5

SERVER = """\
import http.server, os, socket, sys

class Server(http.server.HTTPServer):
    address_family = socket.AF_INET6

count = 0

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        with open(sys.argv[2] + ".tmp", "w") as out:
            out.write(str(count))
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

Server(("::1", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


def switches(path: str) -> int:
    total = 0
    for line in Path(path).read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            total += int(line.split()[1])
    return total


def sample(pid: int) -> dict:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    threads = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            threads += switches(f"/proc/{pid}/task/{task}/status")
        except OSError:
            pass  # the thread ended meanwhile
    return {"t": time.monotonic(), "loop": switches(f"/proc/{pid}/task/{pid}/status"), "threads": threads,
            "cpu": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}


def requests(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def run(ctx) -> None:
    if not ctx.svctl_ok:
        ctx.note("liveness: svctl not measurable")
        return
    window = 5.0 if ctx.quick else 10.0
    svc = ctx.keep(Svctl("svctl-liveness"))
    script = svc.root / "server.py"
    script.write_text(SERVER)
    counters: dict[str, Path] = {}
    for name, health in (("with-health", True), ("without-health", False)):
        port = free_port()
        url = f"http://[::1]:{port}/"
        counters[name] = svc.root / f"{name}.requests"
        svc.define(name, [PYTHON, str(script), str(port), str(counters[name])], ready=url, ready_timeout=10,
                   health=url if health else None, health_interval=INTERVAL if health else None)
        wall, rc, out = svc.start(name)
        if rc != 0:
            ctx.note(f"liveness: svctl start {name} exited {rc}: {out.strip()[-300:]}")
            return
    pids = {name: svc.supervisor_pid(name) for name in counters}
    wait_until(lambda: all(pid and alive(pid) for pid in pids.values()), 5, "the supervisors")
    time.sleep(SETTLE)
    before = {name: (sample(pid), requests(counters[name])) for name, pid in pids.items()}
    time.sleep(window)
    after = {name: (sample(pid), requests(counters[name])) for name, pid in pids.items()}
    rows = []
    for name in pids:
        (b, b_req), (a, a_req) = before[name], after[name]
        seconds = a["t"] - b["t"]
        row = {
            "subject": name,
            "health_interval_s": INTERVAL if name == "with-health" else None,
            "seconds": seconds,
            "loop_wakeups_per_s": (a["loop"] - b["loop"]) / seconds,
            "thread_wakeups_per_s": (a["threads"] - b["threads"]) / seconds,
            "cpu_ms_per_s": (a["cpu"] - b["cpu"]) * 1000 / seconds,
            "probes_per_s": (a_req - b_req) / seconds,
        }
        rows.append(row)
        ctx.log(f"  liveness idle {name}: loop {row['loop_wakeups_per_s']:.2f} wake-ups/s, threads "
                f"{row['thread_wakeups_per_s']:.2f}/s, cpu {row['cpu_ms_per_s']:.2f} ms/s, "
                f"{row['probes_per_s']:.2f} probes/s")
    with_h, without = rows
    if with_h["probes_per_s"]:
        extra = with_h["loop_wakeups_per_s"] - without["loop_wakeups_per_s"]
        with_h["loop_wakeups_per_probe"] = extra / with_h["probes_per_s"]
        ctx.log(f"  liveness: {with_h['loop_wakeups_per_probe']:.2f} extra loop wake-ups per probe")
    ctx.extra["liveness_idle"] = rows
    for name in pids:
        svc.stop(name)
