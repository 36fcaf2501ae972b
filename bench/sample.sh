#!/usr/bin/env bash
# sample.sh: what a generated token costs, with the KV cache and with the
# plain path (--no-kv-cache: the whole context through the model for every
# token). A d6 model (6 layers, 384 channels, vocab 4096, max seq 1024; one
# training step, so its weights are near their initialisation: speed does
# not depend on them) generates N tokens greedily after a one-token prompt,
# so the context grows from 1 to N. Prints ms per token for each N; the
# cached path should grow slowly with N (attention is O(N) per token), the
# plain one about linearly in N (O(N^2) per token in attention, O(N) in
# the rest).   bash bench/sample.sh [BUILD_DIR]   (about 3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
G=${1:-build}/runtime/gptrain
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$G" prep --quiet --out "$tmp/data" --vocab-size 4096 /usr/share/games/fortunes >/dev/null
"$G" train --data "$tmp/data" --model d6 --batch 1 --seq 64 --steps 1 --val-every 0 \
    --run-dir "$tmp/run" --quiet
ms_per_token() { # N [FLAGS]
    local t0 t1
    t0=$(date +%s.%N)
    "$G" sample --ckpt "$tmp/run/model.h5" --max-tokens "$1" --temperature 0 "${@:2}" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v n="$1" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }'
}
echo "| tokens generated | KV cache ms/token | plain ms/token | speedup |"
echo "|---|---|---|---|"
for n in 64 256 512; do
    kv=$(ms_per_token $n)
    plain=$(ms_per_token $n --no-kv-cache)
    awk -v n=$n -v k="$kv" -v p="$plain" 'BEGIN { printf "| %d | %s | %s | %.1fx |\n", n, k, p, p / k }'
done
