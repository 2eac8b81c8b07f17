"""The pure core: schedules, backoff and the supervisor's state machine.

Nothing in this package touches the operating system (no os, signal, time, subprocess, psutil...):
it takes events and the current monotonic time, and returns effects for the runtime to perform.
tests/unit/test_layering.py enforces that.
"""
