# shellcheck shell=bash
# windtunnel's steady training rate on one shape, sourced by vs-torch.sh and ab.sh:
#   windtunnel_tps BINARY WORK_DIR THREADS STEPS WIDTH DEPTH HEADS KV_HEADS
# A run of STEPS + 3 steps (batch 16 × seq 256, vocab 256), one metrics line per step, evaluated
# only at the end; prints tokens/s over the steps after the third.
windtunnel_tps() {
  local bin=$1 work=$2 threads=$3 steps=$(($4 + 3)) tokens_per_step=$((16 * 256))
  shift 4
  cat > "$work/run.toml" <<TOML
[model]
width = $1
depth = $2
heads = $3
kv_heads = $4
vocab = 256
[mup]
base_width = $1
[optimizer]
lr = 0.01
[schedule]
kind = "constant"
warmup_tokens = 0
[training]
tokens = $((steps * tokens_per_step))
batch_size = 16
seq_len = 256
eval_interval_tokens = $((steps * tokens_per_step))
eval_tokens = 4096
log_interval_steps = 1
checkpoint_every_minutes = 0
[data]
kind = "synthetic"
vocab = 256
TOML
  rm -rf "$work/run"
  RAYON_NUM_THREADS=$threads "$bin" train "$work/run.toml" --out "$work/run" --quiet > /dev/null
  python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][3:]
tokens = sum(r["tokens"] - p["tokens"] for p, r in zip(rows, rows[1:]))
seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for p, r in zip(rows, rows[1:]))
print(f"{tokens / seconds:.1f}")
PY
}
