#!/usr/bin/env bash
# A real one-node Slurm cluster (munged + slurmctld + slurmd) for tests and CI.
#
# Usage:
#   scripts/slurm/local_cluster.sh start DIR   # prints: export SLURM_CONF=DIR/etc/slurm.conf
#   scripts/slurm/local_cluster.sh stop DIR
#
#   eval "$(scripts/slurm/local_cluster.sh start /tmp/slurm-ci)"
#   sbatch --wait job.sh; echo "job exit code: $?"
#   scripts/slurm/local_cluster.sh stop /tmp/slurm-ci
#
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files) lives under DIR;
# nothing under /etc is touched. Needs root and the Debian packages slurm-wlm and munge.
# The only line on stdout is the export line; progress and errors go to stderr.
#
# Environment:
#   LOCAL_SLURM_CTLD_PORT  slurmctld port (default 16817)
#   LOCAL_SLURM_D_PORT     slurmd port    (default 16818)
#   LOCAL_SLURM_NODES      several nodes, each a separate host (tests/hosts.py): space-separated
#                          NAME@ADDR@PID; each node's slurmd runs inside the namespaces of
#                          process PID (nsenter --net --uts --mount), NodeAddr=ADDR. Default:
#                          one node `hostname -s` at 127.0.0.1, in this namespace
#   LOCAL_SLURM_CTLD_ADDR  where the nodes reach slurmctld (default 127.0.0.1; with
#                          LOCAL_SLURM_NODES: this machine's address on the hosts' bridge)
#   LOCAL_SLURM_NODE_CPUS  CPUs per node with LOCAL_SLURM_NODES (default: this machine's / nodes)
#
# Finished jobs are recorded in DIR/log/jobcomp.txt (one line per job, with JobState and
# ExitCode; also readable with `sacct -c`); each fresh start moves it to jobcomp.txt.prev.  MinJobAge is 5 s, so `sbatch --wait` polls every
# 2 s, but finished jobs disappear from squeue/scontrol after a few seconds: check the jobcomp
# file for their final state.
set -euo pipefail

START_TIMEOUT_S=60
STOP_TIMEOUT_S=60

log() { printf '[local_cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'local_cluster: error: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
ACTION=$1
DIR=$(realpath -m -- "$2")

CONF=$DIR/etc/slurm.conf
KEY=$DIR/munge/munge.key
SOCK=$DIR/munge-run/munge.socket
MUNGE_PID=$DIR/munge-run/munged.pid
CTLD_PID=$DIR/run/slurmctld.pid
# Copies of the daemons' pids: the daemons delete their own pid files before they exit.
SAVED=$DIR/run/saved
NODES_FILE=$DIR/etc/nodes  # the last start's LOCAL_SLURM_NODES (read by stop)

# read_nodes SPEC: NODE_SPECS=(NAME@ADDR@PID ...) from SPEC, or the one default node (no PID).
read_nodes() {
    NODE_SPECS=()
    MULTI=0
    if [[ -n ${1:-} ]]; then
        read -r -a NODE_SPECS <<<"$1"
        MULTI=1
    else
        NODE_SPECS=("$(hostname -s)@127.0.0.1@")
    fi
}
node_name() { echo "${1%%@*}"; }
node_addr() { local rest=${1#*@}; echo "${rest%%@*}"; }
node_pid() { echo "${1##*@}"; }
# slurmd's pid file and its saved copy for node NAME (one node: the names slurmd.pid had before).
slurmd_pidfile() { if ((MULTI)); then echo "$DIR/run/slurmd-$1.pid"; else echo "$DIR/run/slurmd.pid"; fi; }
slurmd_saved() { if ((MULTI)); then echo "$SAVED/slurmd-$1.pid"; else echo "$SAVED/slurmd.pid"; fi; }

# pid_of NAME PIDFILE [SAVED]: print the pid of a live daemon NAME started for DIR, or nothing.
# A pid is trusted only if /proc/PID/cmdline names the daemon and a path under DIR.
pid_of() {
    local name=$1 pidfile=$2 saved=${3:-$SAVED/$1.pid} pid cmd f
    for f in "$pidfile" "$saved"; do
        [[ -r $f ]] || continue
        pid=$(tr -dc '0-9' <"$f")
        [[ -n $pid && -r /proc/$pid/cmdline ]] || continue
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        if [[ $cmd == *"$name"* && $cmd == *"$DIR/"* ]]; then
            echo "$pid"
            return 0
        fi
    done
    return 0
}

# wait_gone PID SECONDS: wait until PID has exited; non-zero on timeout.
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# stop_pid NAME PID: TERM, wait, then KILL if needed. Only ever by pid.
stop_pid() {
    local name=$1 pid=$2
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 20; then
        log "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "$name (pid $pid) still alive after SIGKILL"
    fi
}

export_line() { echo "export SLURM_CONF=$CONF"; }

check_tools() {
    local t
    for t in munged mungekey munge unmunge slurmctld slurmd scontrol sinfo squeue scancel sbatch; do
        command -v "$t" >/dev/null 2>&1 || die "$t not found: apt-get install slurm-wlm munge"
    done
    [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd launches jobs; SlurmUser=root)"
}

write_conf() {
    local ctld=$1 cpus=$2 realmem=$3 ctld_port=$4 d_port=$5 ctld_addr=$6
    local mem=$((realmem * 9 / 10 / ${#NODE_SPECS[@]}))
    local defmem=$((mem / cpus)) spool=$DIR/spool/slurmd dpid=$DIR/run/slurmd.pid dlog=$DIR/log/slurmd.log
    if ((MULTI)); then spool=$DIR/spool/%n dpid=$DIR/run/slurmd-%n.pid dlog=$DIR/log/slurmd-%n.log; fi
    cat >"$CONF" <<EOF
# Generated by scripts/slurm/local_cluster.sh for $DIR
ClusterName=localci
SlurmctldHost=$ctld($ctld_addr)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$dpid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$dlog
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$defmem
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
# <= 5 keeps sbatch --wait polling every 2 s (it backs off to 32 s otherwise).
MinJobAge=5
KillWait=15
InactiveLimit=0
EOF
    local spec names=()
    for spec in "${NODE_SPECS[@]}"; do
        echo "NodeName=$(node_name "$spec") NodeAddr=$(node_addr "$spec") CPUs=$cpus RealMemory=$mem State=UNKNOWN"
        names+=("$(node_name "$spec")")
    done >>"$CONF"
    local IFS=,
    echo "PartitionName=debug Nodes=${names[*]} Default=YES MaxTime=INFINITE State=UP" >>"$CONF"
}

# start_slurmd SPEC: the slurmd of one node, inside its host's namespaces when SPEC has a PID.
start_slurmd() {
    local name pid
    name=$(node_name "$1")
    pid=$(node_pid "$1")
    if [[ -n $pid ]]; then
        nsenter -t "$pid" --net --uts --mount slurmd -f "$CONF" -N "$name" \
            || die "slurmd of $name failed to start (see $DIR/log/slurmd-$name.log)"
    else
        slurmd -f "$CONF" -N "$name" || die "slurmd failed to start (see $DIR/log/slurmd.log)"
    fi
}

# slurmd_pids: the live slurmd pids of the nodes in NODE_SPECS, one per line.
slurmd_pids() {
    local spec name
    for spec in "${NODE_SPECS[@]}"; do
        name=$(node_name "$spec")
        pid_of slurmd "$(slurmd_pidfile "$name")" "$(slurmd_saved "$name")"
    done
}

# nodes_ready: each slurmd's pid saved, and every node reports idle.
nodes_ready() {
    local spec name states
    for spec in "${NODE_SPECS[@]}"; do
        name=$(node_name "$spec")
        if [[ -s $(slurmd_pidfile "$name") && ! -s $(slurmd_saved "$name") ]]; then
            cp "$(slurmd_pidfile "$name")" "$(slurmd_saved "$name")"
        fi
        [[ -s $(slurmd_saved "$name") ]] || return 1
    done
    states=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $(grep -c . <<<"$states") -eq ${#NODE_SPECS[@]} && -z $(grep -v '^idle$' <<<"$states") ]]
}

do_start() {
    check_tools
    read_nodes "${LOCAL_SLURM_NODES:-}"
    local mpid cpid dpid
    mpid=$(pid_of munged "$MUNGE_PID")
    cpid=$(pid_of slurmctld "$CTLD_PID")
    dpid=$(slurmd_pids | tr '\n' ' ')
    dpid=${dpid% }
    if [[ -n $mpid && -n $cpid && $(wc -w <<<"$dpid") -eq ${#NODE_SPECS[@]} ]]; then
        log "already running for $DIR (munged $mpid, slurmctld $cpid, slurmd $dpid)"
        export_line
        return 0
    fi
    if [[ -n $mpid || -n $cpid || -n $dpid ]]; then
        die "partially running for $DIR (munged=${mpid:-no} slurmctld=${cpid:-no} slurmd=${dpid:-no}); run: $0 stop $DIR"
    fi

    local t0=$SECONDS ctld hw cpus realmem spec
    local ctld_port=${LOCAL_SLURM_CTLD_PORT:-16817} d_port=${LOCAL_SLURM_D_PORT:-16818}
    local ctld_addr=${LOCAL_SLURM_CTLD_ADDR:-127.0.0.1}
    ctld=$(hostname -s)
    hw=$(slurmd -C | head -n1) || die "slurmd -C failed"
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    realmem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [[ -n $cpus && -n $realmem ]] || die "cannot parse CPUs/RealMemory from 'slurmd -C': $hw"
    if ((MULTI)); then
        cpus=${LOCAL_SLURM_NODE_CPUS:-$((cpus / ${#NODE_SPECS[@]} > 0 ? cpus / ${#NODE_SPECS[@]} : 1))}
    fi

    log "creating $DIR (nodes ${NODE_SPECS[*]}, $cpus CPUs each, ${realmem} MB, ports $ctld_port/$d_port)"
    # Fresh state and spool each start: no jobs survive a restart and job ids start again at 1,
    # so the previous job records move to jobcomp.txt.prev; daemon logs are appended.
    rm -rf -- "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/munge-run"
    if [[ -s $DIR/log/jobcomp.txt ]]; then
        mv -f -- "$DIR/log/jobcomp.txt" "$DIR/log/jobcomp.txt.prev"
    fi
    mkdir -p -- "$DIR"/{etc,munge,munge-run,state,spool/slurmd,run,log} "$SAVED"
    for spec in "${NODE_SPECS[@]}"; do mkdir -p -- "$DIR/spool/$(node_name "$spec")"; done
    chmod 755 "$DIR" "$DIR/munge-run"
    chmod 700 "$DIR/munge"
    if [[ ! -s $KEY ]]; then
        mungekey --create --keyfile="$KEY" >/dev/null || die "mungekey --create failed"
    fi
    chmod 600 "$KEY"
    write_conf "$ctld" "$cpus" "$realmem" "$ctld_port" "$d_port" "$ctld_addr"
    echo "${LOCAL_SLURM_NODES:-}" >"$NODES_FILE"
    export SLURM_CONF=$CONF

    munged --socket="$SOCK" --key-file="$KEY" --pid-file="$MUNGE_PID" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged failed to start (see $DIR/munge/munged.log)"
    cp "$MUNGE_PID" "$SAVED/munged.pid"
    munge -n -S "$SOCK" | unmunge -S "$SOCK" >/dev/null \
        || die "munge self-test failed (see $DIR/munge/munged.log)"

    slurmctld -f "$CONF" || die "slurmctld failed to start (see $DIR/log/slurmctld.log)"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until [[ -s $CTLD_PID ]] && scontrol ping 2>/dev/null | grep -q 'is UP'; do
        ((SECONDS < deadline)) || die "slurmctld not UP after ${START_TIMEOUT_S}s (see $DIR/log/slurmctld.log)"
        sleep 0.2
    done
    cp "$CTLD_PID" "$SAVED/slurmctld.pid"

    for spec in "${NODE_SPECS[@]}"; do start_slurmd "$spec"; done
    until nodes_ready; do
        ((SECONDS < deadline)) || die "nodes not idle after ${START_TIMEOUT_S}s ($(sinfo -h -N -o '%N %t' 2>/dev/null | tr '\n' ' '); see $DIR/log/slurmd*.log)"
        sleep 0.2
    done
    log "ready in $((SECONDS - t0))s: ${#NODE_SPECS[@]} node(s) idle; job records in $DIR/log/jobcomp.txt"
    export_line
}

do_stop() {
    read_nodes "$(cat "$NODES_FILE" 2>/dev/null || true)"
    local mpid cpid dpid
    mpid=$(pid_of munged "$MUNGE_PID")
    cpid=$(pid_of slurmctld "$CTLD_PID")
    dpid=$(slurmd_pids | tr '\n' ' ')
    dpid=${dpid% }
    if [[ -z $mpid && -z $cpid && -z $dpid ]]; then
        log "nothing running for $DIR"
        return 0
    fi
    export SLURM_CONF=$CONF
    local shut=0
    if [[ -n $cpid ]]; then
        local jobs deadline=$((SECONDS + STOP_TIMEOUT_S))
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            # scontrol shutdown does not kill running steps: wait until no job is left running.
            while [[ -n $(squeue -h -t pending,running,suspended,completing -o %A 2>/dev/null | head -n1) ]]; do
                if ((SECONDS >= deadline)); then
                    log "jobs still active after ${STOP_TIMEOUT_S}s; shutting down anyway"
                    break
                fi
                sleep 0.5
            done
        fi
        log "scontrol shutdown"
        if scontrol shutdown >/dev/null 2>&1; then
            shut=1
        else
            log "scontrol shutdown failed; stopping daemons by pid"
        fi
    fi
    local pid
    for pid in $cpid $dpid; do
        if ((shut)) && wait_gone "$pid" 30; then
            continue
        fi
        ((shut)) && log "pid $pid still running 30s after shutdown"
        stop_pid "slurm daemon" "$pid"
    done
    if [[ -n $mpid ]]; then
        stop_pid munged "$mpid"
    fi
    rm -f -- "$SAVED"/*.pid
    log "stopped ($DIR kept; logs in $DIR/log)"
}

case $ACTION in
    start) do_start ;;
    stop) do_stop ;;
    *) usage ;;
esac
