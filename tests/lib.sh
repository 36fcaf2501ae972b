# lib.sh: helpers shared by the shell tests (sourced, not run).
# A test calls `fail MSG` to stop with a message; `tmp` is removed on exit.
set -u
GPTRAIN=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
checks=0

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { checks=$((checks + 1)); }

# A small English corpus for training tests: a few fortunes files (from the
# Debian package the bootstrap installs), concatenated. GPTRAIN_FORTUNES names
# another copy of that folder (bench/gpu/env.sh sets it to the carried one on
# the GPU machine, which has no fortunes package).
make_corpus() {
    local f=${GPTRAIN_FORTUNES:-/usr/share/games/fortunes}
    [ -r "$f/computers" ] || fail "the fortunes corpus is missing from $f; run launch/bootstrap.sh"
    mkdir -p "$tmp/corpus"
    cp "$f/computers" "$f/science" "$tmp/corpus/"
    "$GPTRAIN" prep --quiet --vocab-size 512 --out "$tmp/data" "$tmp/corpus" >/dev/null ||
        fail "prep failed"
}

# Prints the "loss" values of the step lines of a metrics.jsonl.
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }

# end_job MPIRUN_PID [PID...]: kills mpirun (if the pid is not empty) and the
# processes, continuing a stopped one first so that it can die at once.
end_job() {
    local p
    [ -n "$1" ] && kill -9 $1 2>/dev/null
    shift
    for p in "$@"; do
        kill -CONT $p 2>/dev/null
        kill -9 $p 2>/dev/null
    done
}

# GPU-run checks shared by cuda_train.sh and emu/emu_train.sh.
# eval_on_gpu MODEL DATA: `gptrain eval` of MODEL on the GPU (bf16) scores
# the same tokens as on the CPU (fp32), with a loss within 1%.
eval_on_gpu() {
    local ecpu egpu
    ev() { "$GPTRAIN" eval --ckpt "$1" --data "$2" --json --quiet "${@:3}"; }
    key() { echo "$2" | sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
    ecpu=$(ev "$1" "$2") || fail "eval on the CPU"
    egpu=$(ev "$1" "$2" --device cuda --batch 3) || fail "eval --device cuda: $egpu"
    [ "$(key tokens "$ecpu")" = "$(key tokens "$egpu")" ] || fail "eval tokens: $ecpu vs $egpu"
    awk -v a="$(key loss "$ecpu")" -v b="$(key loss "$egpu")" \
        'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 0.01 * a) }' ||
        fail "eval --device cuda: $egpu; on the CPU: $ecpu"
    echo "eval loss $(key loss "$ecpu") on the CPU, $(key loss "$egpu") on the GPU"
}

# resume_across "FLAGS" HALF STEPS REF_RUN: HALF steps on one device, a
# checkpoint, then on to STEPS on the other (GPU to CPU and CPU to GPU);
# each ends within 5% of REF_RUN's last loss.
resume_across() {
    local flags=$1 half=$2 steps=$3 ref r last pair
    ref=$(losses "$4/metrics.jsonl" | tail -1 | sed 's/.*"loss"://')
    for pair in "cuda cpu" "cpu cuda"; do
        set -- $pair
        r=$tmp/x-$1-$2
        "$GPTRAIN" train $flags --steps "$half" --run-dir "$r" --device "$1" || fail "$1 half"
        "$GPTRAIN" train $flags --steps "$steps" --run-dir "$r" --device "$2" --resume auto ||
            fail "$2 resume of a $1 checkpoint"
        last=$(losses "$r/metrics.jsonl" | tail -1 | sed 's/.*"loss"://')
        awk -v a="$last" -v b="$ref" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.05 * b) }' ||
            fail "$1 -> $2 resume ended at loss $last, the CPU run at $ref"
        pass
    done
}
