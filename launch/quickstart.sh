#!/usr/bin/env bash
# quickstart.sh: the README's first command. Sets up and builds, trains a
# 4096-token BPE tokenizer on the fortunes corpus (English text from Debian's
# `fortunes` package) and turns it into token shards, trains a small GPT-2
# (d4: 4 layers, 256 channels) on the CPU for a few minutes, saves it to
# runs/quickstart/model.h5, plots its loss (runs/quickstart/loss.png and
# .svg), and prints a sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/bootstrap.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
set -x
build/runtime/gptrain prep --vocab-size 4096 --out runs/fortunes /usr/share/games/fortunes
build/runtime/gptrain train --data runs/fortunes --run-dir runs/quickstart --model d4 \
    --batch 8 --seq 64 --steps 1200 --warmup 30 --lr 1e-3 --val-every 200 --log-every 50
build/runtime/gptrain plot runs/quickstart
build/runtime/gptrain sample --ckpt runs/quickstart/model.h5 --prompt "The meaning of life is" \
    --max-tokens 300 --temperature 0.8 --top-k 40
