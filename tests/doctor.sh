# doctor.sh: gptrain doctor under mpirun with 2 ranks reports the world, the
# GPUs, the profile, an allreduce sweep, the checkpoint directory's speed and
# sharing, and the clock skew, and exits 0; a checkpoint directory that
# cannot be created, or a skew limit no clock can meet, is a FAIL line and
# exit 1.   usage: doctor.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
doctor() { "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" doctor --io-mb 8 "$@" \
           </dev/null >"$tmp/out" 2>&1; }
doctor --ckpt-dir "$tmp/ck" --profile local || fail "doctor failed: $(grep -m3 FAIL "$tmp/out")"
for want in "^profile local " "^INFO  world  *2 ranks on 1 host" "^INFO  gpus " \
            "^ *67108864 " "^PASS  allreduce" "^PASS  checkpoint dir speed .*MB/s" \
            "^PASS  checkpoint dir shared" "^PASS  clock skew" "^doctor: all checks passed"; do
    grep -q "$want" "$tmp/out" || fail "no line matching '$want'"
done
[ -z "$(ls -A "$tmp/ck")" ] || fail "doctor left files behind: $(ls -A "$tmp/ck")"
pass
doctor --ckpt-dir /proc/gptrain-doctor && fail "an impossible checkpoint dir passed"
grep -q "^FAIL  checkpoint dir .*cannot be created" "$tmp/out" || fail "$(grep -m2 FAIL "$tmp/out")"
doctor --ckpt-dir "$tmp/ck" --max-skew-ms -1 && fail "a negative skew limit passed"
grep -q "^FAIL  clock skew" "$tmp/out" || fail "no clock skew FAIL"
pass
echo "doctor: $checks passed, 0 failed"
