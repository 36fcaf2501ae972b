# preempt.sh: preemption under real mpirun. SIGUSR1 to mpirun (which
# forwards it to every rank), sent twice in a row so the second lands during
# the save: the job saves a checkpoint after the current step and exits 4;
# `latest` names it, it passes inspect, and running the same command with
# --resume auto finishes the run with the losses of a run never stopped,
# bit for bit. SIGTERM to a single process does the same.
#   usage: preempt.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
N=200
common="--data $tmp/data --model d2 --seq 32 --batch 2 --steps $N --warmup 5 --val-every 0 --quiet"
train2() { "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $common "$@"; }
train2 --run-dir "$tmp/ref" </dev/null || fail "the reference run failed"

# Waits until run dir $1 has logged $2 steps (the job is $3).
wait_steps() {
    local i
    for i in $(seq 300); do
        [ "$(losses "$1/metrics.jsonl" 2>/dev/null | wc -l)" -ge $2 ] && return 0
        kill -0 $3 2>/dev/null || fail "the job ended before the signal"
        sleep 0.05
    done
    fail "no steps logged"
}
# mpirun itself in the background (not a shell function), so $! is mpirun.
"$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train $common --run-dir "$tmp/run" \
    </dev/null 2>"$tmp/err" &
job=$!
wait_steps "$tmp/run" 10 $job
kill -USR1 $job
sleep 0.05
kill -USR1 $job 2>/dev/null
wait $job
rc=$?
[ $rc -eq 4 ] || fail "stopped job: exit $rc, want 4: $(grep gptrain "$tmp/err" | head -2)"
grep -q "stopped by signal 10 .* after step [0-9]*; saved a checkpoint" "$tmp/err" ||
    fail "no stop message: $(head -3 "$tmp/err")"
k=$(grep -o '"event":"stop","step":[0-9]*' "$tmp/run/metrics.jsonl" | grep -o '[0-9]*$')
[ -n "$k" ] && [ "$k" -lt $N ] || fail "no stop event"
[ "$(cat "$tmp/run/latest")" = "$(printf 'ckpt_%08d.h5' $k)" ] || fail "latest is not step $k"
"$GPTRAIN" inspect "$tmp/run/$(cat "$tmp/run/latest")" >/dev/null || fail "bad checkpoint"
pass
train2 --run-dir "$tmp/run" --resume auto </dev/null || fail "the resumed run failed"
after() { losses "$1" | awk -F'[:,]' -v k=$k '$2 > k'; }
[ "$(after "$tmp/ref/metrics.jsonl" | wc -l)" -eq $((N - k)) ] || fail "reference losses"
cmp -s <(after "$tmp/ref/metrics.jsonl") <(after "$tmp/run/metrics.jsonl") ||
    fail "the resumed losses differ from the run never stopped (stopped after step $k)"
echo "preempt: stopped after step $k by SIGUSR1 (twice), resumed to step $N bitwise"
pass

"$GPTRAIN" train $common --run-dir "$tmp/one" 2>"$tmp/err" &
job=$!
wait_steps "$tmp/one" 5 $job
kill -TERM $job
wait $job
rc=$?
[ $rc -eq 4 ] && [ -f "$tmp/one/latest" ] || fail "SIGTERM to one process: exit $rc"
pass
echo "preempt: $checks passed, 0 failed"
