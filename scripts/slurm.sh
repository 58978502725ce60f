#!/usr/bin/env bash
# A single-node Slurm cluster on loopback for the sweep tests (Debian's
# Slurm 22.05 and munge; root and apt-get needed to install them).
#
#   scripts/slurm.sh install       installs slurmctld, slurmd, slurm-client
#                                  and munge when missing (exit 0 either way;
#                                  the tests skip, or fail under CI=true)
#   scripts/slurm.sh start DIR     writes DIR/slurm.conf, starts munged,
#                                  slurmctld and slurmd with their state in
#                                  DIR, waits for the node to be idle, and
#                                  prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm.sh stop DIR      stops the three daemons by the PIDs kept
#                                  in DIR (nothing else is touched)
set -uo pipefail

cmd=${1:-}
have() { command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
    command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; }

case "$cmd" in
install)
    have && exit 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "slurm.sh: Slurm is missing and cannot be installed here (needs root and apt-get);" \
            "the cluster tests will skip (and fail under CI=true)" >&2
        exit 0
    fi
    echo "slurm.sh: installing Debian's slurmctld, slurmd, slurm-client and munge for the cluster tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    pkgs="slurmctld slurmd slurm-client munge"
    install() { apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }
    install || { apt-get update -qq && install; } || {
        echo "slurm.sh: apt-get could not install Slurm; the cluster tests will skip (fail under CI=true)" >&2
    }
    exit 0
    ;;
start)
    dir=${2:?usage: slurm.sh start DIR}
    have || { echo "slurm.sh: Slurm is not installed (scripts/slurm.sh install)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "slurm.sh: starting the daemons needs root" >&2; exit 1; }
    mkdir -p "$dir"/{state,spool,log,munge}
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    # munge: a generated key (once per machine), its socket and pid in DIR.
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    id munge >/dev/null 2>&1 || useradd -r -s /usr/sbin/nologin munge
    chown munge: /etc/munge /etc/munge/munge.key "$dir/munge"
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge: /run/munge /var/lib/munge /var/log/munge
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged --pid-file="$dir/munge/munged.pid" || {
            echo "slurm.sh: munged did not start" >&2; exit 1; }
        cp "$dir/munge/munged.pid" "$dir/munged.pid"
    fi
    cat >"$dir/slurm.conf" <<EOF
ClusterName=vpdtest
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=10
MinJobAge=300
SchedulerType=sched/backfill
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" || { echo "slurm.sh: slurmctld did not start (see $dir/log)" >&2; exit 1; }
    slurmd -f "$SLURM_CONF" || { echo "slurm.sh: slurmd did not start (see $dir/log)" >&2; exit 1; }
    for _ in $(seq 1 60); do
        state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1)
        case "$state" in idle*|mix*|alloc*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
        sleep 0.5
    done
    echo "slurm.sh: the node did not come up (state '${state:-none}'; see $dir/log)" >&2
    exit 1
    ;;
stop)
    dir=${2:?usage: slurm.sh stop DIR}
    for p in slurmd slurmctld munged; do
        f="$dir/$p.pid"
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
    exit 0
    ;;
*)
    echo "usage: scripts/slurm.sh install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
