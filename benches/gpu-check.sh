#!/usr/bin/env bash
# The GPU check of a `--features cuda` build: coordinate check on cuda:0 next to the CPU, the
# quickstart run, and training throughput of the bench shapes and the 9M wind-tunnel proxy.
#
#   cargo build --release --features cuda
#   benches/gpu-check.sh target/release/windtunnel /tmp/gpu-check
#
# Results (JSON and logs) go to OUTDIR.
set -uo pipefail
BIN=${1:?usage: gpu-check.sh WINDTUNNEL_BINARY OUTDIR}
OUT=${2:?usage: gpu-check.sh WINDTUNNEL_BINARY OUTDIR}
mkdir -p "$OUT"
WORK=$(mktemp -d)
log() { echo "== $*" | tee -a "$OUT/log.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

log "coordinate check, µP and SP, cuda:0 and cpu"
for p in mup sp; do
  for d in cuda:0 cpu; do
    /usr/bin/time -f "%e s" -o "$WORK/t" "$BIN" coord-check --parameterization $p --device $d --json > "$OUT/coord-$p-${d%%:*}.json" 2>> "$OUT/log.txt"
    echo "coord-check $p $d: exit $? in $(cat "$WORK/t")" | tee -a "$OUT/log.txt"
  done
done

bench_run() { # name width depth heads kv_heads batch seq vocab steps
  cat > "$WORK/$1.toml" <<TOML
[model]
width = $2
depth = $3
heads = $4
kv_heads = $5
vocab = $8
[mup]
base_width = $2
[optimizer]
lr = 0.01
[schedule]
kind = "constant"
warmup_tokens = 0
[training]
tokens = $(( $6 * $7 * $9 ))
batch_size = $6
seq_len = $7
eval_interval_tokens = $(( $6 * $7 * $9 ))
eval_tokens = $(( $6 * $7 ))
checkpoint_every_minutes = 0
[data]
kind = "synthetic"
vocab = $8
TOML
  "$BIN" train "$WORK/$1.toml" --out "$WORK/$1-${10%%:*}" --device "${10}" --quiet --json > "$OUT/train-$1-${10%%:*}.json" 2>> "$OUT/log.txt"
  echo "train $1 on ${10}: exit $? $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/train-$1-${10%%:*}.json")" | tee -a "$OUT/log.txt"
}

log "training throughput (tokens/s over the whole run, first steps included)"
bench_run w128 128 4 4 2 16 256 256 60 cuda:0
bench_run w256 256 8 8 4 16 256 256 60 cuda:0
bench_run 9m 320 8 5 5 32 512 256 60 cuda:0
bench_run w128 128 4 4 2 16 256 256 20 cpu

log "quickstart on cuda:0"
"$BIN" train sweeps/runs/quickstart.toml --out "$WORK/quickstart" --device cuda:0 --quiet --json > "$OUT/quickstart-cuda.json" 2>> "$OUT/log.txt"
echo "quickstart: exit $?" | tee -a "$OUT/log.txt"
cp "$WORK/quickstart/metrics.jsonl" "$OUT/quickstart-cuda-metrics.jsonl" 2>/dev/null
log "done"
