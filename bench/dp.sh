#!/usr/bin/env bash
# dp.sh: the cost of data parallelism on this machine. For each ZeRO stage
# and bucket setting it trains the same model with 2 ranks (mpirun, one
# OpenMP thread each) and compares the median step time with 1 rank at the
# same per-rank batch (one thread, no mpirun), and with two such 1-rank jobs
# run side by side (which share the memory bus and caches as the 2 ranks do,
# but never communicate): the overhead of reducing gradients (and, at stage
# 3, gathering parameters) beyond that sharing, and how much overlap with
# backward hides it. The machine is noisy, so each row runs every job twice,
# alternating, and keeps the faster median of each.
# It also prints the bytes per rank reported for parameters, gradients,
# optimizer state and working buffers.
#   bash bench/dp.sh [BUILD_DIR]          (needs the fortunes corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
G=$build/runtime/gptrain
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$G" prep --out "$tmp/data" --vocab-size 4096 /usr/share/games/fortunes >/dev/null 2>&1
model="--model d6 --batch 4 --seq 64 --steps 14 --warmup 2 --val-every 0 --quiet"
# Median of the step times after the first four (start-up, warm caches).
median_ms() { grep -o '"ms":[0-9.]*' "$1" | cut -d: -f2 | tail -n +5 | sort -g |
              awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mib() { head -1 "$1" | grep -o "\"bytes_$2\":[0-9]*" | awk -F: '{ printf "%.1f", $2 / 1048576 }'; }

min() { awk -v a="$1" -v b="$2" 'BEGIN { print a < b ? a : b }'; }
echo "| ZeRO | buckets | 1 rank ms/step | 2 lone 1-rank jobs ms/step | 2 ranks ms/step | 2 ranks / 1 rank | 2 ranks / 2 lone | params MiB | grads MiB | optimizer MiB | working MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
while read -r zero mb; do
    dir=$tmp/z$zero-$mb one=1e9 two=1e9 lone=1e9
    for round in 1 2; do
        "$G" train --data "$tmp/data" --run-dir "$tmp/one" $model
        one=$(min "$one" "$(median_ms "$tmp/one/metrics.jsonl")")
        "$G" train --data "$tmp/data" --run-dir "$tmp/lone1" $model &
        "$G" train --data "$tmp/data" --run-dir "$tmp/lone2" $model
        wait
        lone=$(min "$lone" "$(awk -v a="$(median_ms "$tmp/lone1/metrics.jsonl")" \
            -v b="$(median_ms "$tmp/lone2/metrics.jsonl")" 'BEGIN { print (a + b) / 2 }')")
        mpirun -np 2 --bind-to none "$G" train --data "$tmp/data" --run-dir "$dir" $model \
            --zero "$zero" --bucket-mb "$mb" </dev/null
        two=$(min "$two" "$(median_ms "$dir/metrics.jsonl")")
    done
    m=$dir/metrics.jsonl
    case $zero in 0|1) b=$([ "$mb" = 0 ] && echo "after backward" || echo "$mb MB") ;;
                  *) b="per unit" ;; esac
    printf '| %s | %s | %.1f | %.1f | %.1f | %+.1f%% | %+.1f%% | %s | %s | %s | %s |\n' "$zero" \
        "$b" "$one" "$lone" "$two" "$(awk -v a="$one" -v b="$two" 'BEGIN { print (b - a) / a * 100 }')" \
        "$(awk -v a="$lone" -v b="$two" 'BEGIN { print (b - a) / a * 100 }')" \
        "$(mib $m params)" "$(mib $m grads)" "$(mib $m optimizer)" "$(mib $m scratch)"
done <<'CONFIGS'
0 0
0 25
0 4
1 0
1 4
2 25
3 25
CONFIGS
echo "(d6: 6 layers, 384 channels, vocab 4096; B=4, T=64 per rank; medians of steps 5-14;" \
     "$(nproc --all) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
