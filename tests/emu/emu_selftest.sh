#!/usr/bin/env bash
# emu_selftest.sh BINARY [asan|none|races]: the CPU emulation of CUDA
# (tests/emu) must catch what it claims to: each mode of emu_selftest.cu, its
# exit and its words. "none": built without AddressSanitizer, so no bounds
# check. "races": the race build (ThreadSanitizer), whose races must be
# reported and whose barriers must order.
set -uo pipefail
bin=$1
bounds=${2:-asan}
fails=0
# expect MODE RC_KIND PATTERN: RC_KIND is ok (exit 0) or fail (non-zero).
expect() {
    local mode=$1 kind=$2 pattern=$3 out rc
    out=$(ASAN_OPTIONS=detect_leaks=0 "$bin" "$mode" 2>&1)
    rc=$?
    if { [ "$kind" = ok ] && [ $rc -ne 0 ]; } || { [ "$kind" = fail ] && [ $rc -eq 0 ]; } ||
        ! grep -qE "$pattern" <<<"$out"; then
        echo "FAIL $mode: exit $rc, expected $kind and /$pattern/; output:"
        head -20 <<<"$out"
        fails=$((fails + 1))
    else
        echo "ok   $mode: $(grep -m1 -oE "$pattern" <<<"$out")"
    fi
}
if [ "$bounds" = races ]; then
    expect sum ok '^sum 100$'
    expect race fail 'WARNING: ThreadSanitizer: data race'
    expect warprace fail 'WARNING: ThreadSanitizer: data race'
    expect shflrace fail 'WARNING: ThreadSanitizer: data race'
    expect synced ok '^synced 1 1$'
    expect deadlock fail 'deadlock: 64 live threads, 32 at __syncthreads'
    expect cpasync ok 'after the wait 0.5'
    [ $fails -eq 0 ] || exit 1
    exit 0
fi
expect sum ok '^sum 100$'
if [ "$bounds" = asan ]; then
    expect oob fail 'heap-buffer-overflow'
else
    echo "skip oob: built without AddressSanitizer"
fi
expect deadlock fail 'deadlock: 64 live threads, 32 at __syncthreads'
expect shuffle fail 'reads lane 16, which did not take part'
expect smem ok 'without opt-in: invalid argument'
expect smem ok 'with opt-in: no error'
expect cpasync ok 'before the wait -?nan'
expect cpasync ok 'after the wait 0.5'
[ $fails -eq 0 ] || exit 1
