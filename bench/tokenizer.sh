#!/usr/bin/env bash
# tokenizer.sh: BPE tokenizer benchmark. Builds an English corpus of about
# 100 MB from Debian packages (the GCIDE dictionary, Python's HTML docs and the
# fortunes), then times training a 16k vocabulary on it and encoding it with
# that vocabulary on 1 thread and on all threads (bench_tokenizer), and also
# the fortunes alone with a 4k vocabulary (the quickstart's setting).
#   bash bench/tokenizer.sh [BUILD_DIR]   (packages: bootstrap.sh --bench)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
for f in /usr/share/dictd/gcide.dict.dz /usr/share/doc/python3.11/html/index.html; do
    [ -e "$f" ] || { echo "tokenizer.sh: $f missing; run: bash launch/bootstrap.sh --bench" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zcat /usr/share/dictd/gcide.dict.dz > "$tmp/gcide.txt"
find /usr/share/doc/python3.11/html -name '*.html' -print0 | sort -z | xargs -0 cat > "$tmp/pydoc.txt"
fortunes=$(find /usr/share/games/fortunes -type f ! -name '*.dat' | sort)
cat $fortunes > "$tmp/fortunes.txt"
field() { sed "s/.*\"$2\":\([^,}]*\).*/\1/" <<<"$1"; }
printf '| corpus | MB | vocab | train s | bytes/token | encode MB/s, 1 thread | encode MB/s, %s threads |\n' \
    "${OMP_NUM_THREADS:-$(nproc)}"
printf '|---|---|---|---|---|---|---|\n'
row() {
    local r; r=$("$build/bench/bench_tokenizer" "$2" "${@:3}")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(field "$r" corpus_mb)" \
        "$(field "$r" vocab)" "$(field "$r" train_s)" "$(field "$r" bytes_per_token)" \
        "$(field "$r" encode_mb_s_1thread)" "$(sed 's/.*threads":\([^}]*\)}/\1/' <<<"$r")"
}
row "gcide + Python docs + fortunes" 16384 "$tmp/gcide.txt" "$tmp/pydoc.txt" "$tmp/fortunes.txt"
row "fortunes" 4096 "$tmp/fortunes.txt"
