#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by the pids it recorded.
set -uo pipefail
STATE=${SLURM_CI_STATE:-/tmp/windtunnel-slurm-ci}
[ -f "$STATE/pids" ] || exit 0
# slurmd and slurmctld first, munged last (they authenticate through it).
for pid in $(tac "$STATE/pids"); do
    kill "$pid" 2>/dev/null || true
done
for _ in $(seq 50); do
    alive=0
    for pid in $(cat "$STATE/pids"); do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
done
for pid in $(cat "$STATE/pids"); do kill -9 "$pid" 2>/dev/null || true; done
rm -f "$STATE/pids"
echo "== slurm daemons stopped"
