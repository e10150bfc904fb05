#!/usr/bin/env bash
# Start a real one-node Slurm on this machine for the Slurm integration tests (tests/slurm_cli.rs).
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge without letting their post-install
# scripts start services (no systemd here), writes a one-node configuration (linuxproc process
# tracking, no accounting database, the machine's real CPUs and memory), starts munged, slurmctld
# and slurmd directly, and waits until the node is idle. Pids go to $SLURM_CI_STATE/pids for
# .ci/slurm-down.sh. Fails loudly if any step fails: the Slurm tests must not silently skip.
#
# Usage: sudo .ci/slurm-up.sh      (root: it installs packages and starts daemons)
set -euo pipefail

STATE=${SLURM_CI_STATE:-/tmp/windtunnel-slurm-ci}
mkdir -p "$STATE"
: > "$STATE/pids"

if [ "$(id -u)" != 0 ]; then
    echo "slurm-up: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "== installing slurmctld slurmd slurm-client munge"
    # Keep the packages' post-install scripts from starting services.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# --- munge ----------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 755 /run/munge
SOCKET=/run/munge/munge.socket.2
if [ ! -S "$SOCKET" ] || ! munge -n >/dev/null 2>&1; then
    rm -f "$SOCKET" "$SOCKET.lock"
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi
# munge is up when its socket answers (not when a process of that name exists).
for _ in $(seq 50); do
    [ -S "$SOCKET" ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.2
done
munge -n | unmunge >/dev/null || { echo "slurm-up: munge does not answer on $SOCKET" >&2; exit 1; }
cat /run/munge/munged.pid >> "$STATE/pids"

# --- slurm.conf -----------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
# Leave some memory to the OS; slurmd refuses a node that claims more than it has.
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
# One-node Slurm for windtunnel's CI (written by .ci/slurm-up.sh).
ClusterName=windtunnel-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Quick turnaround for the tests: the scheduler looks often, finished jobs are kept 5 minutes
# for scontrol, and a job past its time limit is killed 10 s after its SIGTERM.
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=10
InactiveLimit=0
# Without a default, a job that asks for no memory is given the whole node, one job at a time.
DefMemPerCPU=$((MEM_MB / CPUS))
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# Slurm 22.05 has no "disabled" cgroup plugin; without a cgroup.conf it loads the detected one,
# which linuxproc tracking and task/none leave unused.
rm -f /etc/slurm/cgroup.conf

# --- daemons --------------------------------------------------------------------------------
for pidfile in /run/slurmctld.pid /run/slurmd.pid; do
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" || true
        sleep 1
    fi
done
/usr/sbin/slurmctld -i
/usr/sbin/slurmd
for _ in $(seq 50); do
    [ -s /run/slurmctld.pid ] && [ -s /run/slurmd.pid ] && break
    sleep 0.2
done
cat /run/slurmctld.pid /run/slurmd.pid >> "$STATE/pids"

echo "== waiting for node $HOST to be idle"
for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case "$state" in
        idle*) echo "== slurm is up: node $HOST ($CPUS CPUs, $MEM_MB MB) is $state"; exit 0 ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "slurm-up: node $HOST did not become idle (state: ${state:-unknown})" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
