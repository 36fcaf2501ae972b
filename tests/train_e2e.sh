# train_e2e.sh: end-to-end training runs of the gptrain binary: the loss
# falls, runs are bitwise deterministic for a seed, `mpirun -np 1` matches
# the plain process (multi-rank runs: dp_equivalence.sh), accumulation and
# every schedule run, the saved model
# opens in h5dump and samples.   usage: train_e2e.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2
make_corpus
D=$tmp/data
common="--data $D --model d2 --batch 4 --seq 32 --steps 24 --warmup 4 --val-every 8 --val-batches 2 --quiet"

"$GPTRAIN" train $common --run-dir "$tmp/a" || fail "training run a"
"$GPTRAIN" train $common --run-dir "$tmp/b" || fail "training run b"
[ "$(losses "$tmp/a/metrics.jsonl" | wc -l)" -eq 24 ] || fail "want 24 step lines"
cmp -s <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/b/metrics.jsonl") ||
    fail "two runs with the same seed differ"
pass
first=$(losses "$tmp/a/metrics.jsonl" | head -1 | sed 's/.*"loss"://')
last=$(grep '"event":"val"' "$tmp/a/metrics.jsonl" | tail -1 | sed 's/.*"val_loss"://; s/}//')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' ||
    fail "val loss $last did not fall well below the first loss $first"
pass
head -1 "$tmp/a/metrics.jsonl" | grep -q '"event":"config"' || fail "config line first"
grep -q '"event":"save"' "$tmp/a/metrics.jsonl" || fail "no save event"
pass

"$GPTRAIN" train $common --run-dir "$tmp/c" --seed 7 || fail "training run c"
cmp -s <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/c/metrics.jsonl") &&
    fail "a different seed gave the same losses"
pass

if [ -n "${MPIEXEC:-}" ]; then
    # Open MPI binds a rank to one core by default; unbound, the rank's
    # threads see the same cores as the plain process and give the same bits.
    "$MPIEXEC" -np 1 --bind-to none "$GPTRAIN" train $common --run-dir "$tmp/m" || fail "mpirun -np 1"
    cmp -s <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/m/metrics.jsonl") ||
        fail "mpirun -np 1 differs from the plain process"
    pass
fi

"$GPTRAIN" train $common --model gpt2-124M --run-dir "$tmp/dry" --dry-run > "$tmp/dry.out" ||
    fail "--dry-run"
grep -q "tokens/step, [0-9.]* GFLOP/step" "$tmp/dry.out" && grep -q "^memory per rank (ZeRO stage 0)" "$tmp/dry.out" ||
    fail "--dry-run output: $(cat "$tmp/dry.out")"
[ ! -e "$tmp/dry" ] || fail "--dry-run wrote the run directory"
pass

for s in constant wsd; do
    "$GPTRAIN" train $common --steps 6 --lr-schedule $s --run-dir "$tmp/$s" || fail "schedule $s"
    pass
done
"$GPTRAIN" train $common --steps 3 --total-batch 512 --run-dir "$tmp/acc" || fail "accumulation"
grep -q '"accum":4' "$tmp/acc/metrics.jsonl" || fail "accum not 4"
pass

if command -v h5dump >/dev/null; then
    h5dump -H "$tmp/a/model.h5" | grep -q 'DATASET "h.1.mlp.c_fc.weight"' || fail "h5dump"
    pass
fi
"$GPTRAIN" sample --ckpt "$tmp/a/model.h5" --prompt "The " --max-tokens 40 --seed 3 > "$tmp/s1" ||
    fail "sample"
"$GPTRAIN" sample --ckpt "$tmp/a/model.h5" --prompt "The " --max-tokens 40 --seed 3 > "$tmp/s2"
[ "$(head -c 4 "$tmp/s1")" = "The " ] && [ "$(wc -c < "$tmp/s1")" -ge 44 ] || fail "sample output"
cmp -s "$tmp/s1" "$tmp/s2" || fail "sampling is not deterministic for a seed"
pass
echo "train_e2e: $checks passed, 0 failed"
