# cuda_train.sh: `gptrain train --device cuda` end to end, on a GPU: the GPU
# loss curve follows the CPU one within bf16 noise over 120 steps of the
# same data and weights; runs repeat bit for bit; a GPU checkpoint resumes
# on the CPU and a CPU checkpoint on the GPU; --recompute runs; unsupported
# shapes and a missing device are one-line errors. Without a GPU only the
# errors are checked and the test exits 77 (ctest: Skipped).
# usage: cuda_train.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2
make_corpus
D=$tmp/data
common="--data $D --model d2 --batch 8 --seq 64 --warmup 10 --val-every 0 --quiet --lr 3e-3"

out=$("$GPTRAIN" train $common --run-dir "$tmp/x" --device cuda --heads 4 2>&1) &&
    fail "head size 32 accepted on the GPU"
echo "$out" | grep -q "head size (channels / heads) of 64 or 128, not 128 / 4 = 32" ||
    fail "unsupported shape message: $out"
pass
if "$GPTRAIN" train $common --run-dir "$tmp/x" --device cuda --dry-run | grep -q "no CUDA device"; then
    out=$("$GPTRAIN" train $common --run-dir "$tmp/x" --device cuda --steps 1 2>&1) &&
        fail "training on a missing GPU succeeded"
    echo "$out" | grep -q "cannot use CUDA device 0" || fail "missing-device message: $out"
    echo "cuda_train: $checks checks passed; skipped: no GPU"
    exit 77
fi

# The CPU and GPU curves: same seed, so same weights and same batches.
"$GPTRAIN" train $common --steps 120 --run-dir "$tmp/cpu" || fail "CPU run"
"$GPTRAIN" train $common --steps 120 --run-dir "$tmp/gpu" --device cuda || fail "GPU run"
paste <(losses "$tmp/cpu/metrics.jsonl" | sed 's/.*"loss"://') \
      <(losses "$tmp/gpu/metrics.jsonl" | sed 's/.*"loss"://') >"$tmp/curves"
[ "$(wc -l <"$tmp/curves")" -eq 120 ] || fail "want 120 steps of each"
awk '{ d = $2 - $1; if (d < 0) d = -d; if (d > worst) worst = d; if (d > 0.03 * $1) bad++ }
     END { printf "cuda_train: worst |gpu - cpu| loss difference %.4f over %d steps\n", worst, NR;
           exit bad > 0 }' "$tmp/curves" || fail "GPU loss left the CPU curve by more than 3%"
awk 'NR == 1 { a = $2 } END { exit !($2 < a - 1.0) }' "$tmp/curves" || fail "GPU loss did not fall"
pass
"$GPTRAIN" train $common --steps 120 --run-dir "$tmp/gpu2" --device cuda || fail "GPU run 2"
cmp -s <(losses "$tmp/gpu/metrics.jsonl") <(losses "$tmp/gpu2/metrics.jsonl") ||
    fail "two GPU runs differ"
pass

# Across devices: 60 steps, a checkpoint, then 60 more on the other device.
for pair in "cuda cpu" "cpu cuda"; do
    set -- $pair
    r=$tmp/x-$1-$2
    "$GPTRAIN" train $common --steps 60 --run-dir "$r" --device "$1" || fail "$1 half"
    "$GPTRAIN" train $common --steps 120 --run-dir "$r" --device "$2" --resume auto ||
        fail "$2 resume of a $1 checkpoint"
    last=$(losses "$r/metrics.jsonl" | tail -1 | sed 's/.*"loss"://')
    ref=$(losses "$tmp/cpu/metrics.jsonl" | tail -1 | sed 's/.*"loss"://')
    awk -v a="$last" -v b="$ref" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.05 * b) }' ||
        fail "$1 -> $2 resume ended at loss $last, the CPU run at $ref"
    pass
done
"$GPTRAIN" train $common --steps 20 --run-dir "$tmp/rec" --device cuda --recompute \
    --stochastic-rounding || fail "--recompute --stochastic-rounding"
pass
echo "cuda_train: $checks checks passed"
