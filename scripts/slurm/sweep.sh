#!/usr/bin/env bash
#SBATCH --job-name=vae-sweep
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#
# Run the VAE hyperparameter sweep (python -m jobs.sweep) on a Ray cluster started inside this
# Slurm allocation. Submit from the repository root; every argument is passed to jobs.sweep:
#
#   sbatch scripts/slurm/sweep.sh --config jobs/configs/seed.toml
#   sbatch --gpus-per-node=4 --cpus-per-task=32 scripts/slurm/sweep.sh --config jobs/configs/seed.toml
#   sbatch --nodes=2 --gpus-per-node=4 --cpus-per-task=32 --time=4:00:00 scripts/slurm/sweep.sh --config ...
#
# GPUs and CPUs are deliberately not #SBATCH defaults (a GPU request fails on CPU-only
# partitions): ask for them on the sbatch command line, which overrides any #SBATCH line.
# Ray gets, on every node, the CPUs Slurm allocated there (SLURM_JOB_CPUS_PER_NODE) and the
# GPUs of the allocation (SLURM_GPUS_ON_NODE, else the entries of CUDA_VISIBLE_DEVICES, else 0).
#
# Environment (read at run time; sbatch passes your environment on by default):
#   VAE_VENV  virtualenv to activate (default: $SLURM_SUBMIT_DIR/.venv, if it exists)
#   VAE_OUT   output folder passed to jobs.sweep --out (default: runs, relative to the
#             submit directory); must be on storage shared by all nodes when --nodes > 1
#   VAE_MAX_REQUEUES  how many times the job requeues itself on SIGUSR1 (default 5)
#
# What it does: head node = first node of the allocation; `ray start --head --block` runs there
# as a Slurm step (srun --overlap), one `ray start --address=HEAD:PORT --block` step per other
# node once the head's port answers; waits (bounded) until `ray status` shows every node; then runs
#   python -m jobs.sweep --address HEAD_IP:PORT --out "$VAE_OUT" "$@"
# in this batch shell and exits with its exit code. Ray's ports are a block of 128 picked from
# SLURM_JOB_ID and probed first (the next free block is taken if any port is in use), so two jobs
# sharing a node do not collide; Ray's temp dir is a fresh /tmp/ray-JOBID-RANDOM-I on node I of
# the allocation (a per-node name: nodes may share /tmp), created mode 700 (a folder someone
# else made there is refused).
# Ray runs with token authentication and a fresh random token per job (RAY_AUTH_MODE=token,
# RAY_AUTH_TOKEN), unless RAY_AUTH_MODE is already set in the environment.
#
# Time limit / preemption: Slurm sends SIGUSR1 to this shell 120 s before the time limit
# (--signal=B:USR1@120; preemption with a signal, or `scancel --signal=USR1 --batch JOBID`,
# does the same). The shell then sends SIGTERM to the driver, waits for it (at most 60 s, then
# SIGKILL), stops the Ray steps and runs `scontrol requeue $SLURM_JOB_ID`. The requeued job runs
# the same command with the same --out, and jobs.sweep resumes from what is already there.
# Requeueing is bounded: at most VAE_MAX_REQUEUES times, and never when no new epoch was
# recorded under --out since this run started (a job that cannot progress must not loop).
# Output of every run is appended to the same slurm-JOBID.out (--open-mode=append).
# SIGTERM (scancel, or Slurm ending the job) stops the driver the same way without requeueing.

# shellcheck disable=SC2317  # the cleanup functions run from traps
set -euo pipefail

RAY_START_TIMEOUT_S=180   # bound on Ray head + workers becoming ready
DRIVER_GRACE_S=60         # after SIGTERM, how long the driver gets before SIGKILL
RAY_STOP_GRACE_S=30       # after SIGTERM, how long the Ray steps get before SIGKILL

log() { printf '[sweep.sh %s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }
die() {
    printf '[sweep.sh %s] ERROR: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2
    exit 1
}

[[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a Slurm job: submit with 'sbatch scripts/slurm/sweep.sh ARGS...'"

SUBMIT_DIR=${SLURM_SUBMIT_DIR:-$PWD}
cd "$SUBMIT_DIR"
log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}, in $SUBMIT_DIR"

VENV=${VAE_VENV:-$SUBMIT_DIR/.venv}
if [[ -f $VENV/bin/activate ]]; then
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    log "venv $VENV"
elif [[ -n ${VAE_VENV:-} ]]; then
    die "VAE_VENV=$VAE_VENV has no bin/activate"
else
    log "no venv at $VENV; using $(command -v python || echo 'no python')"
fi
RAY_BIN=$(command -v ray) || die "ray not found on PATH: create $SUBMIT_DIR/.venv with ray installed or set VAE_VENV"
PYTHON_BIN=$(command -v python) || die "python not found on PATH"
export PYTHONUNBUFFERED=1

OUT=${VAE_OUT:-runs}
[[ $OUT == /* ]] || OUT=$SUBMIT_DIR/$OUT
mkdir -p "$OUT" || die "cannot create output folder $OUT"

# ---------------------------------------------------------------- nodes, CPUs, GPUs
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
NNODES=${#NODES[@]}
((NNODES >= 1)) || die "cannot list the nodes of $SLURM_JOB_NODELIST"
HEAD_NODE=${NODES[0]}

# SLURM_JOB_CPUS_PER_NODE looks like "32(x2),16": expand to one count per node.
CPUS=()
IFS=',' read -r -a _cpu_groups <<<"${SLURM_JOB_CPUS_PER_NODE:-${SLURM_CPUS_ON_NODE:-1}}"
for _g in "${_cpu_groups[@]}"; do
    if [[ $_g =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
        for ((_i = 0; _i < BASH_REMATCH[2]; _i++)); do CPUS+=("${BASH_REMATCH[1]}"); done
    elif [[ $_g =~ ^[0-9]+$ ]]; then
        CPUS+=("$_g")
    else
        die "cannot parse SLURM_JOB_CPUS_PER_NODE='${SLURM_JOB_CPUS_PER_NODE:-}'"
    fi
done
((${#CPUS[@]} == NNODES)) || die "SLURM_JOB_CPUS_PER_NODE='${SLURM_JOB_CPUS_PER_NODE:-}' does not match $NNODES nodes"

if [[ ${SLURM_GPUS_ON_NODE:-} =~ ^[0-9]+$ ]]; then
    GPUS=$SLURM_GPUS_ON_NODE
elif [[ -n ${CUDA_VISIBLE_DEVICES:-} && ${CUDA_VISIBLE_DEVICES} != NoDevFiles ]]; then
    IFS=',' read -r -a _devs <<<"$CUDA_VISIBLE_DEVICES"
    GPUS=${#_devs[@]}
else
    GPUS=0
fi

# ---------------------------------------------------------------- head address and ports
# 177 blocks of 128 ports in 10000-32655 (below the usual ephemeral range): start at the job id's
# block and take the first block whose ports can all be bound here (the head node).
free_block() {
    "$PYTHON_BIN" - "$1" <<'PY'
import socket, sys
lo = int(sys.argv[1])
for port in range(lo, lo + 128):
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            sys.exit(1)
PY
}
PORT_BASE=""
for ((_k = 0; _k < 177; _k++)); do
    _base=$((10000 + ((SLURM_JOB_ID + _k) % 177) * 128))
    if free_block "$_base"; then PORT_BASE=$_base; break; fi
done
[[ -n $PORT_BASE ]] || die "no free block of 128 ports in 10000-32655 on $(hostname)"
PORT=$PORT_BASE
RAY_PORT_ARGS=(
    --object-manager-port=$((PORT_BASE + 2))
    --node-manager-port=$((PORT_BASE + 3))
    --dashboard-agent-grpc-port=$((PORT_BASE + 4))
    --dashboard-agent-listen-port=$((PORT_BASE + 5))
    --metrics-export-port=$((PORT_BASE + 6))
    --runtime-env-agent-port=$((PORT_BASE + 7))
    --min-worker-port=$((PORT_BASE + 16))
    --max-worker-port=$((PORT_BASE + 127))
)

if ((NNODES == 1)); then
    HEAD_IP=127.0.0.1
else
    _addr=$(scontrol show node "$HEAD_NODE" | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p' | head -n1)
    [[ -n $_addr ]] || _addr=$HEAD_NODE
    if [[ $_addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        HEAD_IP=$_addr
    else
        HEAD_IP=$(getent ahostsv4 "$_addr" | awk 'NR == 1 { print $1 }')
    fi
    [[ -n $HEAD_IP ]] || die "cannot resolve the IP address of head node $HEAD_NODE ($_addr)"
    [[ $HEAD_IP != 127.* ]] || die "head node $HEAD_NODE resolves to loopback $HEAD_IP; other nodes cannot reach it"
fi
ADDRESS=$HEAD_IP:$PORT
# Ray's temp folder, one per node: RAY_TMP-0 on the head, RAY_TMP-1 ... on the others. Per node,
# because nodes may share /tmp (TMPDIR on shared scratch; hosts in one machine's namespaces).
RAY_TMP=/tmp/ray-$SLURM_JOB_ID-$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
MAX_REQUEUES=${VAE_MAX_REQUEUES:-5}
[[ $MAX_REQUEUES =~ ^[0-9]+$ ]] || die "VAE_MAX_REQUEUES must be a whole number, got '$MAX_REQUEUES'"
# epochs_recorded: epoch rows under --out, the measure of progress between requeues.
epochs_recorded() { { cat "$OUT"/*/trials/*/metrics.jsonl 2>/dev/null || true; } | wc -l; }
EPOCHS_AT_START=$(epochs_recorded)

if [[ -z ${RAY_AUTH_MODE:-} ]]; then
    export RAY_AUTH_MODE=token
    RAY_AUTH_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export RAY_AUTH_TOKEN
fi

# ---------------------------------------------------------------- cleanup and signals
DRIVER_PID=""
RAY_STEP_PIDS=()
STOPPING=0
MARKER=""

# stop_pid NAME PID GRACE: SIGTERM, wait up to GRACE s, then SIGKILL. Only our own children.
stop_pid() {
    local name=$1 pid=$2 grace=$3 deadline
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) still running after ${grace}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_driver() {
    [[ -n $DRIVER_PID ]] || return 0
    if kill -0 "$DRIVER_PID" 2>/dev/null; then
        log "stopping driver (pid $DRIVER_PID): SIGTERM, up to ${DRIVER_GRACE_S}s"
        stop_pid driver "$DRIVER_PID" "$DRIVER_GRACE_S"
    fi
    DRIVER_PID=""
}

# Ray runs inside the srun steps started below: ending those steps ends this job's Ray
# processes (and only them), unlike `ray stop`, which kills every Ray process of the user.
stop_ray() {
    ((${#RAY_STEP_PIDS[@]})) || return 0
    log "stopping Ray (srun steps ${RAY_STEP_PIDS[*]}; Slurm reports them as CANCELLED)"
    local pid
    for pid in "${RAY_STEP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${RAY_STEP_PIDS[@]}"; do stop_pid "ray step" "$pid" "$RAY_STOP_GRACE_S"; done
    RAY_STEP_PIDS=()
    log "Ray stopped"
}

on_exit() {
    local rc=$?
    trap - EXIT TERM INT USR1
    stop_driver
    stop_ray
    [[ -z $MARKER ]] || rm -f "$MARKER"
    exit "$rc"
}

on_usr1() {
    ((STOPPING == 0)) || return 0
    STOPPING=1
    log "SIGUSR1 (time limit or preemption): stopping job $SLURM_JOB_ID"
    stop_driver
    stop_ray
    local restarts=${SLURM_RESTART_COUNT:-0} epochs
    epochs=$(epochs_recorded)
    if ((restarts >= MAX_REQUEUES)); then
        die "not requeueing: already requeued $restarts times (VAE_MAX_REQUEUES=$MAX_REQUEUES); resubmit to continue"
    fi
    if ((epochs <= EPOCHS_AT_START)); then
        die "not requeueing: no new epoch was recorded under $OUT since this run started; check the log above"
    fi
    log "$((epochs - EPOCHS_AT_START)) new epoch(s) since the start; requeue $((restarts + 1)) of at most $MAX_REQUEUES"
    log "scontrol requeue $SLURM_JOB_ID"
    if ! scontrol requeue "$SLURM_JOB_ID"; then
        die "scontrol requeue $SLURM_JOB_ID failed; resubmit the same command to resume"
    fi
    exit 0
}

on_term() {
    if ((STOPPING)); then exit 143; fi
    STOPPING=1
    log "SIGTERM/SIGINT: stopping (no requeue)"
    exit 143
}

trap on_exit EXIT
trap on_usr1 USR1
trap on_term TERM INT

# ---------------------------------------------------------------- shared storage check
if ((NNODES > 1)); then
    MARKER=$OUT/.slurm-shared-check-$SLURM_JOB_ID
    : >"$MARKER"
    log "checking that $OUT is visible on all $NNODES nodes"
    # srun names each node whose check failed ("srun: error: NODE: task N: Exited ..."): say which.
    if ! _err=$(srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --overlap \
        test -f "$MARKER" 2>&1 >/dev/null); then
        _bad=$(sed -n 's/^srun: error: \([^:]*\): task [0-9]*: Exited.*/\1/p' <<<"$_err" | sort -u | paste -sd, -)
        die "output folder $OUT is not on storage shared by all nodes ($SLURM_JOB_NODELIST${_bad:+; not visible on $_bad}): set VAE_OUT to a shared path"
    fi
    rm -f "$MARKER"
    MARKER=""
fi

# ---------------------------------------------------------------- start Ray
# ray_step I ARGS...: `ray start ... --block` as a Slurm step on node I of the allocation, in the
# background, with its own temp folder RAY_TMP-I.
ray_step() {
    local node=${NODES[$1]} cpus=${CPUS[$1]} tmp=$RAY_TMP-$1
    shift
    # mkdir without -p: the private temp folder must be new (mode 700) on every node.
    srun --nodes=1 --ntasks=1 -w "$node" --overlap --cpus-per-task="$cpus" \
        bash -c 'mkdir -m 700 "$0" || exit 1; exec "$@"' "$tmp" "$RAY_BIN" start --num-cpus="$cpus" --num-gpus="$GPUS" --temp-dir="$tmp" \
        --disable-usage-stats --log-color=false "${RAY_PORT_ARGS[@]}" "$@" --block </dev/null &
    RAY_STEP_PIDS+=("$!")
}

# ray_nodes: number of alive nodes `ray status` reports (0 if it cannot reach the head).
ray_nodes() {
    { timeout 60 "$RAY_BIN" status --address="$ADDRESS" 2>/dev/null || true; } \
        | awk '/^Active:/ { a = 1; next } /^(Pending|Recent failures):/ { a = 0 } a && /node_/ { n++ } END { print n + 0 }'
}

# has_nodes N: Ray has at least N alive nodes (a `ray status`: ~0.8 s of CPU each).
has_nodes() { (($(ray_nodes) >= $1)); }

# head_listens: the head's GCS port accepts a connection (bash's /dev/tcp: no Ray CLI to start).
# Enough for worker nodes to join; the driver waits for has_nodes.
head_listens() { timeout 2 bash -c ': >"/dev/tcp/$0/$1"' "$HEAD_IP" "$PORT" 2>/dev/null; }

# wait_ray WHAT CHECK...: poll CHECK until it succeeds; fail if a Ray step dies or on timeout.
wait_ray() {
    local what=$1 pid deadline=$((SECONDS + RAY_START_TIMEOUT_S))
    shift
    until "$@"; do
        for pid in "${RAY_STEP_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "a Ray step (srun pid $pid) exited while waiting for $what; see its output above"
        done
        ((SECONDS < deadline)) || die "Ray not ready after ${RAY_START_TIMEOUT_S}s: $what at $ADDRESS ($(ray_nodes) node(s) up)"
        sleep 0.5  # the head is up ~3 s after its start
    done
}

log "starting Ray head on $HEAD_NODE at $ADDRESS (${CPUS[0]} CPUs, $GPUS GPUs, temp dir $RAY_TMP-0)"
ray_step 0 --head --node-ip-address="$HEAD_IP" --port="$PORT" \
    --ray-client-server-port=$((PORT_BASE + 1)) --dashboard-port=$((PORT_BASE + 8)) \
    --include-dashboard=false
if ((NNODES > 1)); then
    wait_ray "the head" head_listens  # the workers' start overlaps the head's own
    log "Ray head listening"
    for ((i = 1; i < NNODES; i++)); do
        log "starting Ray worker on ${NODES[i]} (${CPUS[i]} CPUs, $GPUS GPUs, temp dir $RAY_TMP-$i)"
        ray_step "$i" --address="$ADDRESS"
    done
    wait_ray "$NNODES nodes" has_nodes "$NNODES"
    log "all $NNODES Ray nodes ready"
else
    wait_ray "the head" has_nodes 1
    log "Ray head ready"
fi

# ---------------------------------------------------------------- driver
log "running: python -m jobs.sweep --address $ADDRESS --out $OUT $*"
"$PYTHON_BIN" -m jobs.sweep --address "$ADDRESS" --out "$OUT" "$@" &
DRIVER_PID=$!
rc=0
# `wait` returns early when a trapped signal arrives; the traps exit the shell themselves.
wait "$DRIVER_PID" || rc=$?
DRIVER_PID=""
log "driver exited with code $rc"
exit "$rc"
