"""The Python reference for `data prepare`'s throughput: the same tokenizer.json through Hugging
Face `tokenizers` (PyPI), on the same JSON Lines corpus, doing the same work: read and decompress
the lines, parse each object, encode its text in batches with `encode_batch_fast` (Rust threads,
RAYON_NUM_THREADS / TOKENIZERS_PARALLELISM as the user sets them), append the end-of-document token
and write little-endian u16 tokens. Prints one JSON line: seconds, text bytes, tokens, MB/s.

    python benches/prepare_python.py TOKENIZER CORPUS.jsonl[.gz] OUT.bin
"""
import array
import gzip
import json
import sys
import time

from tokenizers import Tokenizer


def main():
    tokenizer_path, corpus, out = sys.argv[1:4]
    started = time.perf_counter()
    tok = Tokenizer.from_file(tokenizer_path)
    eod = tok.token_to_id("<|endoftext|>")
    opener = gzip.open if corpus.endswith(".gz") else open
    text_bytes = tokens = 0
    batch, batch_bytes = [], 0

    def flush(f):
        nonlocal tokens
        ids = array.array("H")
        for enc in tok.encode_batch_fast(batch, add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eod)
        tokens += len(ids)
        f.write(ids.tobytes())  # x86 is little-endian
        batch.clear()

    with opener(corpus, "rt", encoding="utf-8") as lines, open(out, "wb") as f:
        for line in lines:
            text = json.loads(line)["text"]
            batch.append(text)
            batch_bytes += len(text.encode("utf-8"))
            if batch_bytes >= 16 << 20:
                text_bytes += batch_bytes
                batch_bytes = 0
                flush(f)
        text_bytes += batch_bytes
        if batch:
            flush(f)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "text_bytes": text_bytes, "tokens": tokens, "text_mb_per_s": text_bytes / 1e6 / seconds}))


if __name__ == "__main__":
    main()
