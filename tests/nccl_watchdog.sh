# nccl_watchdog.sh: NCCL's set-up (comm_nccl_init) under the collective
# watchdog, under real mpirun. In test_nccl's stall mode rank 1 of 2 stops
# itself (SIGSTOP) where it would enter comm_nccl_init; rank 0 must end the
# job within the timeout + 10 s with the watchdog's message naming rank 1,
# and leave no process behind. Before set-up was watched, rank 0 waited in
# a plain MPI_Allreduce forever. Runs with or without a GPU: either way rank
# 0 next waits for rank 1 in set-up's first agreement.
#   usage: nccl_watchdog.sh GPTRAIN TEST_NCCL
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
TEST_NCCL=$2
TIMEOUT=3
mpirun_pid=

# This test's processes: test_nccl in stall mode with this test's marker.
stall_pids() {
    local p
    for p in $(pgrep -f -- "$TEST_NCCL"); do
        { tr '\0' '\n' </proc/$p/environ; } 2>/dev/null | grep -qx "NCCL_WATCHDOG_TEST=$tmp" &&
            echo $p
    done
}

cleanup() {
    end_job "$mpirun_pid" $(stall_pids)
    rm -rf "$tmp"
}
trap cleanup EXIT

err=$tmp/err
start=$(date +%s)
NCCL_WATCHDOG_TEST=$tmp TEST_NCCL_STALL=$TIMEOUT "$MPIEXEC" -np 2 --oversubscribe \
    --bind-to none -x NCCL_WATCHDOG_TEST -x TEST_NCCL_STALL "$TEST_NCCL" >/dev/null 2>"$err" &
mpirun_pid=$!
while kill -0 $mpirun_pid 2>/dev/null; do
    [ $(($(date +%s) - start)) -le $((TIMEOUT + 10)) ] ||
        fail "the job was still running $((TIMEOUT + 10)) s after it started: $(head -3 "$err")"
    sleep 0.2
done
wait $mpirun_pid
rc=$?
mpirun_pid=
secs=$(($(date +%s) - start))
line="did not finish within $TIMEOUT s"
[ $rc -ne 0 ] || fail "exit 0 with rank 1 stopped in set-up"
grep -q "$line" "$err" || fail "no watchdog message: $(head -3 "$err")"
grep -q "rank 1 did not arrive (its process is stopped)" "$err" ||
    fail "the message does not name rank 1: $(grep -m1 "$line" "$err")"
for i in $(seq 20); do
    [ -z "$(stall_pids)" ] && break
    sleep 0.1
done
[ -z "$(stall_pids)" ] || fail "processes left behind: $(stall_pids | tr '\n' ' ')"
pass
echo "rank 1 stopped in NCCL set-up: exit $rc after about $secs s; $(grep -m1 "$line" "$err")"
echo "nccl_watchdog: $checks passed, 0 failed"
