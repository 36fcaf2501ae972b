# guard.sh: the numerics guard. A NaN or Inf loss and a loss spike each
# skip exactly that update (the checkpoint after it holds the same weights
# as the one before), --spike-zscore 0 lets a spike through, --max-skips
# skips in a row stop the run with exit 1 naming the step and leave the
# newest checkpoint in place, a resumed run judges spikes as the first did,
# and ranks under ZeRO-3 skip together.
# GPTRAIN_FAULT_LOSS injects the bad losses.   usage: guard.sh GPTRAIN CKPT_COMPARE
. "$(dirname "$0")/lib.sh"
CMP=$2
export OMP_NUM_THREADS=2
make_corpus
common="--data $tmp/data --model d2 --batch 4 --seq 32 --steps 40 --warmup 4 --val-every 0 --quiet"
ck() { printf '%s/ckpt_%08d.h5' "$1" "$2"; }

GPTRAIN_FAULT_LOSS="5:nan,7:inf,30:50" "$GPTRAIN" train $common --run-dir "$tmp/a" \
    --save-every 1 --keep-last 0 2>"$tmp/a.err" || fail "run with bad losses failed"
for s in 5 7 30; do
    grep -q "\"event\":\"skip\",\"step\":$s," "$tmp/a/metrics.jsonl" || fail "no skip at step $s"
    "$CMP" "$(ck "$tmp/a" $((s - 1)))" "$(ck "$tmp/a" $s)" 0 >/dev/null ||
        fail "step $s was skipped but the weights changed"
done
[ "$(grep -c '"event":"skip"' "$tmp/a/metrics.jsonl")" -eq 3 ] || fail "want exactly 3 skips"
"$CMP" "$(ck "$tmp/a" 5)" "$(ck "$tmp/a" 6)" 0 >/dev/null && fail "step 6 did not update"
grep -q '"reason":"loss spike","loss":50,' "$tmp/a/metrics.jsonl" || fail "spike not logged"
grep -q 'step 30: skipped the update (loss spike: loss 50' "$tmp/a.err" ||
    fail "no warning for the spike: $(cat "$tmp/a.err")"
pass

GPTRAIN_FAULT_LOSS="30:50" "$GPTRAIN" train $common --run-dir "$tmp/b" --spike-zscore 0 ||
    fail "run with --spike-zscore 0 failed"
grep -q '"event":"skip"' "$tmp/b/metrics.jsonl" && fail "--spike-zscore 0 still skipped"
pass

# Checkpoints keep the guard's window: resumed at step 25, the run still
# judges step 30's spike against the 20+ losses before it, as run a did.
GPTRAIN_FAULT_LOSS="30:50" "$GPTRAIN" train $common --run-dir "$tmp/r" \
    --resume "$(ck "$tmp/a" 25)" || fail "resumed run"
grep -q '"event":"skip","step":30,' "$tmp/r/metrics.jsonl" || fail "the resumed run forgot the window"
cmp -s <(losses "$tmp/a/metrics.jsonl" | awk -F'[:,]' '$2 > 25') <(losses "$tmp/r/metrics.jsonl") ||
    fail "the resumed run's losses differ"
pass

rc=0
GPTRAIN_FAULT_LOSS="12:nan,13:inf,14:nan" "$GPTRAIN" train $common --run-dir "$tmp/c" \
    --save-every 5 --max-skips 3 2>"$tmp/c.err" || rc=$?
[ $rc -eq 1 ] || fail "3 skips in a row: exit $rc, want 1"
grep -q 'error: step 14: 3 updates in a row were skipped' "$tmp/c.err" ||
    fail "message: $(cat "$tmp/c.err")"
[ "$(cat "$tmp/c/latest")" = ckpt_00000010.h5 ] || fail "latest moved: $(ls "$tmp/c")"
[ -e "$(ck "$tmp/c" 15)" ] || [ -e "$tmp/c/model.h5" ] && fail "saved after the bad steps"
pass

if [ -n "${MPIEXEC:-}" ]; then
    GPTRAIN_FAULT_LOSS="9:nan" "$MPIEXEC" -np 2 --oversubscribe --bind-to none \
        -x GPTRAIN_FAULT_LOSS "$GPTRAIN" train $common --steps 16 --zero 3 \
        --run-dir "$tmp/d" </dev/null 2>"$tmp/d.err" || fail "2 ranks, ZeRO-3: $(cat "$tmp/d.err")"
    grep -q '"event":"skip","step":9,' "$tmp/d/metrics.jsonl" || fail "2 ranks: no skip"
    [ "$(losses "$tmp/d/metrics.jsonl" | wc -l)" -eq 15 ] || fail "2 ranks: want 15 steps"
    pass
fi
echo "guard: $checks checks passed"
