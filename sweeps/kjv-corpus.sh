#!/usr/bin/env bash
# The King James Bible (public domain; Debian's bible-kjv package) as a JSON Lines corpus for the
# real-text wind tunnel (sweeps/kjv.toml): one document per chapter (1,189), {"title", "text"},
# gzip-compressed, written to data/kjv/chapters.jsonl.gz (or $1).
#
#   sudo apt-get install bible-kjv      # the `bible` program and its text (bible-kjv-text)
#   sweeps/kjv-corpus.sh
#
# Without root: `apt-get download bible-kjv bible-kjv-text`, unpack both with `dpkg -x`, and set
# BIBLE=/path/usr/bin/bible BIBLE_DATA=/path/usr/lib.
set -euo pipefail
out=${1:-data/kjv/chapters.jsonl.gz}
bible=${BIBLE:-bible}
command -v "$bible" >/dev/null || { echo "kjv-corpus.sh: no \`bible\` program; install Debian's bible-kjv (see the top of this script)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$bible" ${BIBLE_DATA:+-p "$BIBLE_DATA"} "Gen1:1-Rev22:21" | python3 -c '
import gzip, json, re, sys
out = sys.argv[1]
chapters, title, verses = [], None, []
for line in sys.stdin:
    line = line.rstrip("\n")
    if line and not line.startswith(" ") and re.fullmatch(r".+ \d+", line):
        if title:
            chapters.append((title, verses))
        title, verses = line, []
    elif re.match(r"^\s+\d+ ", line):
        verses.append(re.sub(r"^\s+\d+ ", "", line))
    elif line.strip():
        verses[-1] += " " + line.strip()
chapters.append((title, verses))
with gzip.open(out + ".tmp", "wt", encoding="utf-8") as f:
    for title, verses in chapters:
        f.write(json.dumps({"title": title, "text": title + "\n" + "\n".join(verses)}) + "\n")
import os; os.replace(out + ".tmp", out)
print(f"{out}: {len(chapters)} chapters, {sum(len(t) + 1 + sum(len(v) + 1 for v in vs) - 1 for t, vs in chapters)} characters", file=sys.stderr)
' "$out"
