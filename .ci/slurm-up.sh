#!/usr/bin/env bash
# A one-machine Slurm cluster for the Slurm end-to-end test (tests/slurm.rs): Debian's slurm-wlm and
# munge packages, munged + slurmctld + slurmd for this host only, CPU only, state under
# /tmp/runner-slurm. Needs root (CI machines run as root). Prints "slurm: up" and exits 0 once the
# node accepts jobs, non-zero otherwise (the test then fails in CI, where RUNNER_REQUIRE_SLURM=1).
set -euo pipefail
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
state=/tmp/runner-slurm
mkdir -p "$state"/{spool,ctld,log} /run/munge /var/log/munge /var/lib/munge /etc/slurm
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
# A key of our own if the package left none.
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged --force 2>/dev/null || munged --force
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=runner-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm: up ($(sinfo -h -o '%D node(s), %c CPUs, state %T'))"
        exit 0
    fi
    sleep 1
done
echo "slurm: the node did not come up; last log lines:" >&2
tail -n 20 "$state"/log/*.log >&2 || true
exit 1
