# sample.sh: `gptrain sample`. With the KV cache and without it (the plain
# reference path) the same seed gives the same text, greedy and with
# top-k/top-p; past the model's context window the cached path keeps
# going; bad sampling flags exit 2.   usage: sample.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2
make_corpus
"$GPTRAIN" train --data "$tmp/data" --model d2 --max-seq 48 --batch 4 --seq 48 --steps 40 \
    --val-every 0 --run-dir "$tmp/r" --quiet || fail "training"
M=$tmp/r/model.h5
for opts in "--temperature 0" "--top-k 20 --top-p 0.9 --seed 5" "--top-p 0.5 --seed 9"; do
    "$GPTRAIN" sample --ckpt "$M" --prompt "The computer" --max-tokens 30 $opts >"$tmp/kv" ||
        fail "sample $opts"
    "$GPTRAIN" sample --ckpt "$M" --prompt "The computer" --max-tokens 30 $opts --no-kv-cache \
        >"$tmp/plain" || fail "sample --no-kv-cache $opts"
    cmp -s "$tmp/kv" "$tmp/plain" || fail "$opts: the KV cache changed the text"
    [ "$(wc -c <"$tmp/kv")" -gt 30 ] || fail "$opts: short output"
done
"$GPTRAIN" sample --ckpt "$M" --prompt "x" --max-tokens 30 --seed 1 >"$tmp/a"
"$GPTRAIN" sample --ckpt "$M" --prompt "x" --max-tokens 30 --seed 2 >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" && fail "two seeds gave the same text"
pass
# 150 tokens through a 48-token window: the cache restarts from its newest half.
"$GPTRAIN" sample --ckpt "$M" --max-tokens 150 --temperature 0 >"$tmp/long" ||
    fail "sampling past the window"
[ "$(wc -c <"$tmp/long")" -ge 150 ] || fail "past the window: $(wc -c <"$tmp/long") bytes"
pass
for bad in "--top-p 0" "--top-p 1.5" "--temperature -1" "--max-tokens 0"; do
    rc=0
    "$GPTRAIN" sample --ckpt "$M" $bad >/dev/null 2>"$tmp/err" || rc=$?
    [ $rc -eq 2 ] && grep -q "top-p" "$tmp/err" || fail "sample $bad: exit $rc"
done
pass
echo "sample: $checks checks passed"
