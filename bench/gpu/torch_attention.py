#!/usr/bin/env python3
"""torch_attention.py: PyTorch's causal SDPA back ends on the shapes that
bench_attention times our flash attention on.

For each back end that runs here (cuDNN's fused attention, FlashAttention,
memory-efficient attention), times forward and forward + backward of
scaled_dot_product_attention(q, k, v, is_causal=True) in bf16 on random
inputs laid out (B, NH, T, HS), with CUDA events, median of ITERS runs after
three warm-up runs. Prints one JSON line per back end:

  {"impl": "torch-cudnn", "B": ..., "T": ..., "NH": ..., "HS": ...,
   "fwd_ms": ..., "fwd_bwd_ms": ..., "fwd_tflops": ..., "fwd_bwd_tflops": ...}

or {"impl": ..., "error": "..."} for a back end that refuses the shape. FLOPs
as bench_attention counts them: forward 4 B NH T^2 HS / 2, backward 2.5 times
that.

  python3 bench/gpu/torch_attention.py --batch 16 --seq 1024 --heads 12 --head-size 64
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "torch-cudnn": SDPBackend.CUDNN_ATTENTION,
    "torch-flash": SDPBackend.FLASH_ATTENTION,
    "torch-efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def median_ms(fn, iters):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(iters + 3):
        start.record()
        fn()
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench(backend, a):
    shape = (a.batch, a.heads, a.seq, a.head_size)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.rand(shape, device="cuda", dtype=torch.bfloat16, generator=gen) * 2 - 1
               for _ in range(3))
    for t in (q, k, v):
        t.requires_grad_(True)
    dout = torch.rand(shape, device="cuda", dtype=torch.bfloat16, generator=gen) * 2 - 1

    def forward():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def forward_backward():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        # autograd.grad returns the gradients instead of adding them into
        # q.grad etc., which would time three extra kernels
        torch.autograd.grad(out, (q, k, v), dout)

    with sdpa_kernel(backend):
        fwd = median_ms(forward, a.iters)
        both = median_ms(forward_backward, a.iters)
    flops = 4.0 * a.batch * a.heads * a.seq * a.seq * a.head_size / 2
    return {"fwd_ms": round(fwd, 4), "fwd_bwd_ms": round(both, 4),
            "fwd_tflops": round(flops / (fwd * 1e-3) / 1e12, 1),
            "fwd_bwd_tflops": round(3.5 * flops / (both * 1e-3) / 1e12, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--head-size", type=int, required=True)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    for name, backend in BACKENDS.items():
        row = {"impl": name, "torch": torch.__version__, "B": a.batch, "T": a.seq,
               "NH": a.heads, "HS": a.head_size}
        try:
            row.update(bench(backend, a))
        except RuntimeError as e:  # a back end that does not take this shape or GPU
            row["error"] = str(e).splitlines()[0][:200]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
