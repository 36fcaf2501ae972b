# resume.sh: training checkpoints under real mpirun.
#  - Same world size: N steps straight (saving at step K) against a run that
#    resumes from that step-K checkpoint: every later loss is bitwise equal,
#    and so is the final model (1 rank at ZeRO 0; 3 ranks at ZeRO 3).
#  - Another world size and stage: a checkpoint written by 4 ranks at ZeRO 1
#    resumed by 2 ranks at ZeRO 3 and by 1 rank at ZeRO 0: losses within
#    1e-5 relative of the uninterrupted run.
#  - --async-save (3 ranks at ZeRO 3): the same files as saving in the
#    foreground, content for content (h5diff).
#  - --keep-last / --keep-every, `latest`, model.h5, gptrain inspect.
#  - Resuming with another --seq, past --steps, or from a damaged file: one
#    error line naming the file.
#  - kill -9 of a rank at random moments while it saves every step, 20
#    times: `latest` always names a complete checkpoint, which resumes.
#  - A save whose file name has a semaphore left taken by a rank killed in
#    Open MPI's MPI_File_open does not hang on it.
#   usage: resume.sh GPTRAIN CKPT_COMPARE
. "$(dirname "$0")/lib.sh"
compare=$2
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
T=32 N=8 K=4
common="--data $tmp/data --model d2 --seq $T --steps $N --warmup 2 --val-every 0 --quiet"
run_p() { # run_p P RUN_DIR FLAGS...: P ranks, bounded in time so a hang fails
    local p=$1 dir=$2; shift 2
    timeout 120 "$MPIEXEC" -np "$p" --oversubscribe --bind-to none "$GPTRAIN" train $common \
        --run-dir "$dir" "$@" </dev/null || fail "mpirun -np $p train $* (exit $?)"
}
after_k() { losses "$1" | awk -F'[:,]' -v k=$K '$2 > k'; }
# A run directory holding only the step-K checkpoint of $1, as latest.
from_k() {
    mkdir -p "$2" && cp "$1/ckpt_0000000$K.h5" "$2/" && echo "ckpt_0000000$K.h5" >"$2/latest"
}
close_losses() { # step losses after K of $1 and $2 within 1e-5 relative
    paste <(after_k "$1" | cut -d: -f3) <(after_k "$2" | cut -d: -f3) |
    awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d;
         if (d > 1e-5 * ($2 < 0 ? -$2 : $2)) bad = 1 } END { exit bad || NR == 0 }'
}

# Same world size: bitwise.
for cfg in "1 0 --batch 4" "3 3 --batch 2"; do
    set -- $cfg
    P=$1 Z=$2; shift 2
    run_p $P "$tmp/full$P" --zero $Z --total-batch $((6 * 2 * T)) --save-every $K "$@"
    from_k "$tmp/full$P" "$tmp/res$P"
    run_p $P "$tmp/res$P" --zero $Z --total-batch $((6 * 2 * T)) --resume auto "$@"
    [ "$(after_k "$tmp/full$P/metrics.jsonl" | wc -l)" = $((N - K)) ] || fail "P=$P: no losses"
    cmp -s <(after_k "$tmp/full$P/metrics.jsonl") <(after_k "$tmp/res$P/metrics.jsonl") ||
        fail "P=$P zero=$Z: resumed losses differ from the uninterrupted run"
    grep -q '"event":"resume","step":4' "$tmp/res$P/metrics.jsonl" || fail "no resume event"
    "$compare" "$tmp/full$P/model.h5" "$tmp/res$P/model.h5" 0 >/dev/null ||
        fail "P=$P zero=$Z: the resumed final model differs"
    pass
done

# Another world size and stage: the same global batch of 384 tokens.
run_p 4 "$tmp/w4" --zero 1 --batch 1 --total-batch 384 --save-every $K
for cfg in "2 3 --batch 2" "1 0 --batch 4"; do
    set -- $cfg
    P=$1 Z=$2; shift 2
    from_k "$tmp/w4" "$tmp/x$P"
    run_p $P "$tmp/x$P" --zero $Z --total-batch 384 --resume auto "$@"
    close_losses "$tmp/w4/metrics.jsonl" "$tmp/x$P/metrics.jsonl" ||
        fail "4 ranks at ZeRO 1 resumed by $P at ZeRO $Z: losses differ"
    "$compare" "$tmp/w4/model.h5" "$tmp/x$P/model.h5" 1e-5 >/dev/null ||
        fail "4 ranks at ZeRO 1 resumed by $P at ZeRO $Z: final models differ"
    pass
done

# Background saves write what foreground saves write.
for mode in fg bg; do
    flag=; [ $mode = bg ] && flag=--async-save
    run_p 3 "$tmp/$mode" --zero 3 --batch 2 --total-batch 384 --save-every 2 --keep-last 0 $flag
done
# The /train attribute config records --async-save itself, so /train is
# compared attribute by attribute without it.
train_attrs() {
    for a in step tokens adam_step epoch cursor seed total_batch seq shuffle epoch_samples \
             world zero recent_losses; do h5dump -a "/train/$a" "$1" | tail -n +2; done
}
for s in 2 4 6 8; do
    a=$tmp/fg/ckpt_0000000$s.h5 b=$tmp/bg/ckpt_0000000$s.h5
    h5diff -q --exclude-path /train "$a" "$b" && cmp -s <(train_attrs "$a") <(train_attrs "$b") ||
        fail "--async-save: checkpoint $s differs from the foreground save"
done
[ "$(grep -c '"event":"save"' "$tmp/bg/metrics.jsonl")" = 4 ] || fail "--async-save: save events"
pass

# Keeping: the newest 2 and every 3rd of saves at 1..8; latest is the last.
run_p 2 "$tmp/keep" --batch 2 --save-every 1 --keep-last 2 --keep-every 3
[ "$(cd "$tmp/keep" && echo ckpt_*)" = "ckpt_00000003.h5 ckpt_00000006.h5 ckpt_00000007.h5 ckpt_00000008.h5" ] ||
    fail "kept: $(cd "$tmp/keep" && echo ckpt_*)"
[ "$(cat "$tmp/keep/latest")" = ckpt_00000008.h5 ] || fail "latest: $(cat "$tmp/keep/latest")"
[ "$tmp/keep/model.h5" -ef "$tmp/keep/ckpt_00000008.h5" ] || fail "model.h5 is not the final"
"$GPTRAIN" inspect "$tmp/keep/ckpt_00000007.h5" >"$tmp/inspect" || fail "inspect failed"
grep -q "written by  2 ranks at ZeRO stage 0" "$tmp/inspect" || fail "inspect: $(cat "$tmp/inspect")"
grep -q "^step        7$" "$tmp/inspect" || fail "inspect: no step"
pass

# Refusals: one line naming the file and what is wrong, exit 2.
expect_refusal() { # expect_refusal NEEDLE FLAGS...
    local needle=$1; shift
    "$GPTRAIN" train $common --batch 4 --total-batch $((6 * 2 * T)) --run-dir "$tmp/ref" "$@" \
        >/dev/null 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "$*: exit $rc, want 2"
    head -1 "$tmp/err" | grep -qF -- "$needle" || fail "$*: $(head -1 "$tmp/err")"
}
ck=$tmp/full1/ckpt_0000000$K.h5
expect_refusal "$ck: written with --seq 32, this run has 16" --resume "$ck" --seq 16
expect_refusal "$ck: already at step 4 of --steps 4" --resume "$ck" --steps 4
head -c 100000 "$ck" >"$tmp/short.h5"
expect_refusal "$tmp/short.h5: not an HDF5 file (or a truncated one)" --resume "$tmp/short.h5"
cp "$ck" "$tmp/flip.h5"
size=$(stat -c %s "$ck")
printf '\x01' | dd of="$tmp/flip.h5" bs=1 seek=$((size - 5000)) conv=notrunc 2>/dev/null
expect_refusal "$tmp/flip.h5: checksum mismatch" --resume "$tmp/flip.h5"
expect_refusal "$tmp/none: cannot read the checkpoint" --resume "$tmp/none"
pass

# A rank killed inside MPI_File_open can leave Open MPI's node-wide
# semaphore for that file name taken (/dev/shm/sem.OMPIO_<name>, its "sm"
# shared file pointer); the next save of that name must not wait on it.
sem=OMPIO_ckpt_00000002.h5.tmp
semaphore() { # semaphore take|drop: a taken one, as a killed rank leaves it
    python3 - "$1" "$sem" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
name = sys.argv[2].encode()
if sys.argv[1] == "take":
    if not libc.sem_open(name, os.O_CREAT, 0o644, 0):
        sys.exit("sem_open: " + os.strerror(ctypes.get_errno()))
else:
    libc.sem_unlink(name)
EOF
}
semaphore take || fail "cannot make the semaphore $sem"
timeout 60 "$MPIEXEC" -np 1 --bind-to none "$GPTRAIN" train $common --steps 2 --save-every 1 \
    --run-dir "$tmp/sem" </dev/null >"$tmp/sem.log" 2>&1
rc=$?
semaphore drop
[ $rc -eq 0 ] || fail "saving beside a taken $sem: exit $rc (124: it hung)"
pass

# kill -9 while saving every step: latest always names a whole checkpoint.
for i in $(seq 20); do
    dir=$tmp/kill
    "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $common --batch 2 \
        --steps 100000 --save-every 1 --keep-last 2 --run-dir "$dir" --resume auto \
        </dev/null >/dev/null 2>&1 &
    job=$!
    sleep "$(awk -v s=$RANDOM 'BEGIN { print 0.8 + (s % 1000) / 1000 }')"
    victim=$(pgrep -f -- "--run-dir $dir " | while read -r p; do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = gptrain ] && echo $p; done | shuf -n 1)
    [ -n "$victim" ] && kill -9 $victim
    timeout 30 tail --pid=$job -f /dev/null || fail "kill $i: the job did not end"
    wait $job 2>/dev/null
    [ -f "$dir/latest" ] || continue
    "$GPTRAIN" inspect "$dir/$(cat "$dir/latest")" >/dev/null 2>"$tmp/err" ||
        fail "kill $i: latest names a bad checkpoint: $(head -1 "$tmp/err")"
    saved=$((${saved:-0} + 1))
done
[ "${saved:-0}" -ge 15 ] || fail "only ${saved:-0} of 20 killed runs had saved a checkpoint"
echo "kill -9 during saves: 20 runs killed, latest checked after $saved; now at $(cat "$tmp/kill/latest")"
step=$(cat "$tmp/kill/latest" | sed 's/ckpt_0*\([0-9]*\).h5/\1/')
run_p 1 "$tmp/kill" --batch 4 --total-batch $((2 * 2 * T)) --steps $((step + 1)) --resume auto
pass
echo "resume: $checks passed, 0 failed"
