#!/usr/bin/env bash
# Runs a command at the lowest CPU and I/O priority, in a session of its own, for work that
# should only take what the rest leaves idle (./sw test builds the Go tools so while the tests
# run, and stops them with `kill -- -<pid>`).
#
#   setsid deploy/idle.sh command [args...]
#
# With the kernel's autogroup scheduling (on by default on Debian and most desktops and VMs),
# every session is a CPU group of its own and the groups share the CPU evenly: a process's nice
# value weighs it only against the processes of its own session. A build niced to 19 in a new
# session still took half of a 2-core machine from the tests (the broker-loss test took 316-361 s
# beside the helm build instead of 224 s). So the session's group is niced as well. That is why
# a session of its own is required: niced, the caller's group would slow the caller down.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: setsid deploy/idle.sh command [args...]" >&2; exit 2; }
session="$(ps -o sid= -p $$ | tr -d ' ')"
if [[ "$session" != "$$" ]]; then
    echo "deploy/idle.sh: run it under setsid: it lowers the CPU share of its whole session" >&2
    exit 2
fi
if [[ -w /proc/self/autogroup ]]; then
    echo 19 >/proc/self/autogroup
fi
exec nice -n 19 ionice -c 3 "$@"
