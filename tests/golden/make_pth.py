#!/usr/bin/env python3
"""PyTorch `.pth` fixtures for the weight loader (run by developers, not CI):

  tiny.pth  the tiny net's weights (tests/golden/tiny.weights.safetensors) saved by
            torch.save(state_dict) in PyTorch's zip format, as torchvision ships weights;
  evil.pth  a zip pickle whose unpickling would call os.system: treevis must refuse it
            without running anything.

Run: /work/venv/bin/python tests/golden/make_pth.py  (torch + safetensors)
"""
import os
import pathlib

import torch
from safetensors.torch import load_file

here = pathlib.Path(__file__).parent
sd = load_file(here / "tiny.weights.safetensors")
torch.save({k: v.clone() for k, v in sd.items()}, here / "tiny.pth")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/treevis-pwned",))


torch.save({"conv1.weight": Evil()}, here / "evil.pth")
print("wrote tiny.pth and evil.pth with torch", torch.__version__)
