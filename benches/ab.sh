#!/usr/bin/env bash
# Two windtunnel binaries' CPU training step, interleaved on vs-torch.sh's shapes: did a change make
# the step slower? Each round trains A then B on the same shape and threads, so a noisy machine
# slows both alike; read each round's B/A ratio, not the tokens/s.
#
#   benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]      (defaults: 4 rounds, 2 threads)
#
# e.g. an older commit against today's (a second worktree, the same target directory):
#   repo=$PWD; git worktree add /tmp/old COMMIT
#   (cd /tmp/old && CARGO_TARGET_DIR="$repo/target" cargo build --release)   # reuses the built deps
#   cp target/release/windtunnel /tmp/windtunnel-old && cargo build --release   # relinks today's
#   benches/ab.sh /tmp/windtunnel-old target/release/windtunnel
# tokens/s is the steady rate of the steps after the third, as in vs-torch.sh.
set -euo pipefail
A=${1:?usage: benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]}
B=${2:?usage: benches/ab.sh A_BINARY B_BINARY [ROUNDS] [THREADS]}
ROUNDS=${3:-4}
THREADS=${4:-2}
STEPS=${STEPS:-30}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

tokens_per_s() { # binary width depth heads kv_heads
  local steps=$((STEPS + 3)) tokens_per_step=$((16 * 256))
  cat > "$WORK/run.toml" <<TOML
[model]
width = $2
depth = $3
heads = $4
kv_heads = $5
vocab = 256
[mup]
base_width = $2
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
  rm -rf "$WORK/run"
  RAYON_NUM_THREADS=$THREADS "$1" train "$WORK/run.toml" --out "$WORK/run" --quiet > /dev/null
  python3 - "$WORK/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][3:]
tokens = sum(r["tokens"] - p["tokens"] for p, r in zip(rows, rows[1:]))
seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for p, r in zip(rows, rows[1:]))
print(f"{tokens / seconds:.1f}")
PY
}

echo "A = $A, B = $B; $THREADS threads, $ROUNDS rounds, $STEPS timed steps"
printf '%-6s %5s %12s %12s %8s\n' shape round A_tok/s B_tok/s B/A
for shape in "w128 128 4 4 2" "w256 256 8 8 4"; do
  read -r name width depth heads kv <<< "$shape"
  for round in $(seq 1 "$ROUNDS"); do
    a=$(tokens_per_s "$A" "$width" "$depth" "$heads" "$kv")
    b=$(tokens_per_s "$B" "$width" "$depth" "$heads" "$kv")
    printf '%-6s %5s %12s %12s %8s\n' "$name" "$round" "$a" "$b" "$(python3 -c "print(f'{$b / $a:.3f}x')")"
  done
done
