# asan_train.sh: builds gptrain with -fsanitize=address,undefined in its own
# build directory and runs prep, a short training run (from a config file,
# with a skipped update), samples and a plot under the sanitizers, also on 3 ranks under mpirun (ZeRO-3, and ZeRO-1 with
# buckets); any report fails the test.   usage: asan_train.sh GPTRAIN BUILD_DIR
. "$(dirname "$0")/lib.sh"
build=$2
cmake -S "$GPTRAIN_SRC" -B "$build" -DGPTRAIN_SANITIZE=ON -DGPTRAIN_TESTS=OFF -DGPTRAIN_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "configure"; }
cmake --build "$build" --target gptrain -j2 >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; fail "build"; }
GPTRAIN=$build/runtime/gptrain
# MPI and its helpers keep allocations alive until exit by design; only
# leaks in our own code should fail the test.
# The slow unwinder records whole stacks, so the suppressions can match
# frames deep inside MPI (the fast one stops at uninstrumented code).
export LSAN_OPTIONS=suppressions=$GPTRAIN_SRC/tests/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=2
make_corpus
run() { "$@" 2>"$tmp/err" >"$tmp/out"; local rc=$?; cat "$tmp/err" >&2
    grep -qE 'Sanitizer|runtime error' "$tmp/err" && fail "sanitizer report from: $*"
    [ $rc -eq 0 ] || fail "exit $rc from: $*"; pass; }
# Strings from a config file, and a skipped update (the numerics guard).
printf 'data = "%s"\nmodel = "d2"\nlr-schedule = "wsd"\n' "$tmp/data" >"$tmp/run.toml"
GPTRAIN_FAULT_LOSS=3:nan run "$GPTRAIN" train --config "$tmp/run.toml" --run-dir "$tmp/run" \
    --batch 2 --seq 16 --steps 4 --total-batch 64 --val-every 2 --val-batches 1 --sample-every 2 \
    --sample-tokens 8 --quiet
# Several ranks: ZeRO-3's slots, gathers and prefetch, and stage 1's buckets.
for zero in "3" "1 --bucket-mb 0.05"; do
    run timeout 300 "$MPIEXEC" -np 3 --oversubscribe --bind-to none "$GPTRAIN" train \
        --data "$tmp/data" --run-dir "$tmp/run-z${zero%% *}" --model d2 --batch 2 --seq 16 --steps 3 \
        --total-batch 192 --val-every 2 --val-batches 1 --sample-every 2 --sample-tokens 4 \
        --quiet --zero $zero
done
run "$GPTRAIN" sample --ckpt "$tmp/run/model.h5" --max-tokens 8 --top-k 5 --top-p 0.9
run "$GPTRAIN" sample --ckpt "$tmp/run/model.h5" --max-tokens 8 --no-kv-cache
run "$GPTRAIN" plot "$tmp/run" --out "$tmp/plot"
"$GPTRAIN" train --data "$tmp/data" --vocab 100 --steps 1 --quiet 2>"$tmp/err"
[ $? -eq 2 ] && ! grep -qE 'Sanitizer|runtime error' "$tmp/err" || fail "bad input under sanitizers"
pass
echo "asan_train: $checks passed, 0 failed"
