#!/usr/bin/env bash
# `windtunnel serve` under load: a sweep of RUNS runs × STEPS logged steps (defaults 1000 × 10000,
# ~2.5 GB of metrics), written as a finished sweep would leave them (plan.json from `windtunnel
# plan`, each run's metrics.jsonl and status.json), then served. Reports the time to the first
# page, to the first full curves answer (every metrics file read once), to a refreshed answer,
# the size of the curves JSON, and the server's peak memory.
#
#   benches/serve-load.sh [RUNS] [STEPS]          (results: benches/results/serve-load.json, or $OUT_JSON)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000}
STEPS=${2:-10000}
OUT_JSON=${OUT_JSON:-benches/results/serve-load.json}
cargo build --release --quiet
BIN=$PWD/target/release/windtunnel
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
LRS=$(python3 -c "import sys; n=$RUNS//5; print(', '.join(f'{1e-3*1.01**i:.6g}' for i in range(n)))")
cat > "$WORK/load.toml" <<TOML
name = "load"
seeds = [0]
[base]
mup = { base_width = 32 }
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 4096 }
training = { tokens = $((STEPS * 4096)), batch_size = 16, seq_len = 256, eval_interval_tokens = $((STEPS * 4096 / 50)), eval_tokens = 4096, log_interval_steps = 1 }
data = { kind = "synthetic", vocab = 256 }
[[grid]]
name = "lr"
models = { widths = [16, 24, 32, 48, 64], depth = 2, head_dim = 8 }
parameters."optimizer.lr" = { values = [$LRS] }
TOML
mkdir -p "$WORK/results/load"
"$BIN" plan "$WORK/load.toml" --json > "$WORK/results/load/plan.json"
echo "== writing $RUNS runs × $STEPS steps of metrics" >&2
python3 - "$WORK/results/load" "$STEPS" <<'PY'
import json, math, os, sys
root, steps = sys.argv[1], int(sys.argv[2])
plan = json.load(open(os.path.join(root, "plan.json")))
for k, run in enumerate(plan["runs"]):
    d = os.path.join(root, "runs", run["id"])
    os.makedirs(d, exist_ok=True)
    floor = 2.5 + 0.5 / (1 + k % 5)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for s in range(1, steps + 1):
            tokens = s * 4096
            loss = floor + 3.0 * (s ** -0.3)
            ev = f',"eval_loss":{loss + 0.01:.6f}' if s % (steps // 50) == 0 else ""
            f.write(f'{{"step":{s},"tokens":{tokens},"flops":{tokens * 6e5:.6e},"flops_6nd":{tokens * 5e5:.6e},"lr":0.01,"train_loss":{loss:.6f}{ev},"grad_norm":1.0,"tokens_per_s":50000.0,"wall_s":{s * 0.08:.2f}}}\n')
    json.dump({"state": "done", "step": steps, "steps": steps, "tokens": steps * 4096, "eval_loss": loss, "pid": 1, "updated_at": 0.0}, open(os.path.join(d, "status.json"), "w"))
PY
du -sh "$WORK/results/load" >&2
"$BIN" serve "$WORK/results" --bind 127.0.0.1:0 > "$WORK/serve.out" 2>&1 &
SERVER=$!
until grep -q "serving http" "$WORK/serve.out"; do sleep 0.05; done
PORT=$(sed -n 's|.*127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/serve.out" | head -1)
t() { local s; s=$(date +%s.%N); curl -sf -o "$2" "http://127.0.0.1:$PORT$1"; python3 -c "print(round($(date +%s.%N) - $s, 3))"; }
page_s=$(t /sweep/load "$WORK/page.html")
curves_s=$(t "/api/sweeps/load/curves" "$WORK/curves.json")
sleep 1
again_s=$(t "/api/sweeps/load/curves?since=0" "$WORK/curves2.json")
progress_s=$(t "/api/sweeps/load/progress" "$WORK/progress.json")
rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
curves_bytes=$(stat -c %s "$WORK/curves.json")
python3 - "$OUT_JSON" "$RUNS" "$STEPS" "$page_s" "$curves_s" "$again_s" "$progress_s" "$rss_kib" "$curves_bytes" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys, datetime
out, runs, steps, page, curves, again, progress, rss, size, commit = sys.argv[1:]
r = {"date": datetime.date.today().isoformat(), "commit": commit, "runs": int(runs), "steps_per_run": int(steps),
     "first_page_s": float(page), "first_curves_s": float(curves), "refreshed_curves_s": float(again),
     "progress_s": float(progress), "server_peak_rss_mib": int(rss) / 1024, "curves_json_mib": int(size) / 2**20}
open(out, "w").write(json.dumps(r, indent=2) + "\n")
print(json.dumps(r, indent=2))
PY
