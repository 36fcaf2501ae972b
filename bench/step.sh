#!/usr/bin/env bash
# step.sh: CPU training-step benchmark. For GPT-2 124M and for a small model
# (4 layers, 256 channels, 4 heads, vocab 256), both at B=4, T=64 with 2
# threads, it times gptrain (bench_step) and PyTorch CPU (torch_step.py, the
# same step) in one run and prints a table with the ratio.
#   bash bench/step.sh [BUILD_DIR]     (needs python3-torch: bootstrap.sh --bench)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
    { echo "step.sh: PyTorch missing; run: bash launch/bootstrap.sh --bench" >&2; exit 2; }
field() { sed "s/.*\"$2\":\([^,}]*\).*/\1/" <<<"$1"; }

printf '| model | B x T | gptrain ms/step | tok/s | GFLOP/s | PyTorch ms/step | PyTorch / gptrain |\n'
printf '|---|---|---|---|---|---|---|\n'
#        name       preset     L  NH C   V     steps
while read -r name preset L NH C V steps; do
    g=$("$build/bench/bench_step" "$preset" 4 64 "$steps" "$L" "$NH" "$C" "$V")
    t=$(/usr/bin/python3 bench/torch_step.py "$L" "$NH" "$C" "$V" 1024 4 64 "$steps")
    gm=$(field "$g" ms_median); tm=$(field "$t" ms_median)
    printf '| %s | 4 x 64 | %s | %s | %s | %s | %.2f |\n' "$name" "$gm" "$(field "$g" tok_s)" \
        "$(field "$g" gflops)" "$tm" "$(awk -v a="$tm" -v b="$gm" 'BEGIN { print a / b }')"
done <<'CONFIGS'
gpt2-124M gpt2-124M 12 12 768 50257 10
L4-C256-V256 d4 4 4 256 256 40
CONFIGS
echo "(medians over the timed steps after one warm-up step; OMP_NUM_THREADS=$OMP_NUM_THREADS;" \
     "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
