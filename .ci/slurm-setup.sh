#!/usr/bin/env bash
# Starts a one-node Slurm cluster on localhost for the Slurm integration test (idempotent).
# Installs Debian's slurm-wlm and munge when sbatch is missing, creates a munge key, starts
# munged, writes a minimal slurm.conf (this machine's CPUs and memory from `slurmd -C`, no
# cgroups), starts slurmctld and slurmd, and waits until `sinfo` shows the node idle.
set -euo pipefail

log() { echo "slurm-setup: $*"; }

if ! command -v sbatch >/dev/null 2>&1 || ! command -v slurmctld >/dev/null 2>&1; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: key + daemon
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
id munge >/dev/null 2>&1 && chown munge:munge /etc/munge /etc/munge/munge.key || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
id munge >/dev/null 2>&1 && chown munge:munge /run/munge /var/lib/munge /var/log/munge || true
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force 2>/dev/null || /usr/sbin/munged --force
  else
    /usr/sbin/munged --force
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf for this one node
host=$(hostname -s)
node=$(slurmd -C 2>/dev/null | head -1 | sed -e "s/^NodeName=[^ ]*/NodeName=$host/")
[ -n "$node" ] || node="NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 ))"
# Leave some memory headroom so the node is never drained for "low RealMemory".
mem=$(echo "$node" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
if [ -n "$mem" ]; then node=$(echo "$node" | sed "s/RealMemory=[0-9]*/RealMemory=$(( mem * 9 / 10 ))/"); fi
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(cat <<CONF
# Written by .ci/slurm-setup.sh: a one-node cluster for tests.
ClusterName=zoologyci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
MaxArraySize=10001
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
if [ "$(cat $conf_dir/slurm.conf 2>/dev/null)" != "$conf" ]; then
  echo "$conf" > $conf_dir/slurm.conf
  log "wrote $conf_dir/slurm.conf ($node)"
  pkill_pidfile() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
  pkill_pidfile /run/slurmctld.pid
  pkill_pidfile /run/slurmd.pid
  sleep 1
fi
# (no cgroup.conf: proctrack/linuxproc and task/none need no cgroups)
rm -f $conf_dir/cgroup.conf

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then log "starting slurmctld"; slurmctld -i 2>/dev/null || slurmctld; fi
if ! running /run/slurmd.pid; then log "starting slurmd"; slurmd; fi

for i in $(seq 60); do
  state=$(sinfo -h -o "%T" 2>/dev/null | head -1 || true)
  case "$state" in
    idle*|mixed*|allocated*) log "node $host is $state"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
log "Slurm did not become ready (state: ${state:-none}); see /var/log/slurm/*.log"
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>/dev/null || true
exit 1
