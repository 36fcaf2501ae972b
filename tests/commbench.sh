# commbench.sh: `gptrain commbench` under mpirun: for each operation the
# table has one row per size, doubling from 8 B to --max-bytes, with five
# numeric columns and nccl-tests' bus bandwidth; one rank (no mpirun) runs
# too, with bus bandwidth 0; --backend nccl gives a table or a clear error;
# bad flag values exit 2 with one error line.
#   usage: commbench.sh GPTRAIN
. "$(dirname "$0")/lib.sh"
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1

# check_table FILE RANKS OP: 14 rows (8 B .. 64 KiB), sizes as the operation
# rounds them, all columns numbers, busbw = algbw * nccl-tests' factor.
check_table() {
    awk -v P=$2 -v op=$3 '
        /^#/ { next }
        { rows++
          for (i = 1; i <= 5; i++) if ($i !~ /^[0-9]+(\.[0-9]+)?$/) bad = "non-numeric " $i
          want = 2 ^ (rows + 2)
          if (op != "allreduce") { per = int(want / 4 / P); if (per < 1) per = 1; want = per * P * 4 }
          if ($1 != want || $2 != want / 4) bad = "size " $1 " count " $2 ", want " want
          f = op == "allreduce" ? 2 * (P - 1) / P : (P - 1) / P
          d = $5 - $4 * f; if (d < 0) d = -d
          if (d > 0.0015 + 0.001 * $5) bad = "busbw " $5 " for algbw " $4 }
        END { if (rows != 14) bad = bad " rows " rows
              if (bad) { print bad; exit 1 } }' "$1"
}

for op in allreduce reduce_scatter allgather; do
    timeout 120 "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" commbench --op $op \
        --max-bytes 65536 --iters 3 >"$tmp/out" 2>"$tmp/err" ||
        fail "mpirun -np 2 commbench --op $op: exit $? ($(head -1 "$tmp/err"))"
    why=$(check_table "$tmp/out" 2 $op) || fail "$op table: $why"
    grep -q "^# .*nccl-tests" "$tmp/out" || fail "$op: no header naming nccl-tests' definitions"
    pass
done
timeout 120 "$MPIEXEC" -np 3 --oversubscribe --bind-to none "$GPTRAIN" commbench \
    --op reduce_scatter --max-bytes 65536 --iters 3 >"$tmp/out" 2>&1 || fail "3 ranks: exit $?"
why=$(check_table "$tmp/out" 3 reduce_scatter) || fail "3-rank table: $why"
pass
"$GPTRAIN" commbench --max-bytes 65536 --iters 3 >"$tmp/out" 2>&1 || fail "one rank: exit $?"
why=$(check_table "$tmp/out" 1 allreduce) || fail "one-rank table: $why"
pass

# --backend nccl: a table where a GPU is visible; otherwise a one-line error
# (exit 1) in a CUDA build, or a usage error (exit 2) in a build without CUDA.
"$GPTRAIN" commbench --backend nccl --max-bytes 65536 --iters 3 >"$tmp/out" 2>"$tmp/err"
rc=$?
case $rc in
    0) why=$(check_table "$tmp/out" 1 allreduce) || fail "NCCL table: $why"
       grep -q "(NCCL, GPU)" "$tmp/out" || fail "NCCL table header" ;;
    1) grep -q "only 0 GPUs visible" "$tmp/err" || fail "NCCL without a GPU: $(head -1 "$tmp/err")" ;;
    2) grep -q "built without CUDA" "$tmp/err" || fail "NCCL without CUDA: $(head -1 "$tmp/err")" ;;
    *) fail "commbench --backend nccl: exit $rc" ;;
esac
pass

# expect_usage NEEDLE ARGS...: exit 2, one error line naming NEEDLE, a usage line.
expect_usage() {
    local needle=$1; shift
    "$GPTRAIN" commbench "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || fail "commbench $*: exit $rc, want 2"
    head -1 "$tmp/err" | grep -qF -- "$needle" || fail "commbench $*: $(head -1 "$tmp/err")"
    grep -q '^usage: ' "$tmp/err" || fail "commbench $*: no usage line"
    pass
}
expect_usage "--iters >= 1 (0)" --iters 0
expect_usage "--min-bytes (2)" --min-bytes 2
expect_usage "--max-bytes (8)" --min-bytes 16 --max-bytes 8
expect_usage "unknown --op 'alltoall'" --op alltoall
expect_usage "unknown --backend 'gloo'" --backend gloo
expect_usage "invalid value '1k' for --max-bytes" --max-bytes 1k
"$GPTRAIN" commbench --help >"$tmp/help" || fail "commbench --help exit code"
grep -q '^  --max-bytes X .*\[268435456\]$' "$tmp/help" || fail "commbench --help lacks defaults"
pass
echo "commbench: $checks passed, 0 failed"
