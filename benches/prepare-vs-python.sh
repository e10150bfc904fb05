#!/usr/bin/env bash
# `windtunnel data prepare` against the same tokenizer driven from Python (PyPI's `tokenizers`,
# `encode_batch_fast`; benches/prepare_python.py) on the same corpus and threads, alternating
# ROUNDS times so a noisy machine slows both alike. Both read the same gzip JSON Lines file, parse
# it, tokenize, append the end-of-document token and write u16 tokens.
#
#   benches/prepare-vs-python.sh [ROUNDS] [THREADS] [COPIES]   (defaults: 3 rounds, 2 threads, 8 copies)
#
# Corpus: COPIES copies of data/kjv/chapters.jsonl.gz (sweeps/kjv-corpus.sh makes it; 4.1 MB of
# text each) under data/kjv/tokenizer.json (the `data tokenizer` command of the user guide's corpus chapter makes it).
# `tokenizers` comes from a venv in target/tokenizers-venv (made here with pip if missing) or from
# $TOKENIZERS_PYTHON. Results: a table on stdout, JSON in benches/results/prepare-vs-python.json
# (or $OUT_JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${2:-2}
COPIES=${3:-8}
OUT_JSON=${OUT_JSON:-benches/results/prepare-vs-python.json}
CORPUS=data/kjv/chapters.jsonl.gz
TOKENIZER=data/kjv/tokenizer.json
for f in "$CORPUS" "$TOKENIZER"; do
  [ -f "$f" ] || { echo "prepare-vs-python.sh: $f is missing; make it as sweeps/kjv.toml's header says" >&2; exit 1; }
done
PY=${TOKENIZERS_PYTHON:-target/tokenizers-venv/bin/python}
if ! "$PY" -c "import tokenizers" 2>/dev/null; then
  echo "== making target/tokenizers-venv with tokenizers (pip install; once)" >&2
  python3 -m venv target/tokenizers-venv
  target/tokenizers-venv/bin/pip install --quiet --progress-bar off "tokenizers==0.22.*"
  PY=target/tokenizers-venv/bin/python
fi
cargo build --release --quiet
BIN=target/release/windtunnel
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for _ in $(seq "$COPIES"); do cat "$CORPUS"; done > "$WORK/corpus.jsonl.gz"
export RAYON_NUM_THREADS=$THREADS TOKENIZERS_PARALLELISM=true
rows=()
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/out"
  ours=$("$BIN" data prepare --tokenizer "$TOKENIZER" --input "$WORK/corpus.jsonl.gz" --out "$WORK/out" --eval-fraction 0 --quiet --json)
  theirs=$("$PY" benches/prepare_python.py "$TOKENIZER" "$WORK/corpus.jsonl.gz" "$WORK/python.bin")
  # Same tokens, in the same order (no split): the comparison is of equal work.
  cmp -s "$WORK/out/train.bin" "$WORK/python.bin" || { echo "prepare-vs-python.sh: the two outputs differ" >&2; exit 1; }
  row=$(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); p=json.loads(sys.argv[2]); print(json.dumps({"round": int(sys.argv[3]), "windtunnel_text_mb_per_s": o["text_mb_per_s"], "python_tokenizers_text_mb_per_s": p["text_mb_per_s"], "ratio_vs_python": o["text_mb_per_s"] / p["text_mb_per_s"], "text_bytes": p["text_bytes"], "tokens": p["tokens"]}))' "$ours" "$theirs" "$round")
  echo "$row"
  rows+=("$row")
done
python3 - "$OUT_JSON" "$THREADS" "$("$PY" -c 'import tokenizers; print(tokenizers.__version__)')" "$(git rev-parse --short HEAD)" "${rows[@]}" <<'PY'
import json, statistics, sys, datetime, platform
out, threads, version, commit, *rows = sys.argv[1:]
rows = [json.loads(r) for r in rows]
result = {"date": datetime.date.today().isoformat(), "commit": commit, "cpu": platform.processor() or platform.machine(),
          "threads": int(threads), "python_tokenizers_version": version, "corpus": "KJV chapters (JSON Lines, gzip)",
          "rounds": rows, "median_ratio_vs_python": statistics.median(r["ratio_vs_python"] for r in rows)}
open(out, "w").write(json.dumps(result, indent=2) + "\n")
print(f"text MB/s  windtunnel {statistics.median(r['windtunnel_text_mb_per_s'] for r in rows):.2f}  "
      f"python tokenizers {statistics.median(r['python_tokenizers_text_mb_per_s'] for r in rows):.2f}  "
      f"median ratio {result['median_ratio_vs_python']:.2f}x  ({len(rows)} rounds, {threads} threads)")
PY
