#!/usr/bin/python3
"""PyTorch oracle for gptrain's reference test.

What this does
--------------
Builds a tiny GPT-2 (n_layer=3, n_head=3, n_embd=30, max_seq=16, vocab=131,
float32) from plain torch ops, seeds every weight (including LayerNorm and
bias tensors, which are deliberately NOT left at their trivial 1/0 init),
and runs 5 training steps on a batch of B=2 sequences of length T=11 with
gradient-norm clipping and AdamW (weight decay only on >=2-D tensors).  It
writes the initial weights, and per step the logits, loss, grad norm, raw
gradients and updated weights, to a little-endian binary fixture
(see README.md in this directory for the exact layout).

Why
---
The C runtime's forward pass, backward pass, gradient clipping and AdamW
must agree with an independent implementation.  PyTorch's autograd, its
clip_grad_norm_ and its AdamW are that independent implementation; the
fixture lets the C test (tests/test_reference.c) compare against them
without needing Python at test time.

Run with Debian's interpreter (torch 1.13, CPU):
    /usr/bin/python3 tests/reference/gpt2_reference.py --out tests/reference/fixture.bin
The output is deterministic for a given torch build.
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- config
N_LAYER, N_HEAD, N_EMBD, MAX_SEQ, VOCAB = 3, 3, 30, 16, 131
B, T, STEPS = 2, 11, 5
LRS = [1e-3, 2e-3, 3e-3, 3e-3, 3e-3]
BETA1, BETA2, EPS, WEIGHT_DECAY = 0.9, 0.95, 1e-8, 0.1
# Chosen from the printed pre-clip norms (1.612, 1.569, 1.509, 1.343, 1.370):
# clipping is active on steps 0-2 and inactive on steps 3-4, with a margin of
# at least ~4.6% either side so float-rounding differences cannot flip it.
GRAD_CLIP = 1.4375  # exactly representable in float32
MAGIC, VERSION = 20261122, 1
SEED = 1337
EXPECTED_PARAM_FLOATS = 38040
MAX_BYTES = 2 * 1024 * 1024


# ---------------------------------------------------------------- model
class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention then MLP."""

    def __init__(self, c, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.c_attn = nn.Linear(c, 3 * c)
        self.attn_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def attention(self, h):
        bsz, seq, c = h.shape
        hs = c // self.n_head
        qkv = self.c_attn(h)                      # (B, T, 3C)
        q = qkv[..., 0:c]
        k = qkv[..., c:2 * c]
        v = qkv[..., 2 * c:3 * c]

        def heads(t):                             # (B, T, C) -> (B, nh, T, hs)
            return t.reshape(bsz, seq, self.n_head, hs).permute(0, 2, 1, 3)

        q, k, v = heads(q), heads(k), heads(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))
        future = torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v)              # (B, nh, T, hs)
        out = out.permute(0, 2, 1, 3).reshape(bsz, seq, c)
        return self.attn_proj(out)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT2(nn.Module):
    """GPT-2 of any size; bench/torch_step.py imports it as the speed peer."""

    def __init__(self, n_layer, n_head, n_embd, max_seq, vocab):
        super().__init__()
        self.n_layer, self.vocab = n_layer, vocab
        self.wte = nn.Parameter(torch.empty(vocab, n_embd))
        self.wpe = nn.Parameter(torch.empty(max_seq, n_embd))
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)

    def ordered_params(self):
        """Parameters in the fixture's serialisation order (wte once)."""
        out = [("wte", self.wte), ("wpe", self.wpe)]
        for i, blk in enumerate(self.blocks):
            p = "h%d." % i
            out += [
                (p + "ln_1.weight", blk.ln_1.weight),
                (p + "ln_1.bias", blk.ln_1.bias),
                (p + "attn.c_attn.weight", blk.c_attn.weight),
                (p + "attn.c_attn.bias", blk.c_attn.bias),
                (p + "attn.c_proj.weight", blk.attn_proj.weight),
                (p + "attn.c_proj.bias", blk.attn_proj.bias),
                (p + "ln_2.weight", blk.ln_2.weight),
                (p + "ln_2.bias", blk.ln_2.bias),
                (p + "mlp.c_fc.weight", blk.c_fc.weight),
                (p + "mlp.c_fc.bias", blk.c_fc.bias),
                (p + "mlp.c_proj.weight", blk.mlp_proj.weight),
                (p + "mlp.c_proj.bias", blk.mlp_proj.bias),
            ]
        out += [("ln_f.weight", self.ln_f.weight), ("ln_f.bias", self.ln_f.bias)]
        return out

    @torch.no_grad()
    def init_weights(self):
        resid_std = 0.02 / math.sqrt(2 * self.n_layer)
        nn.init.normal_(self.wte, 0.0, 0.02)
        nn.init.normal_(self.wpe, 0.0, 0.02)
        for blk in self.blocks:
            for ln in (blk.ln_1, blk.ln_2):
                ln.weight.copy_(1.0 + 0.1 * torch.randn_like(ln.weight))
                nn.init.normal_(ln.bias, 0.0, 0.02)
            for lin in (blk.c_attn, blk.attn_proj, blk.c_fc, blk.mlp_proj):
                std = resid_std if lin in (blk.attn_proj, blk.mlp_proj) else 0.02
                nn.init.normal_(lin.weight, 0.0, std)
                nn.init.normal_(lin.bias, 0.0, 0.02)
        self.ln_f.weight.copy_(1.0 + 0.1 * torch.randn_like(self.ln_f.weight))
        nn.init.normal_(self.ln_f.bias, 0.0, 0.02)

    def forward(self, idx, targets):
        seq = idx.shape[1]
        pos = torch.arange(seq, dtype=torch.long)
        x = self.wte[idx] + self.wpe[pos]
        for blk in self.blocks:
            x = blk(x)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte)            # tied LM head, no bias
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))
        return logits, loss


# ---------------------------------------------------------------- helpers
def make_tokens():
    """Per-step (B, T+1) token tensors from a dedicated seeded generator."""
    gen = torch.Generator().manual_seed(SEED + 1)
    toks = [torch.randint(0, VOCAB, (B, T + 1), generator=gen) for _ in range(STEPS)]
    # Guarantee the extreme token ids appear in step 0, in positions that are
    # both an input (col < T) and a target (col >= 1).
    toks[0][0, 3] = VOCAB - 1
    toks[0][1, 7] = 0
    return toks


def flat(tensors):
    return np.concatenate([t.detach().reshape(-1).numpy() for t in tensors])


def f32(a):
    return np.asarray(a, dtype=np.float32).astype("<f4").tobytes()


def i32(a):
    return np.asarray(a, dtype=np.int64).astype("<i4").tobytes()


def verify(path, expect):
    """Re-read the file and check the layout parses exactly to EOF."""
    raw = open(path, "rb").read()
    off = 0

    def take(dtype, n):
        nonlocal off
        arr = np.frombuffer(raw, dtype=dtype, count=n, offset=off)
        off += 4 * n
        return arr

    hdr = take("<i4", 16)
    assert list(hdr[:10]) == [MAGIC, VERSION, N_LAYER, N_HEAD, N_EMBD, MAX_SEQ,
                              VOCAB, B, T, STEPS], hdr
    assert not hdr[10:].any()
    hyp = take("<f4", 8)
    assert np.allclose(hyp[:5], [BETA1, BETA2, EPS, WEIGHT_DECAY, GRAD_CLIP])
    assert not hyp[5:].any()
    assert np.allclose(take("<f4", STEPS), LRS)
    n_tok = STEPS * B * T
    assert np.array_equal(take("<i4", n_tok), expect["inputs"].reshape(-1))
    assert np.array_equal(take("<i4", n_tok), expect["targets"].reshape(-1))
    n_par = EXPECTED_PARAM_FLOATS
    assert np.array_equal(take("<f4", n_par), expect["params0"])
    for s in range(STEPS):
        assert np.array_equal(take("<f4", B * T * VOCAB), expect["logits"][s])
        assert take("<f4", 1)[0] == np.float32(expect["loss"][s])
        assert take("<f4", 1)[0] == np.float32(expect["norm"][s])
        assert np.array_equal(take("<f4", n_par), expect["grads"][s])
        assert np.array_equal(take("<f4", n_par), expect["params"][s])
    assert off == len(raw), (off, len(raw))
    return len(raw)


def check_adamw_step0(p_before, grad, clip_coef, p_after, decay_mask, lr):
    """Independent numpy re-derivation of the first AdamW step (t=1)."""
    g = grad.astype(np.float64) * clip_coef
    m = (1 - BETA1) * g
    v = (1 - BETA2) * g * g
    mhat = m / (1 - BETA1)
    vhat = v / (1 - BETA2)
    p = p_before.astype(np.float64)
    p = p - lr * WEIGHT_DECAY * decay_mask * p
    p = p - lr * mhat / (np.sqrt(vhat) + EPS)
    err = np.max(np.abs(p - p_after))
    assert err < 1e-6, "AdamW re-derivation mismatch: %g" % err


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    model = GPT2(N_LAYER, N_HEAD, N_EMBD, MAX_SEQ, VOCAB)
    model.init_weights()
    named = model.ordered_params()
    params = [p for _, p in named]

    # Every trainable tensor is serialised exactly once.
    assert len({id(p) for p in params}) == len(list(model.parameters())) == len(params)
    n_floats = sum(p.numel() for p in params)
    assert n_floats == EXPECTED_PARAM_FLOATS, n_floats

    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    assert len(decay) == 2 + 4 * N_LAYER
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=LRS[0], betas=(BETA1, BETA2), eps=EPS)
    decay_mask = np.concatenate([np.full(p.numel(), 1.0 if p.dim() >= 2 else 0.0)
                                 for p in params])

    toks = make_tokens()
    inputs = torch.stack([t[:, :-1] for t in toks])     # (STEPS, B, T)
    targets = torch.stack([t[:, 1:] for t in toks])
    assert (inputs[0] == VOCAB - 1).any() and (inputs[0] == 0).any()
    assert (targets[0] == VOCAB - 1).any() and (targets[0] == 0).any()

    rec = {"inputs": inputs.numpy(), "targets": targets.numpy(),
           "params0": flat(params), "logits": [], "loss": [], "norm": [],
           "grads": [], "params": []}

    print("step   lr       loss        grad_norm    clipped")
    for s in range(STEPS):
        p_before = flat(params)
        logits, loss = model(inputs[s], targets[s])
        loss.backward()
        raw_grads = flat([p.grad for p in params])       # before clipping
        norm = float(torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP))
        clip_coef = min(1.0, GRAD_CLIP / (norm + 1e-6))
        for g in opt.param_groups:
            g["lr"] = LRS[s]
        opt.step()
        opt.zero_grad(set_to_none=True)
        p_after = flat(params)
        if s == 0:
            check_adamw_step0(p_before, raw_grads, clip_coef, p_after,
                              decay_mask, LRS[0])

        rec["logits"].append(logits.detach().reshape(-1).numpy().copy())
        rec["loss"].append(float(loss))
        rec["norm"].append(norm)
        rec["grads"].append(raw_grads)
        rec["params"].append(p_after)
        print("%4d  %.0e  %.8f  %.8f  %s" % (s, LRS[s], float(loss), norm,
                                             "yes" if norm > GRAD_CLIP else "no"))

    clipped = [n > GRAD_CLIP for n in rec["norm"]]
    if not any(clipped):
        print("WARNING: grad_clip=%g never clips" % GRAD_CLIP, file=sys.stderr)
    if all(clipped):
        print("note: grad_clip=%g clips on every step" % GRAD_CLIP)

    with open(args.out, "wb") as fh:
        fh.write(i32([MAGIC, VERSION, N_LAYER, N_HEAD, N_EMBD, MAX_SEQ, VOCAB,
                      B, T, STEPS] + [0] * 6))
        fh.write(f32([BETA1, BETA2, EPS, WEIGHT_DECAY, GRAD_CLIP, 0, 0, 0]))
        fh.write(f32(LRS))
        fh.write(i32(rec["inputs"]))
        fh.write(i32(rec["targets"]))
        fh.write(f32(rec["params0"]))
        for s in range(STEPS):
            fh.write(f32(rec["logits"][s]))
            fh.write(f32([rec["loss"][s]]))
            fh.write(f32([rec["norm"][s]]))
            fh.write(f32(rec["grads"][s]))
            fh.write(f32(rec["params"][s]))

    size = verify(args.out, rec)
    assert size <= MAX_BYTES, size
    print("grad_clip = %g; wrote %s (%d bytes); layout verified to EOF"
          % (GRAD_CLIP, os.path.relpath(args.out), size))


if __name__ == "__main__":
    main()
