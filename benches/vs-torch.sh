#!/usr/bin/env bash
# windtunnel's training step against PyTorch eager on the same model, shapes and threads, on the
# CPU: the two alternate, ROUNDS times per shape, so a noisy machine slows both alike; the ratio
# of each round is what to read.
#
#   benches/vs-torch.sh [ROUNDS] [THREADS]        (defaults: 3 rounds, 2 threads)
#
# Shapes (batch 16 × seq 256, vocab 256): w128 = width 128 × 4 layers, 4 heads (2 kv);
# w256 = width 256 × 8 layers, 8 heads (4 kv). tokens/s is the steady rate: the steps after the
# first three (windtunnel: from its per-step metrics lines; PyTorch: benches/torch_reference.py).
# PyTorch runs twice per round: as it comes, and with torch.set_flush_denormal(True), the mode
# windtunnel's CPU training sets (src/cpu.rs); ratio_ftz is against the second.
# PyTorch comes from a venv in target/torch-venv (made here with pip if missing; PyPI's wheel is
# large) or from $TORCH_PYTHON. Results: a table on stdout, JSON in benches/results/cpu-vs-torch.json
# (or $OUT_JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${2:-2}
STEPS=${STEPS:-30}
OUT_JSON=${OUT_JSON:-benches/results/cpu-vs-torch.json}
PY=${TORCH_PYTHON:-target/torch-venv/bin/python}
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "== making target/torch-venv with PyTorch (pip install torch; once)" >&2
  python3 -m venv target/torch-venv
  target/torch-venv/bin/pip install --quiet --progress-bar off torch numpy
  PY=target/torch-venv/bin/python
fi
cargo build --release --quiet
BIN=target/release/windtunnel
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# windtunnel's steady rate on a shape (benches/windtunnel-step-rate.sh).
# shellcheck source=benches/windtunnel-step-rate.sh
source benches/windtunnel-step-rate.sh

torch_tps() { # width depth heads kv_heads ffn_width [--flush-denormal]
  "$PY" benches/torch_reference.py --width "$1" --depth "$2" --heads "$3" --kv-heads "$4" --ffn-width "$5" --vocab 256 \
    --batch-size 16 --seq-len 256 --steps "$STEPS" --threads "$THREADS" ${6:-} | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['tokens_per_s']:.1f}\")"
}

ffn_width() { "$BIN" model --width "$1" --depth "$2" --heads "$3" --kv-heads "$4" --vocab 256 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['ffn_width'])"; }

TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")
echo "windtunnel $(git rev-parse --short HEAD) vs PyTorch $TORCH_VERSION eager, $THREADS threads, $ROUNDS rounds, $STEPS timed steps"
printf "%-6s %5s %17s %12s %16s %7s %9s\n" shape round windtunnel_tok/s torch_tok/s torch_ftz_tok/s ratio ratio_ftz
RESULTS="[]"
for shape in "w128 128 4 4 2" "w256 256 8 8 4"; do
  set -- $shape
  name=$1; shift
  ffn=$(ffn_width "$@")
  for round in $(seq 1 "$ROUNDS"); do
    wt=$(windtunnel_tps "$BIN" "$WORK" "$THREADS" "$STEPS" "$@")
    pt=$(torch_tps "$@" "$ffn")
    pf=$(torch_tps "$@" "$ffn" --flush-denormal)
    ratio=$(python3 -c "print(f'{$wt / $pt:.3f}')")
    ratio_ftz=$(python3 -c "print(f'{$wt / $pf:.3f}')")
    printf "%-6s %5d %17.0f %12.0f %16.0f %6.3fx %8.3fx\n" "$name" "$round" "$wt" "$pt" "$pf" "$ratio" "$ratio_ftz"
    RESULTS=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); r.append(dict(shape='$name', round=$round, windtunnel_tokens_per_s=$wt, torch_eager_tokens_per_s=$pt, torch_eager_ftz_tokens_per_s=$pf, ratio_vs_torch_eager=$ratio, ratio_vs_torch_eager_ftz=$ratio_ftz)); print(json.dumps(r))" "$RESULTS")
  done
done
mkdir -p "$(dirname "$OUT_JSON")"
python3 - "$RESULTS" "$OUT_JSON" "$TORCH_VERSION" "$THREADS" "$STEPS" <<'PY'
import json, statistics, subprocess, sys, datetime, platform
rounds = json.loads(sys.argv[1])
summary = {}
for shape in sorted({r["shape"] for r in rounds}):
    ratios = [r["ratio_vs_torch_eager"] for r in rounds if r["shape"] == shape]
    ftz = [r["ratio_vs_torch_eager_ftz"] for r in rounds if r["shape"] == shape]
    summary[shape] = {
        "median_ratio_vs_torch_eager": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "median_ratio_vs_torch_eager_ftz": statistics.median(ftz),
        "min_ftz": min(ftz),
        "max_ftz": max(ftz),
    }
    print(
        f"{shape}: median ratio {statistics.median(ratios):.3f}x (range {min(ratios):.3f}-{max(ratios):.3f}); "
        f"vs PyTorch flushing denormals {statistics.median(ftz):.3f}x (range {min(ftz):.3f}-{max(ftz):.3f})"
    )
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
out = {
    "date": datetime.date.today().isoformat(),
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "cpu": cpu,
    "threads": int(sys.argv[4]),
    "timed_steps": int(sys.argv[5]),
    "torch": sys.argv[3],
    "rounds": rounds,
    "summary": summary,
}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print(f"wrote {sys.argv[2]}")
PY
