#!/usr/bin/python3
"""interop_check.py: reads a gptrain HDF5 file with h5py alone (no gptrain
code), loads it into the PyTorch reference model of tests/reference, runs the
same token ids through it and compares the logits with gptrain's.

    interop_check.py FILE.h5 LOGITS.bin ID...

Exit 0 when the largest absolute difference is below 1e-4; the numbers are
printed either way."""

import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from gpt2_reference import GPT2  # noqa: E402


def main():
    path, logits_path, ids = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
    with h5py.File(path, "r") as f:
        a = f.attrs
        cfg = [int(a[k]) for k in ("n_layer", "n_head", "n_embd", "max_seq", "vocab")]
        model = GPT2(*cfg)
        with torch.no_grad():
            for name, param in model.ordered_params():
                # The reference names layers "h0."; gptrain's tensor table "h.0.".
                key = "h." + name[1:] if name[0] == "h" and name[1].isdigit() else name
                data = torch.from_numpy(np.asarray(f["model"][key], dtype=np.float32))
                if tuple(data.shape) != tuple(param.shape):
                    sys.exit("interop: %s has shape %s, the model %s" %
                             (key, tuple(data.shape), tuple(param.shape)))
                param.copy_(data)
    idx = torch.tensor([ids])
    logits, _ = model(idx, idx)
    ours = np.fromfile(logits_path, dtype="<f4").reshape(len(ids), cfg[4])
    diff = float(np.abs(logits[0].detach().numpy() - ours).max())
    print("interop: %s: %d tensors read with h5py; max |logit difference| %.3g over %d x %d"
          % (path, len(model.ordered_params()), diff, len(ids), cfg[4]))
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
