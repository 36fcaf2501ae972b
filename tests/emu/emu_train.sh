# emu_train.sh: `gptrain train --device cuda` and `gptrain eval --device
# cuda` end to end on the CPU emulation of CUDA (gptrain_emu, tests/emu):
# the GPU step's host code (train_gpu.c, eval_gpu.c, the CUDA model's
# buffers, checkpoints pulled from and pushed to the device) around every
# kernel, with device memory that starts as NaN, and NCCL for one rank
# (emu_nccl.cc). What cuda_train.sh checks on a GPU, shortened (the
# emulation takes about a second a step): the GPU curve follows the CPU's
# within 3% over 20 steps and falls; a repeat gives the same bits; eval on
# the GPU is within 1% of the CPU's; a GPU checkpoint resumes on the CPU and
# a CPU one on the GPU; --recompute with stochastic rounding runs; the NCCL
# path (forced at ZeRO 0-1 with small buckets, always at 2-3) gives the
# plain run's bits at every stage; two micro-steps at ZeRO 2-3 stay on the
# curve; ZeRO 3 validates, samples, saves and resumes. Not here: cuDNN's
# attention, several ranks, races and streams (see docs/cuda.md).
# usage: emu_train.sh GPTRAIN_EMU
. "$(dirname "$0")/../lib.sh"
export OMP_NUM_THREADS=2 ASAN_OPTIONS=detect_leaks=0
make_corpus
D=$tmp/data
common="--data $D --model d2 --batch 4 --seq 64 --warmup 5 --val-every 0 --quiet --lr 3e-3"
n=20
tail_loss() { losses "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss"://'; }

"$GPTRAIN" train $common --steps $n --run-dir "$tmp/cpu" || fail "CPU run"
"$GPTRAIN" train $common --steps $n --run-dir "$tmp/gpu" --device cuda || fail "GPU run"
paste <(losses "$tmp/cpu/metrics.jsonl" | sed 's/.*"loss"://') \
      <(losses "$tmp/gpu/metrics.jsonl" | sed 's/.*"loss"://') >"$tmp/curves"
[ "$(wc -l <"$tmp/curves")" -eq $n ] || fail "want $n steps of each"
awk '{ d = $2 - $1; if (d < 0) d = -d; if (d > worst) worst = d; if (d > 0.03 * $1) bad++ }
     END { printf "emu_train: worst |gpu - cpu| loss difference %.4f over %d steps\n", worst, NR;
           exit bad > 0 }' "$tmp/curves" || fail "GPU loss left the CPU curve by more than 3%"
awk 'NR == 1 { a = $2 } END { exit !($2 < a - 0.5) }' "$tmp/curves" || fail "GPU loss did not fall by 0.5"
pass

eval_on_gpu "$tmp/gpu/model.h5" "$D"
pass
half=$((n / 2))
resume_across "$common" $half $n "$tmp/cpu"
"$GPTRAIN" train $common --steps 5 --run-dir "$tmp/rec" --device cuda --recompute \
    --stochastic-rounding || fail "--recompute --stochastic-rounding"
pass

# Shorter runs from here: a plain one, its repeat, and the NCCL paths.
m=$half
"$GPTRAIN" train $common --steps $m --run-dir "$tmp/p1" --device cuda || fail "GPU run, $m steps"
"$GPTRAIN" train $common --steps $m --run-dir "$tmp/p2" --device cuda || fail "GPU run 2"
cmp -s <(losses "$tmp/p1/metrics.jsonl") <(losses "$tmp/p2/metrics.jsonl") ||
    fail "two GPU runs differ"
pass
for z in 0 1 2 3; do
    GPTRAIN_FORCE_NCCL=1 "$GPTRAIN" train $common --steps $m --run-dir "$tmp/nccl$z" \
        --device cuda --zero $z --bucket-mb 0.0625 || fail "forced NCCL, --zero $z"
    cmp -s <(losses "$tmp/p1/metrics.jsonl") <(losses "$tmp/nccl$z/metrics.jsonl") ||
        fail "forced NCCL at --zero $z changed the losses"
    pass
done
# Two micro-steps of 2 sequences at ZeRO 2-3: each reduced and added into
# the shard on its own (other bf16 roundings), within 3% of the plain run.
for z in 2 3; do
    "$GPTRAIN" train $common --batch 2 --total-batch 256 --steps $m --device cuda \
        --zero $z --run-dir "$tmp/acc$z" || fail "two micro-steps at --zero $z"
    paste <(losses "$tmp/p1/metrics.jsonl" | sed 's/.*"loss"://') \
          <(losses "$tmp/acc$z/metrics.jsonl" | sed 's/.*"loss"://') |
        awk -v m=$m '{ d = $2 - $1; if (d < 0) d = -d; if (d > 0.03 * $1) bad++ }
                     END { exit bad > 0 || NR != m }' ||
        fail "two micro-steps at --zero $z left the one-step curve by more than 3%"
    pass
done
z3="$common --zero 3 --device cuda --val-every 5 --sample-every 5 --sample-tokens 8"
"$GPTRAIN" train $z3 --steps 6 --run-dir "$tmp/z3" >"$tmp/z3.out" || fail "--zero 3, 6 steps"
grep -q -- "--- sample ---" "$tmp/z3.out" || fail "no sample at --zero 3"
"$GPTRAIN" train $z3 --steps $m --run-dir "$tmp/z3" --resume auto || fail "--zero 3 resume"
last=$(tail_loss "$tmp/z3") ref=$(tail_loss "$tmp/p1")
awk -v a="$last" -v b="$ref" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.05 * b) }' ||
    fail "--zero 3 with a resume ended at loss $last, the plain GPU run at $ref"
pass
echo "emu_train: $checks checks passed"
