# eval.sh: `gptrain eval` on a tiny trained model: the loss is finite and
# perplexity = exp(loss); the default --seq is the one the model was trained
# at; with matching windows the loss equals the final val loss that training
# logged (1 rank, and 2 ranks accumulating 2 micro-batches) within 1e-5; a
# model file without training state (export + import) defaults to the
# model's max seq and scores as its checkpoint; the loss does not depend on
# --batch, and 1, 2 and 3 ranks under real mpirun agree within 1e-6, with a
# short last batch and a last round that leaves ranks idle; --max-batches
# counts global windows; progress goes to stderr unless --quiet. A missing
# file, split or data directory, --seq above the model's, a tokenizer or
# shard tokens beyond the model's vocabulary and bad flags exit 2 with one
# line naming the value, on one rank and under mpirun (a bad shard met by
# one rank alone included).   usage: eval.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
D=$tmp/data
train="--data $D --model d2 --batch 4 --seq 32 --steps 24 --warmup 4 --val-every 8 --val-batches 2 --quiet"
"$GPTRAIN" train $train --run-dir "$tmp/a" || fail "training run a"
# 2 ranks x 2 micro-batches of 4: validation reads 2 x 2 x 2 x 4 = 32 windows.
timeout 120 "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $train \
    --total-batch 512 --run-dir "$tmp/b" || fail "training run b (2 ranks)"

mpi() { # mpi P ARGS...: gptrain eval on P ranks, bounded in time so a hang fails
    local p=$1; shift
    timeout 120 "$MPIEXEC" -np "$p" --oversubscribe --bind-to none "$GPTRAIN" eval "$@"
}
field() { grep -o "\"$1\":[^,}]*" <<< "$2" | cut -d: -f2; }
final_val() { grep '"event":"val"' "$1" | tail -1 | sed 's/.*"val_loss"://; s/}//'; }
close() { # close A B TOL: |A - B| <= TOL * |B|
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d;
        m = b < 0 ? -b : b; exit !(a != "" && b != "" && d <= t * m) }'
}

out=$("$GPTRAIN" eval --ckpt "$tmp/a/model.h5" --data "$D" --json 2> "$tmp/progress") ||
    fail "eval --json"
loss=$(field loss "$out") ppl=$(field perplexity "$out")
awk -v l="$loss" 'BEGIN { exit !(l > 1 && l < 10) }' || fail "loss '$loss' not finite and sane: $out"
close "$ppl" "$(awk -v l="$loss" 'BEGIN { printf "%.10g", exp(l) }')" 1e-8 ||
    fail "perplexity $ppl is not exp($loss)"
[ "$(field seq "$out")" = 32 ] && [ "$(field ranks "$out")" = 1 ] &&
    [ "$(field split "$out")" = '"val"' ] || fail "seq, ranks or split: $out"
tokens=$(field tokens "$out")
[ $((tokens % 32)) -eq 0 ] && [ "$tokens" -gt 10000 ] || fail "tokens $tokens"
grep -q "^eval: [0-9]*/[0-9]* batches | [0-9]* tok/s" "$tmp/progress" ||
    fail "no progress lines: $(cat "$tmp/progress")"
pass

text=$("$GPTRAIN" eval --ckpt "$tmp/a/model.h5" --data "$D" --quiet 2> "$tmp/quiet") || fail "eval"
[ ! -s "$tmp/quiet" ] || fail "--quiet still printed: $(cat "$tmp/quiet")"
grep -qx "eval $tmp/a/model.h5 on $D val at seq 32: $tokens tokens, loss [0-9.]*, perplexity [0-9.]*" \
    <<< "$text" || fail "result line: $text"
pass

# A model file without training state (export, then import) defaults to
# the model's max seq, and scores as the checkpoint it came from.
"$GPTRAIN" export "$tmp/a/model.h5" --out "$tmp/hf" >/dev/null &&
    "$GPTRAIN" import "$tmp/hf/model.safetensors" --out "$tmp/imp.h5" >/dev/null ||
    fail "export and import"
got=$("$GPTRAIN" eval --ckpt "$tmp/imp.h5" --data "$D" --batch 1 --max-batches 1 --json --quiet) ||
    fail "eval imported"
[ "$(field seq "$got")" = 1024 ] && [ "$(field tokens "$got")" = 1024 ] ||
    fail "imported model's default seq: $got"
got=$("$GPTRAIN" eval --ckpt "$tmp/imp.h5" --data "$D" --seq 32 --json --quiet) ||
    fail "eval imported --seq 32"
close "$(field loss "$got")" "$loss" 1e-6 || fail "imported model: $got, checkpoint $loss"
pass

# Training's validation: the first 2 batches of 4 windows (run a), 32
# windows (run b), both read in order.
for c in "a 4 2" "a 8 1" "b 4 8" "b 16 2"; do
    set -- $c
    got=$("$GPTRAIN" eval --ckpt "$tmp/$1/model.h5" --data "$D" --batch $2 --max-batches $3 \
          --json --quiet) || fail "eval run $1 --batch $2"
    want=$(final_val "$tmp/$1/metrics.jsonl")
    close "$(field loss "$got")" "$want" 1e-5 ||
        fail "run $1, --batch $2 --max-batches $3: eval $(field loss "$got"), train val $want"
    [ "$(field tokens "$got")" -eq $(($2 * $3 * 32)) ] || fail "tokens: $got"
    pass
done

# Any --batch and any number of ranks: the same windows, the same loss.
# --batch 5 leaves a last batch of 1 window and rounds that idle some ranks.
for run in "1 8" "1 5" "2 5" "3 5" "3 8" "2 1000"; do
    set -- $run
    got=$(mpi $1 --ckpt "$tmp/a/model.h5" --data "$D" --batch $2 --json --quiet) ||
        fail "mpirun -np $1 eval --batch $2"
    close "$(field loss "$got")" "$loss" 1e-6 ||
        fail "$1 ranks, --batch $2: loss $(field loss "$got"), 1 process $loss"
    [ "$(field tokens "$got")" = "$tokens" ] && [ "$(field ranks "$got")" = $1 ] ||
        fail "$1 ranks: $got"
    pass
done
got=$(mpi 3 --ckpt "$tmp/b/model.h5" --data "$D" --batch 4 --max-batches 8 --json --quiet) ||
    fail "mpirun -np 3 --max-batches 8"
close "$(field loss "$got")" "$(final_val "$tmp/b/metrics.jsonl")" 1e-5 || fail "3 ranks, 8 batches: $got"
pass

# Errors: exit 2, one error line naming the value, and the usage line.
refuse() { # refuse PATTERN CMD...: exit 2 with one error line matching PATTERN
    local pat=$1; shift
    "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "$* exited $rc, want 2: $(cat "$tmp/err")"
    [ "$(grep -c "^gptrain eval: error:" "$tmp/err")" -eq 1 ] && grep -q -e "$pat" "$tmp/err" ||
        fail "$*: want one error line naming '$pat': $(cat "$tmp/err")"
    grep -q "^usage: gptrain eval" "$tmp/err" || fail "$*: no usage line: $(cat "$tmp/err")"
    [ ! -s "$tmp/out" ] || fail "$*: printed a result: $(cat "$tmp/out")"
}
ok="--ckpt $tmp/a/model.h5 --data $D"
for np in 1 3; do
    run=("$GPTRAIN" eval)
    [ $np -eq 1 ] || run=(timeout 120 "$MPIEXEC" -np $np --oversubscribe --bind-to none "$GPTRAIN" eval)
    refuse "$tmp/nosuch.h5" "${run[@]}" --ckpt "$tmp/nosuch.h5" --data "$D"
    refuse "--seq 2048 exceeds the max sequence length 1024 of $tmp/a/model.h5" \
        "${run[@]}" $ok --seq 2048
    pass
done
refuse "no nosuch_\*.bin shards" "$GPTRAIN" eval $ok --split nosuch
refuse "$tmp/nodata" "$GPTRAIN" eval --ckpt "$tmp/a/model.h5" --data "$tmp/nodata"
refuse "$D/tokenizer.bpe: not an HDF5" "$GPTRAIN" eval --ckpt "$D/tokenizer.bpe" --data "$D"
refuse "--ckpt is required" "$GPTRAIN" eval --data "$D"
refuse "--batch must be >= 1" "$GPTRAIN" eval $ok --batch 0
refuse "--batch must be >= 1" "$GPTRAIN" eval $ok --max-batches -1
refuse "unknown flag '--nope'" "$GPTRAIN" eval $ok --nope
refuse "--device 'tpu' is not cpu or cuda" "$GPTRAIN" eval $ok --device tpu
pass

# Data of a 1024-token vocabulary against the model's 512: its tokenizer is
# refused; without one, the first token beyond the vocabulary is, naming its
# shard. Behind 511 good windows (73 batches of 7), a shard of 7 windows of
# those tokens (the first 225) is batch 73, rank 1's of 2: one rank fails
# alone, and every rank stops.
"$GPTRAIN" prep --quiet --vocab-size 1024 --out "$tmp/big" "$tmp/corpus" >/dev/null || fail "prep 1024"
refuse "$tmp/big/tokenizer.bpe has 1024 tokens but the vocabulary of $tmp/a/model.h5 is 512" \
    "$GPTRAIN" eval --ckpt "$tmp/a/model.h5" --data "$tmp/big"
mkdir "$tmp/mixed"
cp "$D/val_000000.bin" "$tmp/mixed/val_000000.bin"
{ head -c 8 "$tmp/big/val_000000.bin"; printf '\xe1\x00\x00\x00'
  tail -c +13 "$tmp/big/val_000000.bin" | head -c $((1012 + 225 * 2)); } > "$tmp/mixed/val_000001.bin"
refuse "$tmp/mixed/val_000001.bin: token [0-9]* at byte offset [0-9]* is outside the vocabulary (512)" \
    "$GPTRAIN" eval --ckpt "$tmp/a/model.h5" --data "$tmp/mixed" --batch 7
refuse "rank 1: $tmp/mixed/val_000001.bin: token" \
    mpi 2 --ckpt "$tmp/a/model.h5" --data "$tmp/mixed" --batch 7
pass
echo "eval: $checks passed, 0 failed"
