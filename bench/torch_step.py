#!/usr/bin/python3
"""torch_step.py: the PyTorch CPU peer of bench_step.

Times the same GPT-2 training step (forward, backward, global-norm clipping,
AdamW with weight decay on 2-D weights) with the model of
tests/reference/gpt2_reference.py and prints one JSON line with the same
fields as bench_step. Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 bench/torch_step.py LAYERS HEADS CHANNELS VOCAB MAX_SEQ B T STEPS
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from gpt2_reference import GPT2  # noqa: E402


def main():
    if len(sys.argv) != 9:
        sys.exit(__doc__)
    L, NH, C, V, S, B, T, steps = map(int, sys.argv[1:])
    torch.manual_seed(0)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    model = GPT2(L, NH, C, S, V)
    model.init_weights()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    tok = torch.randint(0, V, (B, T + 1))
    times = []
    for s in range(-1, steps):  # step -1 warms up the allocator and threads
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss = model(tok[:, :-1], tok[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= 0:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch-%s" % torch.__version__, "ms_median": round(med, 2),
                      "ms_min": round(min(times), 2), "tok_s": round(B * T / (med / 1e3), 1),
                      "loss": round(loss.item(), 4), "threads": threads}))


if __name__ == "__main__":
    main()
