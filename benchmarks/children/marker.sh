#!/bin/sh
# The trivial service used by every metric: announce "I started" by creating DIR/<pid>, then sleep.
# usage: marker.sh DIR [ignore-term]
# Normally the shell execs sleep, so DIR/<pid> names the process to signal and it dies on SIGTERM.
# With "ignore-term" the shell stays (same PID) and does not exit on SIGTERM; it records each
# SIGTERM by creating DIR/term-<pid>, so the harness sees when the stop schedule began.
if [ "$2" = ignore-term ]; then
    trap ': > "$1/term-$$"' TERM
    : > "$1/$$"
    /bin/sleep 1000000 &
    child=$!
    while :; do wait "$child"; done
fi
: > "$1/$$"
exec /bin/sleep 1000000
