# straggler.sh: the straggler report under real mpirun. Rank 1 of 2 is
# stopped (SIGSTOP) for 2.5 s mid-run, as a slow node would be: the report
# for that window names rank 1 as the slowest, with its host, and rank 0
# warns; every report is in metrics.jsonl; step lines carry busy time,
# TFLOP/s and an ETA.   usage: straggler.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
dir=$tmp/run
"$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train --data "$tmp/data" --model d2 \
    --seq 32 --batch 2 --steps 300 --val-every 0 --straggler-every 10 --log-every 100 \
    --run-dir "$dir" </dev/null >"$tmp/out" 2>"$tmp/err" &
job=$!
for i in $(seq 300); do
    [ "$(losses "$dir/metrics.jsonl" 2>/dev/null | wc -l)" -ge 12 ] && break
    sleep 0.05
done
victim=$(pgrep -f -- "--run-dir $dir" | while read -r p; do
    tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && echo $p; done)
[ -n "$victim" ] || fail "no rank 1"
kill -STOP $victim
sleep 2.5
kill -CONT $victim
wait $job || fail "the run failed: $(tail -3 "$tmp/err")"
[ "$(grep -c '"event":"stragglers"' "$dir/metrics.jsonl")" -eq 30 ] || fail "not one report per 10 steps"
grep '"event":"stragglers"' "$dir/metrics.jsonl" | grep -q '"slowest_rank":1,"slowest_host":"[^"]' ||
    fail "no report names rank 1"
grep -q "warning: straggler: rank 1 (host .*) was busy .* the others waited for it" "$tmp/err" ||
    fail "no warning: $(grep stragglers "$dir/metrics.jsonl" | awk -F"busy_ms_max.:" "{print \$2}" | cut -c1-40 | tr "\\n" " ")"
grep -q '"busy_ms":[0-9.]*,"tokens":[0-9]*,"tflops":[0-9.e+-]*,"mfu":0' "$dir/metrics.jsonl" ||
    fail "step records lack busy_ms/tflops/mfu"
grep -q "TFLOP/s | ETA [0-9]*m[0-9]*s$" "$tmp/out" || fail "no ETA in the step line: $(grep -m1 step "$tmp/out")"
echo "straggler: $(grep -m1 'warning: straggler' "$tmp/err")"
pass
echo "straggler: $checks passed, 0 failed"
