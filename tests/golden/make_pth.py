#!/usr/bin/env python3
"""PyTorch `.pth` fixtures for the weight loader (run by developers, not CI):

  tiny.pth  the tiny net's weights (tests/golden/tiny.weights.safetensors) saved by
            torch.save(state_dict) in PyTorch's zip format, as torchvision ships weights;
  tiny_legacy.pth  the same in the legacy (pre-1.6) format of the 2017 torchvision files
            (vgg16-397923af.pth), with one tensor stored transposed (non-contiguous) and
            one through PyTorch 0.3's `_rebuild_tensor`;
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


class OldTensor:
    """Pickles as PyTorch 0.3 did: _rebuild_tensor(storage, offset, size, stride)."""

    def __init__(self, t):
        self.t = t

    def __reduce__(self):
        t = self.t
        return (torch._utils._rebuild_tensor, (t.storage(), t.storage_offset(), tuple(t.size()), t.stride()))


legacy = {k: v.clone() for k, v in sd.items()}
names = sorted(legacy)
w = [n for n in names if legacy[n].dim() == 2][0]
legacy[w] = legacy[w].t().contiguous().t()  # same values, column-major storage
legacy[names[0]] = OldTensor(legacy[names[0]])
torch.save(legacy, here / "tiny_legacy.pth", _use_new_zipfile_serialization=False)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/treevis-pwned",))


torch.save({"conv1.weight": Evil()}, here / "evil.pth")
print("wrote tiny.pth, tiny_legacy.pth and evil.pth with torch", torch.__version__)
