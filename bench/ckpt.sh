#!/usr/bin/env bash
# ckpt.sh: what checkpoints cost. Two ranks train d8 (8 layers, 512
# channels, vocab 4096: 27.8M parameters, a 334 MB checkpoint with both
# AdamW moments) at ZeRO 1 and save every 3 steps, once in the foreground
# and once with --async-save. For each it prints the training thread's stall
# per save (the stall_ms of the save events at steps 3, 6 and 9), the median
# step time and the whole run's time (12 steps, 4 saves); then the time
# `gptrain inspect` takes to read and checksum a whole checkpoint.
#   bash bench/ckpt.sh [BUILD_DIR] [DIR]   (DIR: where to write, default a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
G=$build/runtime/gptrain
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d "${2:-${TMPDIR:-/tmp}}/ckptbench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$G" prep --out "$tmp/data" --vocab-size 4096 /usr/share/games/fortunes >/dev/null 2>&1
run="--data $tmp/data --model d8 --batch 4 --seq 64 --steps 12 --warmup 2 --val-every 0
     --save-every 3 --keep-last 1 --zero 1 --quiet"
median() { sort -g | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "| saves | checkpoint MB | stall per save ms | median step ms | run s |"
echo "|---|---|---|---|---|"
for mode in foreground background; do
    flag=; [ $mode = background ] && flag=--async-save
    t0=$(date +%s.%N)
    mpirun -np 2 --bind-to none "$G" train $run --run-dir "$tmp/$mode" $flag </dev/null
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    m=$tmp/$mode/metrics.jsonl
    stall=$(grep '"event":"save"' "$m" | grep -v '"step":12,' | grep -o '"stall_ms":[0-9.]*' |
            cut -d: -f2 | median)
    step=$(grep -o '"ms":[0-9.]*' "$m" | cut -d: -f2 | median)
    mb=$(stat -c %s "$tmp/$mode/model.h5" | awk '{ printf "%.0f", $1 / 1e6 }')
    printf '| %s | %s | %.1f | %.1f | %s |\n' $mode "$mb" "$stall" "$step" "$secs"
done
start=$(date +%s.%N)
"$G" inspect "$tmp/foreground/model.h5" >/dev/null
echo "read and checksum a whole checkpoint (gptrain inspect): $(awk -v a="$start" \
     -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
echo "($(nproc --all) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
     "writing to $(df -P "$tmp" | awk 'NR == 2 { print $1 }'))"
