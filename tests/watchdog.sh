# watchdog.sh: the collective watchdog under real mpirun. In a 3-rank run
# with --comm-timeout 3, rank 1 is killed (SIGKILL) or stopped (SIGSTOP)
# mid-training; the job must exit non-zero within the timeout + 10 s with a
# message saying why, and leave no gptrain process behind. A stopped rank is
# the watchdog's own case (nothing else notices it); a killed one is seen by
# mpirun or by the watchdog, whichever is first. The stopped case runs again
# at ZeRO stage 3, where ranks also wait in per-unit gathers and
# reduce-scatters started during forward and backward.
#   usage: watchdog.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
TIMEOUT=3
mpirun_pid=

# The gptrain processes of this test (their command line names a run dir
# under this test's unique $tmp), one pid a line.
test_pids() {
    local p
    for p in $(pgrep -f -- "train .*--run-dir $tmp/"); do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = gptrain ] && echo $p
    done
}

# Leaves nothing running, whatever happened.
cleanup() {
    end_job "$mpirun_pid" $(test_pids)
    rm -rf "$tmp"
}
trap cleanup EXIT

# The pid of world rank $2 of run $1.
rank_pid() {
    local p
    for p in $(test_pids); do
        tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" &&
            tr '\0' ' ' </proc/$p/cmdline | grep -qF -- "--run-dir $tmp/$1 " && echo $p
    done
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# run_case NAME SIGNAL [FLAGS...]: trains, signals rank 1 once steps are
# being logged, and waits for the job to end; sets rc, the seconds it took
# (secs) and the stderr file (err).
run_case() {
    local name=$1 sig=$2 dir=$tmp/run-$1
    shift 2
    err=$tmp/err-$name
    "$MPIEXEC" -np 3 --oversubscribe --bind-to none "$GPTRAIN" train --data "$tmp/data" \
        --model d2 --batch 1 --seq 32 --steps 100000 --comm-timeout $TIMEOUT --quiet \
        --run-dir "$dir" "$@" >/dev/null 2>"$err" &
    mpirun_pid=$!
    local i victim=
    for i in $(seq 300); do # training is under way once rank 0 logs a few steps
        [ "$(losses "$dir/metrics.jsonl" 2>/dev/null | wc -l)" -ge 5 ] && break
        kill -0 $mpirun_pid 2>/dev/null || fail "$sig: the job ended before the signal"
        sleep 0.1
    done
    victim=$(rank_pid "run-$name" 1)
    [ -n "$victim" ] || fail "$sig: no process of rank 1 found"
    local start=$(now)
    kill -$sig $victim
    while kill -0 $mpirun_pid 2>/dev/null; do
        awk -v s="$(since $start)" -v l=$((TIMEOUT + 10)) 'BEGIN { exit !(s > l) }' &&
            fail "$sig: the job was still running $((TIMEOUT + 10)) s after the signal"
        sleep 0.1
    done
    wait $mpirun_pid
    rc=$?
    mpirun_pid=
    secs=$(since $start)
}

# Once mpirun has returned, no gptrain process of the test may remain.
no_leftovers() {
    local i
    for i in $(seq 20); do
        [ -z "$(test_pids)" ] && return 0
        sleep 0.1
    done
    fail "$1: gptrain processes left behind: $(test_pids | tr '\n' ' ')"
}

make_corpus
watchdog_line="did not finish within $TIMEOUT s"

for zero in 0 3; do
    run_case STOP$zero STOP --zero $zero
    [ $rc -ne 0 ] || fail "STOP, zero $zero: exit 0"
    grep -q "$watchdog_line" "$err" || fail "STOP, zero $zero: no watchdog message: $(head -3 "$err")"
    grep -q "rank 1 \(did not arrive\|arrived but its process is stopped\)" "$err" ||
        fail "STOP, zero $zero: the message does not name rank 1: $(grep "$watchdog_line" "$err")"
    no_leftovers "STOP, zero $zero"
    echo "SIGSTOP of rank 1 at ZeRO $zero: exit $rc after $secs s; $(grep -m1 "$watchdog_line" "$err")"
    pass
done

run_case KILL KILL
[ $rc -ne 0 ] || fail "KILL: exit 0"
if grep -q "$watchdog_line" "$err"; then
    seen="the watchdog: $(grep -m1 "$watchdog_line" "$err")"
elif grep -q "exited on signal 9" "$err"; then
    seen="mpirun: $(grep -m1 "exited on signal 9" "$err")"
else
    fail "KILL: neither the watchdog nor mpirun reported it: $(head -3 "$err")"
fi
no_leftovers KILL
echo "SIGKILL of rank 1: exit $rc after $secs s, reported by $seen"
pass
echo "watchdog: $checks passed, 0 failed"
