#!/usr/bin/env python3
"""PyTorch/Captum baseline for `treevis bench --compare bench/pytorch_results.json`.

Workloads (float32, eval mode, on --device (default cpu; cuda:N: models and inputs on that
GPU, each timed run ends with torch.cuda.synchronize()), torch.set_num_threads(--threads,
default = cores), median of --runs timed runs after one warm-up run each; times in
milliseconds):

  torchvision alexnet() (default random init, full width), input [3,224,224]:
    forward_b1_ms       forward of one image (torch.inference_mode)
    forward_b32_ms      forward of a batch of 32 (torch.inference_mode)
    recon_conv5_ms      one guided reconstruction seeded at conv5: captum GuidedBackprop on a
                        wrapper whose output is the conv5 pre-ReLU element at the spatial
                        argmax of its most active channel, times 40*activation (forward +
                        backward, as Captum runs them)
    recon_fc8_ms        GuidedBackprop(model).attribute(x, target=top class)
    overview40_ms       the overview: one forward (blob activations via forward hooks), then
                        for each of the 8 blobs conv1..conv5, fc6..fc8 the top-5 channels by
                        spatial max, each a separate Captum GuidedBackprop call on a wrapper
                        truncated at that blob (40 calls; each re-runs its forward)
    children5_ms        children of a conv5 root written plainly with hooks (guided rule via
                        register_full_backward_hook on the ReLUs): one forward with graph,
                        backward of the seed to the gradient at conv4 (ReLU input), weights
                        w_j = |mean(a_j * g_j)|, top-5, then the 5 child reconstructions
                        conv5:c/conv4:j (auto multiplier) backward to the input, one at a
                        time (retain_graph, forward reused)
    peak_rss_mb         peak resident memory of the process (ru_maxrss), whole script (host
                        memory; on a GPU, meta.cuda_peak_mb is torch's peak allocation)
  torchvision resnet50() (default random init), input [3,224,224]; tree blobs as treevis's
  built-in spec: relu (stem), every bottleneck's output layerS.i (post-ReLU; its seed is on
  the Add output), fc:
    resnet50_forward_b1_ms, resnet50_forward_b32_ms   as above
    resnet50_recon_ms       one guided reconstruction from layer4.2 (Captum GuidedBackprop
                            on a wrapper returning the seeded Add output element)
    resnet50_overview_ms    one forward, then top-5 channels of each of the 18 blobs, each a
                            separate Captum GuidedBackprop call on a wrapper truncated at
                            that blob (90 calls, each re-running its forward)
    resnet50_children5_ms   children of a layer4.2 root in layer4.1 and their 5
                            reconstructions, plain autograd with a guided-ReLU Function at
                            every ReLU application (retain_graph, one forward)
  CaffeNet-shaped net built from models/caffenet.toml (full width, default random init,
  LRN, grouped convs, ceil pooling), input [3,227,227]:
    caffenet_forward_b1_ms, caffenet_recon_conv5_ms   as above

Output: a table on stdout and a JSON file (--out, default bench/pytorch_results.json):
  {"forward_b1_ms": 21.3, ..., "peak_rss_mb": 612.0,
   "meta": {"torch": ..., "captum": ..., "threads": 2, "cpu": ..., "runs": 15, ...}}
Every top-level key except "meta" is a number. On a GPU, meta.library is "pytorch-cuda"
(the name of its columns in `treevis bench --compare`) and meta.device the device.

Run:  /work/venv/bin/python bench/pytorch_bench.py [--runs 15] [--threads N] [--out FILE]
          [--device cpu|cuda:N] [--no-resnet]
"""

import argparse
import json
import os
import platform
import resource
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import captum
from captum.attr import GuidedBackprop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "golden"))
sys.dont_write_bytecode = True  # no __pycache__ in tests/golden
from make_golden import SpecNet, load_spec  # noqa: E402

warnings.filterwarnings("ignore")

# torchvision alexnet blobs: name -> (part, index of the layer whose output is the pre-ReLU
# tensor (exclusive slice end), index of the blob layer, mult)
ALEX_BLOBS = [
    ("fc8", "classifier", 7, 6, 1000.0),
    ("fc7", "classifier", 5, 5, 4096.0),
    ("fc6", "classifier", 2, 2, 400.0),
    ("conv5", "features", 11, 11, 40.0),
    ("conv4", "features", 9, 9, 40.0),
    ("conv3", "features", 7, 7, 20.0),
    ("conv2", "features", 4, 4, 4.0),
    ("conv1", "features", 1, 1, 1.0),
]


from timing import timeit  # noqa: E402  (bench/, the script's folder)


class AlexTrunc(nn.Module):
    """torchvision alexnet truncated at a blob's pre-ReLU tensor; output = element * seed."""

    def __init__(self, model, part, end, idx, seed):
        super().__init__()
        self.model, self.part, self.end, self.idx, self.seed = model, part, end, idx, seed

    def forward(self, x):
        m = self.model
        if self.part == "features":
            h = m.features[:self.end](x)
        else:
            h = torch.flatten(m.avgpool(m.features(x)), 1)
            h = m.classifier[:self.end](h)
        return (h[(slice(None),) + self.idx] * self.seed).reshape(-1, 1)


def alex_blob_acts(model, x):
    """One forward; returns logits and {blob: post-ReLU activation [C,...]}."""
    acts, hs = {}, []
    for name, part, _, li, _ in ALEX_BLOBS:
        mod = getattr(model, part)[li]
        hs.append(mod.register_forward_hook(
            lambda m, i, o, name=name: acts.__setitem__(name, o.detach()[0].clone())))
    with torch.no_grad():
        logits = model(x)
    for h in hs:
        h.remove()
    return logits, acts


def top_pos(a, c):
    if a.dim() == 3:
        flat = int(torch.argmax(a[c].reshape(-1)))
        y, xx = divmod(flat, a.shape[2])
        return (c, y, xx), float(a[c, y, xx])
    return (c,), float(a[c])


def topk_channels(a, k):
    s = a.reshape(a.shape[0], -1).max(dim=1).values if a.dim() == 3 else a
    return [int(i) for i in torch.argsort(s, descending=True, stable=True)[:k]]


class GuidedReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


class GuidedReLU(nn.Module):
    def forward(self, x):
        return GuidedReLUFn.apply(x)


def resnet_blobs(model):
    """(name, kind, stage, index) for treevis's resnet50 tree blobs, top first."""
    out = [("fc", "fc", None, None)]
    for s in (4, 3, 2, 1):
        layer = getattr(model, f"layer{s}")
        for i in reversed(range(len(layer))):
            out.append((f"layer{s}.{i}", "block", s, i))
    out.append(("relu", "stem", None, None))
    return out


def bottleneck_pre(block, h):
    """A bottleneck's output before its last ReLU (the Add)."""
    identity = h if block.downsample is None else block.downsample(h)
    o = block.relu(block.bn1(block.conv1(h)))
    o = block.relu(block.bn2(block.conv2(o)))
    return block.bn3(block.conv3(o)) + identity


def resnet_pre(model, x, kind, stage, index):
    """The pre-activation tensor of a blob ([N, C, H, W]; the logits for fc)."""
    if kind == "fc":
        return model(x)
    h = model.bn1(model.conv1(x))
    if kind == "stem":
        return h
    h = model.maxpool(model.relu(h))
    for s in range(1, 5):
        layer = getattr(model, f"layer{s}")
        for i, block in enumerate(layer):
            if (s, i) == (stage, index):
                return bottleneck_pre(block, h)
            h = block(h)
    raise ValueError("no such block")


class ResTrunc(nn.Module):
    def __init__(self, model, blob, idx, seed):
        super().__init__()
        self.model, self.blob, self.idx, self.seed = model, blob, idx, seed

    def forward(self, x):
        _, kind, s, i = self.blob
        h = resnet_pre(self.model, x, kind, s, i)
        return (h[(slice(None),) + self.idx] * self.seed).reshape(-1, 1)


def resnet_section(R, runs, dev, timed):
    """The ResNet-50 rows; `timed(fn, runs)` times on the device."""
    model = torchvision.models.resnet50().eval().to(dev)
    x1 = torch.randn(1, 3, 224, 224).to(dev)
    x32 = torch.randn(32, 3, 224, 224).to(dev)

    def fwd(x):
        with torch.inference_mode():
            model(x)

    R["resnet50_forward_b1_ms"] = timed(lambda: fwd(x1), runs)
    R["resnet50_forward_b32_ms"] = timed(lambda: fwd(x32), max(1, min(runs, 5)))
    blobs = resnet_blobs(model)

    def acts_of():
        with torch.no_grad():
            return {b[0]: resnet_pre(model, x1, *b[1:]).clamp(min=0)[0] if b[1] != "fc"
                    else resnet_pre(model, x1, *b[1:])[0] for b in blobs}

    acts = acts_of()
    b42 = next(b for b in blobs if b[0] == "layer4.2")
    c42 = topk_channels(acts["layer4.2"], 1)[0]

    def recon(blob, a, c):
        if blob[1] == "fc":
            return GuidedBackprop(model).attribute(x1.clone().requires_grad_(True), target=c)
        idx, v = top_pos(a, c)
        w = ResTrunc(model, blob, idx, v)
        return GuidedBackprop(w).attribute(x1.clone().requires_grad_(True), target=0)

    R["resnet50_recon_ms"] = timed(lambda: recon(b42, acts["layer4.2"], c42), runs)

    def overview():
        a_ = acts_of()
        out = []
        for b in blobs:
            a = a_[b[0]]
            chans = topk_channels(a, 5) if a.dim() == 3 else \
                [int(j) for j in torch.argsort(a, descending=True, stable=True)[:5]]
            for c in chans:
                out.append(recon(b, a, c))
        assert len(out) == 90
        return out

    R["resnet50_overview_ms"] = timed(overview, max(1, min(runs, 3)))

    gmodel = torchvision.models.resnet50().eval()
    gmodel.load_state_dict(model.state_dict())
    gmodel = gmodel.to(dev)
    for mod in gmodel.modules():
        for name, ch in list(mod.named_children()):
            if isinstance(ch, nn.ReLU):
                setattr(mod, name, GuidedReLU())

    def children5():
        x = x1.clone().requires_grad_(True)
        h = gmodel.maxpool(gmodel.relu(gmodel.bn1(gmodel.conv1(x))))
        for s in (1, 2, 3):
            h = getattr(gmodel, f"layer{s}")(h)
        l4 = gmodel.layer4
        h = l4[0](h)
        pre41 = bottleneck_pre(l4[1], h)
        a41 = l4[1].relu(pre41)
        pre42 = bottleneck_pre(l4[2], a41)
        a42 = pre42.detach()[0].clamp(min=0)
        c = topk_channels(a42, 1)[0]
        idx, v = top_pos(a42, c)
        seed = torch.zeros_like(pre42)
        seed[(0,) + idx] = v
        (g41,) = torch.autograd.grad(pre42, pre41, seed, retain_graph=True)
        a = a41.detach()
        w = (a[0] * g41[0]).mean(dim=(1, 2)).abs()
        kids = [int(j) for j in torch.argsort(w, descending=True, stable=True)[:5]]
        total = g41.abs().sum()
        outs = []
        for j in kids:
            f = torch.zeros_like(g41)
            f[:, j] = g41[:, j] * (total / g41[:, j].abs().sum())
            (gx,) = torch.autograd.grad(pre41, x, f, retain_graph=True)
            outs.append(gx)
        return kids, outs

    R["resnet50_children5_ms"] = timed(children5, runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "pytorch_results.json"))
    ap.add_argument("--no-resnet", action="store_true", help="skip the ResNet-50 rows")
    ap.add_argument("--device", default="cpu",
                    help="cpu or cuda:N (models and inputs there; timed runs synchronize)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    R = {}
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None

    def timed(fn, runs):
        return timeit(fn, runs, sync)

    model = torchvision.models.alexnet().eval().to(dev)  # random default init, full width
    x1 = torch.randn(1, 3, 224, 224).to(dev)
    x32 = torch.randn(32, 3, 224, 224).to(dev)

    def fwd(x):
        with torch.inference_mode():
            model(x)

    R["forward_b1_ms"] = timed(lambda: fwd(x1), args.runs)
    R["forward_b32_ms"] = timed(lambda: fwd(x32), args.runs)

    logits, acts = alex_blob_acts(model, x1)
    cls = int(logits[0].argmax())
    mult = {n: m for n, _, _, _, m in ALEX_BLOBS}
    spec = {n: (p, e) for n, p, e, _, _ in ALEX_BLOBS}

    def recon(blob, c):
        idx, a = top_pos(acts[blob], c)
        part, end = spec[blob]
        w = AlexTrunc(model, part, end, idx, mult[blob] * a)
        return GuidedBackprop(w).attribute(x1.clone().requires_grad_(True), target=0)

    c5 = topk_channels(acts["conv5"], 1)[0]
    R["recon_conv5_ms"] = timed(lambda: recon("conv5", c5), args.runs)
    R["recon_fc8_ms"] = timed(
        lambda: GuidedBackprop(model).attribute(x1.clone().requires_grad_(True), target=cls),
        args.runs)

    def overview():
        _, acts_ = alex_blob_acts(model, x1)
        out = []
        for name, part, end, _, m in ALEX_BLOBS:
            for c in topk_channels(acts_[name], 5):
                idx, a = top_pos(acts_[name], c)
                w = AlexTrunc(model, part, end, idx, m * a)
                out.append(GuidedBackprop(w).attribute(x1.clone().requires_grad_(True),
                                                       target=0))
        assert len(out) == 40
        return out

    R["overview40_ms"] = timed(overview, args.runs)

    # children of a conv5 root, plain hooks (model copy with inplace=False ReLUs)
    hmodel = torchvision.models.alexnet().eval()
    hmodel.load_state_dict(model.state_dict())
    hmodel = hmodel.to(dev)
    for m in hmodel.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
            m.register_full_backward_hook(lambda mod, gin, gout: (gin[0].clamp(min=0),))

    def children5():
        saved = {}
        h4 = hmodel.features[8].register_forward_hook(lambda m, i, o: saved.__setitem__(4, o))
        h5 = hmodel.features[10].register_forward_hook(lambda m, i, o: saved.__setitem__(5, o))
        x = x1.clone().requires_grad_(True)
        hmodel.features(x)  # conv5 is in features; nothing above it is needed
        h4.remove()
        h5.remove()
        pre5, pre4 = saved[5], saved[4]
        a5, a4 = pre5.detach()[0].clamp(min=0), pre4.detach()[0].clamp(min=0)
        c = topk_channels(a5, 1)[0]
        idx, a = top_pos(a5, c)
        seed = torch.zeros_like(pre5)
        seed[(0,) + idx] = 40.0 * a
        (g4,) = torch.autograd.grad(pre5, pre4, seed, retain_graph=True)
        w = (a4 * g4[0]).mean(dim=(1, 2)).abs()
        kids = [int(j) for j in torch.argsort(w, descending=True, stable=True)[:5]]
        total = g4.abs().sum()
        outs = []
        for j in kids:
            f = torch.zeros_like(g4)
            f[:, j] = g4[:, j] * (total / g4[:, j].abs().sum())
            (gx,) = torch.autograd.grad(pre4, x, f, retain_graph=True)
            outs.append(gx)
        return kids, outs

    R["children5_ms"] = timed(children5, args.runs)

    # CaffeNet-shaped net from the spec, full width
    cnet = SpecNet(load_spec(os.path.join(REPO, "models", "caffenet.toml")),
                   in_shape=(3, 227, 227)).eval().to(dev)
    cx = (torch.randn(1, 3, 227, 227) * 60.0).to(dev)

    def cfwd():
        with torch.inference_mode():
            cnet(cx)

    R["caffenet_forward_b1_ms"] = timed(cfwd, args.runs)
    with torch.no_grad():
        couts = cnet.forward_all(cx)
    i5 = cnet.blob_layer_idx("conv5")
    ca5 = couts[i5][0]
    cc = topk_channels(ca5, 1)[0]
    cidx, cval = top_pos(ca5, cc)

    class CaffeTrunc(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            h = x
            for m in self.net.mods[:i5]:  # up to conv5's pre-ReLU output
                h = m(h)
            return (h[(slice(None),) + cidx] * (40.0 * cval)).reshape(-1, 1)

    cw = CaffeTrunc(cnet)
    R["caffenet_recon_conv5_ms"] = timed(
        lambda: GuidedBackprop(cw).attribute(cx.clone().requires_grad_(True), target=0),
        args.runs)

    if not args.no_resnet:
        resnet_section(R, args.runs, dev, timed)

    R["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "captum": captum.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cores": os.cpu_count(), "cpu": cpu,
            "runs": args.runs, "statistic": "median after 1 warm-up",
            "loadavg_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "alexnet_input": [1, 3, 224, 224], "caffenet_input": [1, 3, 227, 227],
            "device": str(dev)}
    if dev.type == "cuda":
        meta["library"] = "pytorch-cuda"
        meta["cuda_device_name"] = torch.cuda.get_device_name(dev)
        meta["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20

    print(f"{'benchmark':28s} {'value':>10s}")
    for k, v in R.items():
        unit = "MB" if k.endswith("_mb") else "ms"
        print(f"{k:28s} {v:10.2f} {unit}")
    print(f"torch {meta['torch']}, captum {meta['captum']}, threads {meta['threads']}, "
          f"cpu {cpu}, device {dev}, runs {args.runs}")
    out = dict(R)
    out["meta"] = meta
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
