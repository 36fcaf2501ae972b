#!/usr/bin/env bash
# bench/gpu/run.sh: what a session with a GPU checks, in as few device calls
# as possible (device time is scarce): build with the carried Debian
# libraries (bench/gpu/fetch_deps.sh, env.sh), run the CUDA tests, the
# sanitizers, and the benchmark against PyTorch on the same GPU.
#
# usage, on the GPU machine from the repository root:
#   bash bench/gpu/run.sh STAGE...   stages: build tests sanitize bench attention
# Results go to $OUT (the device tool's folder) or /tmp/gpu-out: one file per
# stage, and bench.md and attention.md, tables ready for bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
build=build-gpu
# shellcheck source=bench/gpu/env.sh
source bench/gpu/env.sh

stage_build() {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
        | tee "$out/device.txt"
    gpu_configure "$build" -DGPTRAIN_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        >"$out/configure.txt" 2>&1 || { tail -30 "$out/configure.txt"; return 1; }
    cmake --build "$build" -j16 >"$out/build.txt" 2>&1 || { grep -B2 -A8 error "$out/build.txt" | head -80; return 1; }
    echo "build: ok"
}

stage_tests() {
    ctest --test-dir "$build" -R 'test_cu_|test_nccl|cuda_train|test_kernels|test_model|test_reference' \
        --output-on-failure --timeout 300 2>&1 | tee "$out/tests.txt" | tail -60
}

# memcheck and racecheck on short runs: the model test's first case and the
# attention test (shared-memory races live in the attention kernels).
stage_sanitize() {
    local cs=compute-sanitizer
    command -v $cs >/dev/null || cs=/usr/local/cuda/bin/compute-sanitizer
    for tool in memcheck racecheck; do
        for t in test_cu_attention test_cu_layers test_cu_matmul test_cu_model; do
            echo "== $tool $t"
            CMOCKA_TEST_ABORT=1 timeout 300 $cs --tool $tool --error-exitcode 9 \
                "$build/tests/$t" 2>&1 | tail -4
            echo "exit ${PIPESTATUS[0]}"
        done
    done 2>&1 | tee "$out/sanitize.txt"
}

# gptrain and PyTorch on the same GPU: the largest power-of-two micro-batch
# that fits gptrain (B=0), and the same B for PyTorch.
stage_bench() {
    local date commit
    date=$(date -u +%Y-%m-%d)
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    : >"$out/bench.jsonl"
    for m in 124M 350M; do
        local ours b
        ours=$("$build/bench/bench_gpu" "gpt2-$m" 0 1024 20) || { echo "bench_gpu $m failed"; continue; }
        echo "$ours" | tee -a "$out/bench.jsonl"
        b=$(echo "$ours" | python3 -c 'import json,sys; print(json.load(sys.stdin)["B"])')
        PYTHONUNBUFFERED=1 timeout 400 python3 bench/gpu/torch_gpt2.py --model "$m" --batch "$b" \
            --seq 1024 --steps 20 --warmup 5 --compile --json \
            --peak-tflops "$(echo "$ours" | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_tflops"])')" \
            | tail -1 | tee -a "$out/bench.jsonl"
    done
    python3 - "$out/bench.jsonl" "$date" "$commit" <<'EOF' | tee "$out/bench.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = {r["model"].replace("gpt2-", ""): r for r in rows if r.get("impl") == "gptrain"}
peer = {r["model"]: r for r in rows if r.get("impl") == "pytorch"}
print(f"| date | commit | device | model | B x T | gptrain tok/s | MFU | PyTorch tok/s "
      f"(compile) | gptrain / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|")
for m, r in ours.items():
    p = peer.get(m, {})
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "unknown"
    ptok = p.get("tok_per_s")
    ratio = f"{r['tok_per_s'] / ptok:.2f}x" if ptok else "n/a"
    print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['device']} | {m} | {r['B']} x {r['T']} | "
          f"{r['tok_per_s']:.0f} | {mfu} | {ptok or 'n/a'} ({p.get('compile')}) | {ratio} |")
EOF
}

# Our attention against PyTorch's SDPA back ends (cuDNN's, FlashAttention's)
# at the attention shapes of GPT-2 124M and 350M (head size 64) and a head
# size of 128, T = 1024: whether cuDNN's SDPA would beat ours.
stage_attention() {
    : >"$out/attention.jsonl"
    for shape in "16 1024 12 64" "16 1024 16 64" "16 1024 8 128"; do
        set -- $shape
        "$build/bench/bench_attention" "$1" "$2" "$3" "$4" 20 | tee -a "$out/attention.jsonl"
        timeout 300 python3 bench/gpu/torch_attention.py --batch "$1" --seq "$2" --heads "$3" \
            --head-size "$4" | tee -a "$out/attention.jsonl"
    done
    python3 - "$out/attention.jsonl" "$(date -u +%Y-%m-%d)" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF' | tee "$out/attention.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| date | commit | B x T x NH x HS | implementation | fwd ms | fwd+bwd ms | fwd+bwd TFLOP/s |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    shape = f"{r['B']} x {r['T']} x {r['NH']} x {r['HS']}"
    if "error" in r:
        print(f"| {sys.argv[2]} | {sys.argv[3]} | {shape} | {r['impl']} | {r['error']} | | |")
        continue
    print(f"| {sys.argv[2]} | {sys.argv[3]} | {shape} | {r['impl']} | {r['fwd_ms']:.3f} | "
          f"{r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_tflops']:.0f} |")
EOF
}

[ $# -gt 0 ] || set -- build tests
for s in "$@"; do
    echo "### stage $s"
    "stage_$s" || { echo "stage $s failed"; exit 1; }
done
