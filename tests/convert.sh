# convert.sh: gptrain export / import / train --init-from.
#  - A trained model exported to safetensors and to an llm.c file and
#    imported back is bitwise the same model.
#  - Read by the format's spec alone in Python, in Hugging Face's GPT-2
#    layout, the safetensors file gives gptrain's logits (skipped without
#    PyTorch and NumPy).
#  - A run started with --init-from the imported model has, before its
#    first step, the validation loss the original run ended with.
#  - Bad files and flags: one error line naming the file, exit 2.
#   usage: convert.sh GPTRAIN LOGITS_DUMP CKPT_COMPARE
. "$(dirname "$0")/lib.sh"
dump=$2 compare=$3
export OMP_NUM_THREADS=1
make_corpus
common="--data $tmp/data --seq 32 --batch 2 --total-batch 192 --val-every 4 --val-batches 2 --quiet"
"$GPTRAIN" train $common --model d2 --steps 4 --warmup 1 --run-dir "$tmp/a" || fail "training"
model=$tmp/a/model.h5
"$GPTRAIN" export "$model" --out "$tmp/hf" || fail "export safetensors"
"$GPTRAIN" export "$model" --format llmc --out "$tmp/gpt2_d2.bin" || fail "export llmc"
"$GPTRAIN" import "$tmp/hf/model.safetensors" --out "$tmp/from_hf.h5" >/dev/null ||
    fail "import safetensors"
"$GPTRAIN" import "$tmp/gpt2_d2.bin" --out "$tmp/from_llmc.h5" >/dev/null || fail "import llmc"
"$compare" "$model" "$tmp/from_hf.h5" 0 >/dev/null || fail "safetensors round trip differs"
"$compare" "$model" "$tmp/from_llmc.h5" 0 >/dev/null || fail "llm.c round trip differs"
pass

py=/usr/bin/python3
if $py -c 'import torch, numpy' 2>/dev/null; then
    ids="3 1 4 1 5 9 2 6 5 3 5"
    "$dump" "$model" "$tmp/logits.bin" $ids || fail "logits_dump"
    $py "$GPTRAIN_SRC/tests/safetensors_check.py" "$tmp/hf/model.safetensors" \
        "$tmp/hf/config.json" "$tmp/logits.bin" $ids || fail "safetensors logits differ"
    pass
else
    echo "convert: the Python check of the safetensors layout is skipped: $py lacks torch or numpy"
fi

"$GPTRAIN" train $common --init-from "$tmp/from_llmc.h5" --steps 1 --run-dir "$tmp/b" ||
    fail "train --init-from"
end=$(grep '"event":"val","step":4' "$tmp/a/metrics.jsonl" | grep -o '"val_loss":[0-9.]*')
start=$(grep '"event":"val","step":0' "$tmp/b/metrics.jsonl" | grep -o '"val_loss":[0-9.]*')
[ -n "$end" ] && [ "$end" = "$start" ] || fail "--init-from: val loss $start, want $end"
pass

expect_usage() { # expect_usage NEEDLE COMMAND ARGS...
    local needle=$1; shift
    "$GPTRAIN" "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "$*: exit $rc, want 2"
    head -1 "$tmp/err" | grep -qF -- "$needle" || fail "$*: $(head -1 "$tmp/err")"
}
printf 'garbage that is no model' >"$tmp/junk.bin"
expect_usage "$tmp/junk.bin: not a safetensors file" import "$tmp/junk.bin" --out "$tmp/x.h5"
head -c 5000 "$tmp/gpt2_d2.bin" >"$tmp/short.bin"
expect_usage "$tmp/short.bin: shorter than its header says" import "$tmp/short.bin" --out "$tmp/x.h5"
mkdir "$tmp/bare" && cp "$tmp/hf/model.safetensors" "$tmp/bare/"
expect_usage "number of heads is not in the tensors" import "$tmp/bare/model.safetensors" --out "$tmp/x.h5"
"$GPTRAIN" import "$tmp/bare/model.safetensors" --heads 2 --out "$tmp/x.h5" >/dev/null ||
    fail "import with --heads"
expect_usage "--format must be safetensors or llmc" export "$model" --format onnx --out "$tmp/y"
expect_usage "$tmp/junk.bin: not an HDF5 file" train --data "$tmp/data" --init-from "$tmp/junk.bin" \
    --run-dir "$tmp/c"
pass
echo "convert: $checks passed, 0 failed"
