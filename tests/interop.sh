# interop.sh: a checkpoint written by 2 ranks at ZeRO stage 3 (parallel
# HDF5) opens in h5dump and in h5py without gptrain's code, and the PyTorch
# reference model loaded from it with h5py reproduces gptrain's logits.
# Skipped (exit 77) with a message when h5py or PyTorch is missing.
#   usage: interop.sh GPTRAIN LOGITS_DUMP
. "$(dirname "$0")/lib.sh"
dump=$2
py=/usr/bin/python3
if ! $py -c 'import h5py, torch' 2>/dev/null; then
    echo "interop: skipped: $py lacks h5py or torch (bash launch/bootstrap.sh --bench installs them)"
    exit 77
fi
[ -n "${MPIEXEC:-}" ] || fail "MPIEXEC is not set"
export OMP_NUM_THREADS=1
make_corpus
timeout 120 "$MPIEXEC" -np 2 --oversubscribe --bind-to none "$GPTRAIN" train --data "$tmp/data" \
    --model d2 --seq 32 --batch 2 --steps 3 --val-every 0 --zero 3 --quiet \
    --run-dir "$tmp/run" </dev/null || fail "training failed"
ck=$tmp/run/ckpt_00000003.h5
h5dump -H "$ck" >/dev/null || fail "h5dump cannot read $ck"
pass
ids="5 17 300 2 99 511 0 42"
"$dump" "$ck" "$tmp/logits.bin" $ids || fail "logits_dump failed"
$py "$GPTRAIN_SRC/tests/interop_check.py" "$ck" "$tmp/logits.bin" $ids || fail "logits differ"
pass
echo "interop: $checks passed, 0 failed"
