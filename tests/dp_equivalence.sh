# dp_equivalence.sh: data parallelism under real mpirun. For ZeRO stages 0
# and 1 (each reducing after backward, and in small buckets overlapping it),
# 2 and 3 (reducing each unit during backward; 3 also gathering each unit's
# parameters) and P = 1..4 ranks at micro-batch B (2 accumulation steps), the
# per-step losses and the final parameters equal those of one rank at
# micro-batch P*B and of one rank accumulating 2P micro-batches of B
# (relative error <= 1e-5); the reported bytes per rank fall as 1/P for the
# sharded state; the same run twice is bitwise identical; ranks started with
# different flags are refused; a data error met by one rank alone stops every
# rank with that rank's message, without a hang (at stages 2 and 3).
#   usage: dp_equivalence.sh GPTRAIN CKPT_COMPARE
. "$(dirname "$0")/lib.sh"
compare=$2
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
T=32 B=2
common="--data $tmp/data --model d2 --seq $T --steps 6 --warmup 2 --val-every 3 --val-batches 2 --quiet"
run_p() { # run_p P RUN_DIR FLAGS...: P ranks, bounded in time so a hang fails
    local p=$1 dir=$2; shift 2
    timeout 120 "$MPIEXEC" -np "$p" --oversubscribe --bind-to none "$GPTRAIN" train $common \
        --run-dir "$dir" "$@" || fail "mpirun -np $p train $* (exit $?)"
}
close_losses() { # relative difference of every step loss and val loss <= 1e-5
    paste <(grep -o '"\(loss\|val_loss\)":[^,}]*' "$1" | cut -d: -f2) \
          <(grep -o '"\(loss\|val_loss\)":[^,}]*' "$2" | cut -d: -f2) |
    awk 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d;
         if (d > 1e-5 * ($2 < 0 ? -$2 : $2)) bad = 1 } END { exit bad || NR == 0 }'
}
zero_flags() { # 0b/1b: stage 0/1 with 50 KB buckets (the default is 25 MB)
    case $1 in
        0|1) echo "--zero $1 --bucket-mb 0" ;;
        0b|1b) echo "--zero ${1%b} --bucket-mb 0.05" ;;
        *) echo "--zero $1" ;;
    esac
}
bytes() { head -1 "$1" | grep -o "\"bytes_$2\":[0-9]*" | cut -d: -f2; }
for P in 1 2 3 4; do
    total=$((2 * P * B * T))
    run_p 1 "$tmp/w$P" --batch $((P * B)) --total-batch $total
    run_p 1 "$tmp/a$P" --batch $B --total-batch $total
    # 0 and 1 reduce after backward, 0b and 1b in 50 KB buckets during it
    for Z in 0 0b 1 1b 2 3; do
        flags=$(zero_flags $Z)
        run_p "$P" "$tmp/p$P-$Z" --batch $B --total-batch $total $flags
        for ref in w a; do
            close_losses "$tmp/p$P-$Z/metrics.jsonl" "$tmp/$ref$P/metrics.jsonl" ||
                fail "P=$P zero=$Z: losses differ from the one-rank run ($ref)"
            "$compare" "$tmp/p$P-$Z/model.h5" "$tmp/$ref$P/model.h5" 1e-5 >/dev/null ||
                fail "P=$P zero=$Z: parameters differ from the one-rank run ($ref)"
            pass
        done
    done
    # Sharded state is ceil(N/P) rounded up to 16 floats: within 64 bytes of N/P.
    m0=$tmp/p$P-0/metrics.jsonl m1=$tmp/p$P-1/metrics.jsonl m2=$tmp/p$P-2/metrics.jsonl
    m3=$tmp/p$P-3/metrics.jsonl
    [ "$(bytes $m0 params)" = "$(bytes $m2 params)" ] || fail "P=$P: parameters are not whole"
    awk -v o0="$(bytes $m0 optimizer)" -v o1="$(bytes $m1 optimizer)" -v g0="$(bytes $m0 grads)" \
        -v g1="$(bytes $m1 grads)" -v g2="$(bytes $m2 grads)" -v o2="$(bytes $m2 optimizer)" \
        -v p0="$(bytes $m0 params)" -v p3="$(bytes $m3 params)" -v g3="$(bytes $m3 grads)" \
        -v o3="$(bytes $m3 optimizer)" -v P=$P '
        function near(x, want, slack) { return x >= want - 1 && x <= want + slack }
        BEGIN { exit !(near(o1, o0 / P, 128) && near(o2, o0 / P, 128) && g1 == g0 &&
                       near(g2, g0 / P, 64) && near(o3, o0 / P, 128) &&
                       near(g3, g0 / P, 64) && near(p3, p0 / P, 64)) }' ||
        fail "P=$P: reported bytes do not fall as 1/P"
    pass
done

for Z in 0b 1b 2 3; do
    flags=$(zero_flags $Z)
    run_p 3 "$tmp/again$Z" --batch $B --total-batch $((6 * B * T)) $flags
    cmp -s <(losses "$tmp/p3-$Z/metrics.jsonl") <(losses "$tmp/again$Z/metrics.jsonl") ||
        fail "two 3-rank runs differ (zero=$Z)"
    "$compare" "$tmp/p3-$Z/model.h5" "$tmp/again$Z/model.h5" 0 >/dev/null ||
        fail "3-rank params differ (zero=$Z)"
    pass
done

# A rank with other flags: refused before training.
timeout 60 "$MPIEXEC" -np 2 --oversubscribe "$GPTRAIN" train $common --run-dir "$tmp/x" \
    --batch $B : -np 1 "$GPTRAIN" train $common --run-dir "$tmp/x" --batch 3 \
    >/dev/null 2>"$tmp/err" && fail "mismatched flags were accepted"
grep -q "different settings" "$tmp/err" || fail "no message for mismatched flags"
pass

# Token 600 (vocab 512) at token 40 of a bare shard, read unshuffled: global
# sample 1 at B=1, T=32, so rank 1 alone meets it in the first step (at
# stages 2 and 3, where ranks agree before every backward, or forward).
mkdir -p "$tmp/bad" && cp "$tmp/data/train_000000.bin" "$tmp/bad/"
printf '\x58\x02' | dd of="$tmp/bad/train_000000.bin" bs=1 seek=$((1024 + 2 * 40)) conv=notrunc 2>/dev/null
for Z in 2 3; do
    start=$(date +%s)
    timeout 60 "$MPIEXEC" -np 2 --oversubscribe "$GPTRAIN" train --data "$tmp/bad" --vocab 512 \
        --model d2 --seq $T --batch 1 --steps 2 --no-shuffle --zero $Z --quiet \
        --run-dir "$tmp/y" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "zero $Z, a bad token on rank 1: exit $rc (124 is a hang)"
    grep -q "train_000000.bin: token 600 at byte offset 1104" "$tmp/err" || fail "rank 1's message"
    grep -q "stopping: rank 1 failed" "$tmp/err" || fail "rank 0 does not name rank 1"
    [ $(( $(date +%s) - start )) -lt 30 ] || fail "stopping took too long"
    pass
done
echo "dp_equivalence: $checks passed, 0 failed"
