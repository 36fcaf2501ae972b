#!/usr/bin/env python3
"""torch_gpt2.py: the PyTorch peer of bench_gpu, a self-contained GPT-2.

Times full training steps (zero grad, forward, backward, global-norm clipping
at 1.0, AdamW with weight decay 0.1 on 2-D weights, fused where PyTorch has
it) on one fixed batch of random tokens, the step bench_gpu times, with bf16
autocast on CUDA, optionally under torch.compile, and prints one line of
JSON (the last line of stdout):

  {"impl": "pytorch", "torch": ..., "compile": bool, "model": ..., "B": ...,
   "T": ..., "ms_per_step": median, "tok_per_s": ..., "mfu": ... or null,
   "peak_mem_gib": ..., ...}

The model: token + position embeddings, pre-LayerNorm blocks (causal
self-attention through scaled_dot_product_attention(is_causal=True), or an
explicit masked softmax where PyTorch lacks it; an MLP with tanh GELU), a
final LayerNorm and an LM head tied to the token embedding, whose vocabulary
is padded to a multiple of 64 (50257 -> 50304) with the padded logits kept
out of the softmax, as gptrain does.

FLOPs per step follow gptrain's gpt_flops_per_step (model/config.c):
6 * N * tokens + 6 * layers * channels * T * tokens, with N the parameter
count without the position embedding and the padded vocabulary rows.

  python3 bench/gpu/torch_gpt2.py --model 124M --batch 16 --seq 1024 --steps 20 \\
      --warmup 5 --compile --peak-tflops 989.4 --json

--batch is the batch per optimizer step; if it does not fit the device, the
step is split into micro-batches (halved until one fits) with gradient
accumulation, and the JSON says so ("micro_batch", "grad_accum").
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = {  # name: (layers, heads, channels)
    "124M": (12, 12, 768),
    "350M": (24, 16, 1024),
}
VOCAB = 50257
MAX_SEQ = 1024
HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


class Attention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if HAVE_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # PyTorch < 2.0
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = Attention(C, n_head)
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, n_layer, n_head, C, vocab, max_seq):
        super().__init__()
        self.vocab = vocab
        self.padded_vocab = (vocab + 63) // 64 * 64
        self.wte = nn.Embedding(self.padded_vocab, C)
        self.wpe = nn.Embedding(max_seq, C)
        self.h = nn.ModuleList([Block(C, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(C)
        self.n_layer = n_layer
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        # GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers),
        # zero biases, unit LayerNorm gains; the padded vocabulary rows are 0.
        proj_std = 0.02 / math.sqrt(2 * self.n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 1:  # LayerNorm gains (the only 1-D weights) and biases
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
            else:
                std = proj_std if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
        self.wte.weight[self.vocab:].zero_()

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()  # tied LM head, (B, T, padded_vocab)
        logits = logits[..., :self.vocab]  # the padded columns stay out of the softmax
        return F.cross_entropy(logits.reshape(B * T, self.vocab).float(), targets.reshape(-1))


def num_params(n_layer, C, vocab, max_seq):
    """gpt_num_params of model/config.c: no padded rows, the LM head tied."""
    per_layer = 12 * C * C + 13 * C
    return vocab * C + max_seq * C + n_layer * per_layer + 2 * C


def flops_per_step(n_layer, C, vocab, max_seq, T, tokens):
    """gpt_flops_per_step of model/config.c."""
    n = num_params(n_layer, C, vocab, max_seq) - max_seq * C
    attn = 6.0 * n_layer * C * T
    return (6.0 * n + attn) * tokens


def make_optimizer(model, lr, device):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError, ValueError):
            pass
    try:
        return torch.optim.AdamW(groups, foreach=True, **kw), "foreach"
    except (TypeError, RuntimeError, ValueError):
        return torch.optim.AdamW(groups, **kw), "for-loop"


def is_oom(e):
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="124M")
    ap.add_argument("--batch", type=int, default=8, help="sequences per optimizer step")
    ap.add_argument("--seq", type=int, default=1024, help="T")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--compile", dest="compile", action="store_true", default=None,
                    help="torch.compile the model (default where torch.compile exists, on CUDA)")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                    help="autocast dtype (default bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None)
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the device's dense bf16 peak, for MFU (0: MFU null)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    ap.add_argument("--verbose", action="store_true", help="print each step's loss on stderr")
    # hidden: a custom shape, for tests on small machines
    for flag in ("--layers", "--heads", "--channels", "--vocab"):
        ap.add_argument(flag, type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()

    L, NH, C = MODELS[a.model]
    L, NH, C = a.layers or L, a.heads or NH, a.channels or C
    V = a.vocab or VOCAB
    T = a.seq
    if C % NH or T < 1 or T > MAX_SEQ or a.batch < 1 or a.steps < 1 or a.warmup < 0:
        ap.error("need heads | channels, 1 <= seq <= %d, batch >= 1, steps >= 1" % MAX_SEQ)
    custom = any(x is not None for x in (a.layers, a.heads, a.channels, a.vocab))
    name = a.model if not custom else "L%d-H%d-C%d-V%d" % (L, NH, C, V)

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_gpt2: no CUDA device")
    dtype = a.dtype or ("bf16" if device.type == "cuda" else "fp32")
    want_compile = a.compile if a.compile is not None else device.type == "cuda"
    torch.manual_seed(a.seed)
    if device.type == "cuda":
        # no TF32 switches: under bf16 autocast the matmuls are bf16, and the
        # legacy flags are deprecated in newer torch
        torch.cuda.reset_peak_memory_stats(device)
    else:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    model = GPT2(L, NH, C, V, MAX_SEQ).to(device)
    opt, opt_kind = make_optimizer(model, a.lr, device)
    g = torch.Generator().manual_seed(42)
    tok = torch.randint(0, V, (a.batch, T + 1), generator=g).to(device)
    x_all, y_all = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()

    compile_error = None
    run_model = model
    if want_compile:
        if not hasattr(torch, "compile"):
            compile_error = "torch.compile is not available in torch %s" % torch.__version__
        else:
            # static shapes: a retry at a smaller micro-batch after running
            # out of memory must not turn into dynamic-shape kernels
            run_model = torch.compile(model, dynamic=False)
    use_autocast = dtype == "bf16"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    micro = a.batch

    def step():
        opt.zero_grad(set_to_none=True)
        n_micro = a.batch // micro
        total = 0.0
        for i in range(n_micro):
            xb = x_all[i * micro:(i + 1) * micro]
            yb = y_all[i * micro:(i + 1) * micro]
            if use_autocast:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    loss = run_model(xb, yb)
            else:
                loss = run_model(xb, yb)
            (loss / n_micro).backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return total / n_micro

    def first_step():
        """The first step, with the fallbacks: eager if compiling fails, and
        smaller micro-batches while the step does not fit."""
        nonlocal run_model, compile_error, micro
        while True:
            try:
                loss = step()
                sync()
                return loss
            except Exception as e:  # noqa: BLE001 - any compile failure falls back
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if is_oom(e):
                    if micro == 1:
                        raise
                    micro //= 2
                    while a.batch % micro:
                        micro -= 1
                    print("torch_gpt2: out of memory; micro-batch %d, %d accumulation steps"
                          % (micro, a.batch // micro), file=sys.stderr)
                    continue
                if run_model is not model:
                    compile_error = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:500]
                    print("torch_gpt2: torch.compile failed (%s); running eager" % compile_error,
                          file=sys.stderr)
                    run_model = model
                    continue
                raise

    # Step 0 is the first of the warm-up steps (it compiles); the next
    # `steps` steps after the warm-up are timed.
    losses, times = [], []
    t0 = time.perf_counter()
    losses.append(float(first_step()))
    first_s = time.perf_counter() - t0
    if a.warmup == 0:
        times.append(first_s * 1e3)
    if a.verbose:
        print("step %3d loss %.4f (first step, %.1f s)" % (0, losses[0], first_s), file=sys.stderr)
    for s in range(1, a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        dt = (time.perf_counter() - t0) * 1e3
        if s >= a.warmup:
            times.append(dt)
        losses.append(float(loss))
        if a.verbose:
            print("step %3d loss %.4f %9.2f ms%s" % (s, losses[-1], dt,
                  "" if s >= a.warmup else " (warm-up)"), file=sys.stderr)
    med = statistics.median(times)
    tokens = a.batch * T
    flops = flops_per_step(L, C, V, MAX_SEQ, T, tokens)
    tflops = flops / (med / 1e3) / 1e12
    peak = a.peak_tflops if a.peak_tflops and a.peak_tflops > 0 else None
    out = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "compile": run_model is not model,
        "model": name,
        "B": a.batch,
        "T": T,
        "ms_per_step": round(med, 3),
        "tok_per_s": round(tokens / (med / 1e3), 1),
        "mfu": round(tflops / peak, 4) if peak else None,
        "peak_mem_gib": (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                         if device.type == "cuda" else None),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": dtype,
        "steps": len(times),
        "warmup": a.warmup,
        "ms_min": round(min(times), 3),
        "ms_mean": round(statistics.mean(times), 3),
        "tflops": float("%.4g" % tflops),
        "peak_tflops": peak,
        "micro_batch": micro,
        "grad_accum": a.batch // micro,
        "sdpa": HAVE_SDPA,
        "adamw": opt_kind,
        "first_step_s": round(first_s, 2),
        "loss_first": round(losses[0], 4),
        "loss": round(losses[-1], 4),
    }
    if compile_error:
        out["compile_error"] = compile_error
    if not a.json:
        print("%s %s B=%d T=%d: %.2f ms/step, %.0f tok/s, %.1f TFLOP/s%s" % (
            out["impl"], name, a.batch, T, med, out["tok_per_s"], tflops,
            ", MFU %.1f%%" % (100 * out["mfu"]) if out["mfu"] is not None else ""),
            file=sys.stderr)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
