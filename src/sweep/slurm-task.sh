# shellcheck shell=bash
# The body of every Slurm array task's script (src/sweep/slurm.rs writes the #SBATCH lines and
# the parameters block above it: SWEEP_DIR, WINDTUNNEL, WORKERS, DEVICE, GPUS, RUNS_PER_DEVICE,
# MAX_REQUEUES, EXIT_DIVERGED, EXIT_CANNOT_START, RUN_IDS, RUNS, TASK, RESTARTS, and the task's run
# ids as "$@"). Included at build time; CI checks it with `shellcheck -S warning`.
# Slurm's warning before the time limit (USR1) and preemption or scancel (TERM) go to this shell;
# pass them on to the worker, which writes a checkpoint and exits; a signal between two runs of a
# queue stops it before the next.
worker=
lanes=
stopped=
forward() { stopped=$2; for p in $worker $lanes; do kill -s "$1" "$p" 2>/dev/null; done; }
trap 'forward USR1 138' USR1
trap 'forward TERM 143' TERM
# A persistent worker that died is a write error on its pipe, not the end of this script.
trap '' PIPE

# Wait until process $1 has exited (a trapped signal ends `wait` early): its code in exit_code.
wait_for() {
    while :; do
        wait "$1"
        exit_code=$?
        if ! kill -0 "$1" 2>/dev/null; then break; fi
    done
}
wait_for_worker() {
    wait_for "$worker"
    worker_code=$exit_code
    worker=
}

# --workers per-run: a `windtunnel train` process for the run.
train_process() {
    "$WINDTUNNEL" train "$RUN_DIR/config.json" --out "$RUN_DIR" --device "$DEVICE" --quiet $resume >> "$RUN_DIR/worker.log" 2>&1 &
    worker=$!
    wait_for_worker
    code=$worker_code
}

# --workers persistent: one `windtunnel worker` trains the task's runs one after another (the CUDA
# context and the kernels it compiled are kept), fed one JSON request per run through a FIFO and
# answering on another (`windtunnel worker --help`). A worker that dies fails only the run it
# held; the next run starts a fresh one.
PIPES=
start_worker() {
    if ! PIPES=$(mktemp -d "${TMPDIR:-/tmp}/windtunnel-worker.XXXXXX") || ! mkfifo "$PIPES/requests" "$PIPES/replies"; then
        echo "windtunnel: cannot make the worker's FIFOs in ${TMPDIR:-/tmp} on $(hostname), so runs train in a process each; set TMPDIR (a [slurm] setup line) to a writable local directory" >&2
        return 1
    fi
    "$WINDTUNNEL" worker --device "$DEVICE" < "$PIPES/requests" > "$PIPES/replies" &
    worker=$!
    exec 3> "$PIPES/requests" 4< "$PIPES/replies"
}
# Close its requests (it ends when they do) and wait for it.
stop_worker() {
    exec 3>&- 4<&-
    if [ -n "$worker" ]; then wait_for_worker; fi
    if [ -n "$PIPES" ]; then rm -rf "$PIPES"; PIPES=; fi
}
send_request() {
    local dir="$SWEEP_DIR_JSON/runs/$RUN_ID" resume_json=false
    if [ -n "$resume" ]; then resume_json=true; fi
    printf '{"run_file":"%s/config.json","out":"%s","resume":%s,"resume_before_tokens":null,"log":"%s/worker.log","threads":%s}\n' \
        "$dir" "$dir" "$resume_json" "$dir" "$RAYON_NUM_THREADS" >&3
}
train_in_worker() {
    # No worker yet, or one that died since its last run (found so on sending): a fresh one.
    if [ -z "$worker" ] || ! kill -0 "$worker" 2>/dev/null || ! send_request 2>/dev/null; then
        stop_worker
        if ! start_worker; then train_process; return; fi
        send_request
    fi
    read_reply
    if [[ $reply =~ \"exit_code\":([0-9]+) ]]; then
        code=${BASH_REMATCH[1]}
        # After a panic or a stop signal the worker ends by itself.
        case $code in 101|130|138|143) stop_worker ;; esac
    else
        worker_died
    fi
}

# The worker's next reply in $reply; empty when it ended without one.
read_reply() {
    local status
    reply=
    while :; do
        read -r -u 4 reply
        status=$?
        if [ "$status" -le 128 ]; then break; fi  # > 128: interrupted by a signal, which was passed on
    done
}

# The worker died with its run(s) (killed, out of memory): stop it; its exit code in code.
worker_died() {
    worker_code=1
    stop_worker
    code=$worker_code
    if [ "$code" -eq 0 ]; then code=1; fi
}

# Check run $RUN_ID and log its start; returns 1 when the queue skips it (finished before a requeue).
begin_run() {
    RUN_DIR="$SWEEP_DIR/runs/$RUN_ID"
    if [ ! -f "$RUN_DIR/config.json" ]; then
        echo "windtunnel: $RUN_DIR/config.json is not visible on $(hostname): the sweep directory must be on a file system shared with the compute nodes" >&2
        exit $EXIT_CANNOT_START
    fi
    # A queue resumed after a requeue skips the runs it finished.
    if [ "$RUNS" -gt 1 ] && grep -Eq '"state": *"(done|diverged)"' "$RUN_DIR/status.json" 2>/dev/null; then return 1; fi
    echo "$TASK host=$(hostname) device=$DEVICE start=$(date +%s) restarts=$RESTARTS" >> "$RUN_DIR/slurm.log"
    resume=
    if [ -f "$RUN_DIR/run.json" ]; then resume=--resume; fi
}

# Log run $RUN_ID's exit code $code and fold it into task_code; returns 1 when it was interrupted
# (the queue stops there and requeues).
end_run() {
    echo "$TASK end=$(date +%s) exit=$code" >> "$SWEEP_DIR/runs/$RUN_ID/slurm.log"
    case $code in
        # Done, diverged (a result) or cannot start (see worker.log): the task's code when it
        # trains one run (a trunk's branches start only after it is done: afterok); in a queue, the next run.
        0|"$EXIT_DIVERGED"|"$EXIT_CANNOT_START") if [ "$RUNS" -eq 1 ]; then task_code=$code; fi ;;
        # Interrupted (a checkpoint was written): stop here and requeue.
        130|138|143) task_code=$code; return 1 ;;
        # Failed: go on with the queue, requeue at the end.
        *) task_code=$code ;;
    esac
}

# Train the runs given, one after another, in this shell's worker(s); the task's code in task_code.
train_queue() {
    task_code=0
    for RUN_ID in "$@"; do
        if [ -n "$stopped" ]; then task_code=$stopped; break; fi
        begin_run || continue
        if [ "$WORKERS" = per-run ]; then train_process; else train_in_worker; fi
        end_run || break
    done
    if [ "$WORKERS" != per-run ]; then stop_worker; fi
}

# --workers shared: the runs given, RUNS_PER_DEVICE at once in one worker (threads of one process
# on this lane's GPU); the next starts as a reply names the run that ended. A worker that dies fails
# the runs it held, and the rest of the queue gets a fresh one.
train_shared() {
    task_code=0
    if ! start_worker; then WORKERS=per-run train_queue "$@"; return; fi
    local inflight=" " n_inflight=0 halted=
    while :; do
        while [ "$n_inflight" -lt "$RUNS_PER_DEVICE" ] && [ "$#" -gt 0 ] && [ -z "$stopped$halted" ]; do
            RUN_ID=$1
            shift
            begin_run || continue
            send_request 2>/dev/null || true  # a worker gone shows as no reply below
            inflight="$inflight$RUN_ID "
            n_inflight=$((n_inflight + 1))
        done
        if [ "$n_inflight" -eq 0 ]; then break; fi
        read_reply
        if [[ $reply =~ /runs/([^/\"]+)\",\"exit_code\":([0-9]+) ]]; then
            RUN_ID=${BASH_REMATCH[1]}
            code=${BASH_REMATCH[2]}
            inflight=${inflight/ $RUN_ID / }
            n_inflight=$((n_inflight - 1))
            end_run || halted=1
            if [ "$code" -eq 101 ]; then halted=1; fi  # a panic: the worker takes no more runs
        else
            worker_died
            for RUN_ID in $inflight; do end_run || halted=1; done
            inflight=" "
            n_inflight=0
            if [ -z "$stopped$halted" ] && [ "$#" -gt 0 ] && ! start_worker; then WORKERS=per-run train_queue "$@"; return; fi
        fi
    done
    if [ -n "$stopped" ] && [ "$task_code" -eq 0 ]; then task_code=$stopped; fi
    stop_worker
}

# Runs at once (`runs_per_device` on each of the task's GPUs): lane j trains runs j, j + LANES, …
# on GPU j mod GPUS, a queue of its own in a subshell with its own worker. Signals reach every lane.
# With --workers shared a lane is a GPU's one worker, training RUNS_PER_DEVICE runs at once.
if [ "$WORKERS" = shared ]; then LANE=train_shared; AT_ONCE=$GPUS; else LANE=train_queue; AT_ONCE=$(( GPUS * RUNS_PER_DEVICE )); fi
LANES=$(( RUNS < AT_ONCE ? RUNS : AT_ONCE ))
if [ "$LANES" -lt 1 ]; then LANES=1; fi
threads=$(( ${SLURM_CPUS_PER_TASK:-1} / (GPUS * RUNS_PER_DEVICE) ))
export RAYON_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
# The run whose slurm.log records a requeue: the last one started (with lanes, the first).
RUN_DIR="$SWEEP_DIR/runs/$1"
if [ "$LANES" -eq 1 ]; then
    $LANE "$@"
else
    for ((j = 0; j < LANES; j++)); do
        queue=()
        for ((k = j + 1; k <= RUNS; k += LANES)); do queue+=("${!k}"); done
        if [ "$DEVICE" != cpu ]; then DEVICE=cuda:$(( j % GPUS )); fi
        ( lanes=; trap 'forward USR1 138' USR1; trap 'forward TERM 143' TERM; $LANE "${queue[@]}"; exit "$task_code" ) &
        lanes="$lanes $!"
    done
    # The task's code: interrupted if a lane was, else cannot start or failed if one did, else 0.
    task_code=0
    for lane in $lanes; do
        wait_for "$lane"
        case $exit_code in
            0) ;;
            130|138|143) task_code=$exit_code ;;
            *) case $task_code in 130|138|143) ;; *) task_code=$exit_code ;; esac ;;
        esac
    done
    lanes=
fi
code=$task_code

case $code in
    0) exit 0 ;;
    "$EXIT_DIVERGED") exit "$EXIT_DIVERGED" ;;  # diverged: a result; its branches never start (afterok)
    "$EXIT_CANNOT_START") exit "$EXIT_CANNOT_START" ;;  # cannot start as configured (see worker.log): requeueing cannot help
esac
# Interrupted (130, 138, 143: a checkpoint was written) or failed: requeue this task, boundedly,
# unless the sweep was cancelled.
if [ ! -e "$SWEEP_DIR/slurm/cancelled" ] && [ "$RESTARTS" -lt "$MAX_REQUEUES" ]; then
    echo "$TASK requeue after exit $code ($((RESTARTS + 1)) of $MAX_REQUEUES)" >> "$RUN_DIR/slurm.log"
    # A refused requeue (the controller busy, say) is logged and tried again, within the warning time.
    for attempt in 1 2 3 4 5; do
        if answer=$(scontrol requeue "$TASK" 2>&1); then
            exit 0
        fi
        echo "$TASK requeue refused (attempt $attempt of 5): $answer" >> "$RUN_DIR/slurm.log"
        sleep 4
    done
fi
exit "$code"
