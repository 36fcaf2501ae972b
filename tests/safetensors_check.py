#!/usr/bin/python3
"""safetensors_check.py: reads a model.safetensors that `gptrain export`
wrote, with the format's spec alone (8-byte header length, JSON header, raw
little-endian data; no gptrain code and no safetensors library), loads it the
way Hugging Face's GPT-2 lays it out (Conv1D weights are (in, out), so they
are transposed into the reference model's nn.Linear), and compares the logits
of a token sequence with gptrain's.

    safetensors_check.py MODEL.safetensors CONFIG.json LOGITS.bin ID...
"""

import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from gpt2_reference import GPT2  # noqa: E402

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def main():
    path, config_path, logits_path = sys.argv[1:4]
    ids = [int(x) for x in sys.argv[4:]]
    cfg = json.load(open(config_path))
    raw = open(path, "rb").read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    model = GPT2(cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"],
                 cfg["vocab_size"])
    with torch.no_grad():
        for name, param in model.ordered_params():
            key = "h." + name[1:] if name[0] == "h" and name[1].isdigit() else name
            if key in ("wte", "wpe"):
                key += ".weight"
            e = header[key]
            a, b = e["data_offsets"]
            arr = np.frombuffer(data[a:b], dtype="<f4").reshape(e["shape"])
            if key.endswith(CONV1D):
                arr = arr.T
            param.copy_(torch.from_numpy(arr.copy()))
    idx = torch.tensor([ids])
    logits, _ = model(idx, idx)
    ours = np.fromfile(logits_path, dtype="<f4").reshape(len(ids), cfg["vocab_size"])
    diff = float(np.abs(logits[0].detach().numpy() - ours).max())
    print("safetensors: %d tensors in Hugging Face's GPT-2 layout; max |logit difference| %.3g"
          % (len(header) - 1, diff))
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
