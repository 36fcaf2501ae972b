# cli_errors.sh: bad input to every subcommand ends in a one-line error that
# names the value or file, then a usage line, and exit code 2; never a crash.
# usage: cli_errors.sh GPTRAIN
. "$(dirname "$0")/lib.sh"

# expect_usage NEEDLE ARGS...: runs gptrain ARGS, wants exit 2, the first
# stderr line naming NEEDLE, a usage line, and no crash or sanitizer report.
expect_usage() {
    local needle=$1; shift
    "$GPTRAIN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "gptrain $*: exit $rc, want 2 ($(head -1 "$tmp/err"))"
    head -1 "$tmp/err" | grep -qF -- "$needle" ||
        fail "gptrain $*: first error line lacks '$needle': $(head -1 "$tmp/err")"
    grep -q '^usage: ' "$tmp/err" || fail "gptrain $*: no usage line"
    [ "$(grep -vc '^usage: ' "$tmp/err")" -le 1 ] || fail "gptrain $*: more than one error line"
    pass
}

make_corpus
D=$tmp/data
expect_usage "unknown command 'fly'" fly
expect_usage "unknown flag '--bogus'" train --data "$D" --bogus 1
expect_usage "invalid value 'abc' for --steps" train --data "$D" --steps abc
expect_usage "heads 5 do not divide channels 96" train --data "$D" --heads 5 --channels 96
expect_usage "--seq 2048 exceeds the model's max sequence length 1024" train --data "$D" --seq 2048
expect_usage "--total-batch 1000" train --data "$D" --batch 4 --seq 64 --total-batch 1000
expect_usage "unknown model preset 'd99'" train --data "$D" --model d99
expect_usage "--zero 4 is not a ZeRO stage" train --data "$D" --zero 4
expect_usage "unknown --lr-schedule 'linear'" train --data "$D" --lr-schedule linear
expect_usage "$tmp/nowhere" train --data "$tmp/nowhere"

# Malformed shards: garbage, truncated, tokens outside the vocabulary.
mkdir -p "$tmp/bad1" "$tmp/bad2"
head -c 4096 /dev/urandom > "$tmp/bad1/train_000000.bin"
expect_usage "$tmp/bad1/train_000000.bin" train --data "$tmp/bad1"
head -c 3000 "$D/train_000000.bin" > "$tmp/bad2/train_000000.bin"
expect_usage "$tmp/bad2/train_000000.bin" train --data "$tmp/bad2"
expect_usage "--vocab 100 is smaller than the data's tokenizer" train --data "$D" --vocab 100
# Without the tokenizer, shards whose tokens exceed --vocab fail on read.
mkdir -p "$tmp/bare" && cp "$D"/*.bin "$tmp/bare/"
expect_usage "is outside the vocabulary (100)" train --data "$tmp/bare" --vocab 100 --steps 1
expect_usage "--vocab-size must be >= 257" prep --vocab-size 100 --out "$tmp/o" "$tmp/corpus"
expect_usage "no file matches" prep --out "$tmp/o" "$tmp/corpus/*.nothing"
mkdir -p "$tmp/bindir" && printf 'a\0b' > "$tmp/bindir/x.dat"
expect_usage "$tmp/bindir: no readable text" prep --quiet --out "$tmp/o" "$tmp/bindir"

expect_usage "--ckpt is required" sample
expect_usage "$tmp/none.h5" sample --ckpt "$tmp/none.h5"
expect_usage "$D/train_000000.bin: not an HDF5 file" sample --ckpt "$D/train_000000.bin"
expect_usage "$tmp/missing" prep --out "$tmp/o" "$tmp/missing"
expect_usage "no input files" prep --out "$tmp/o"
expect_usage "invalid value '-' for --val-fraction" prep --val-fraction - "$tmp/corpus"

# --help of every command lists its flags with defaults, exit 0.
for cmd in train prep sample; do
    "$GPTRAIN" $cmd --help > "$tmp/help" || fail "$cmd --help exit code"
    grep -q '^  --.*\[.*\]$' "$tmp/help" || fail "$cmd --help lists no defaults"
    pass
done
"$GPTRAIN" --help | grep -q 'train' || fail "gptrain --help"
pass
echo "cli_errors: $checks passed, 0 failed"
