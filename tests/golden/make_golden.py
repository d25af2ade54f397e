#!/usr/bin/env python3
"""Golden fixtures for treevis: an independent PyTorch (autograd) + Captum reference.

What it does
------------
For three networks -- `tiny` (models/tiny.toml), `caffenet` (models/caffenet.toml)
and `alexnet` (models/alexnet.toml) -- it builds a PyTorch model generically from the TOML
spec (the `layers` array, in order), at REDUCED width for caffenet/alexnet, with seeded
random weights and a seeded random input, and writes to tests/golden/:

  NAME.weights.safetensors  float32 weights, `<layer name>.weight` / `.bias`, PyTorch layouts
  NAME.ref.safetensors      float32: `input` [3,H,W]; `blob/<blob>` for every spec blob
                            ([C,H,W] or [C], no batch dim); `probs` [classes];
                            `recon/<i>` raw gradient at the input [3,H,W] for case i
  NAME.ref.json             {"generator", "model", "cases": [{key,path,rule,mult_mode}],
                            "children": [{path,rule,mult_mode,k,children:[{blob,channel,weight}]}],
                            "top5"}

Semantics are exactly those of shared/docs/reconstruction.md (sections 2-4):
  * a blob is the output of its `layer` (post-ReLU when that layer is a ReLU);
  * "gradient at a blob" = gradient at that ReLU's INPUT after the ReLU's backward rule
    (for a blob without ReLU, e.g. the logits: the gradient at the linear output);
  * ReLU rules (x = ReLU input, g = incoming grad): gradient g*[x>0]; deconv g*[g>0];
    guided g*[x>0]*[g>0]; guided-neg g*[x>0]*[g<0]; every other layer: true gradient
    (max pool through PyTorch's argmax, ceil pooling, LRN, groups, dropout = identity);
  * root seed: conv blob -> spatial argmax of the channel (torch.argmax: first in row-major
    order on ties), fc blob -> the unit; value = mult[b0] * activation, injected at the
    root ReLU's input (the root's own ReLU rule is not applied);
  * following node (bi, ci): backprop to the gradient at bi, keep only channel ci, multiply
    by sum|g| / sum|g[ci]| (mode `auto`; computed in float64, applied in float32) or by
    mult[bi] (mode `manual`);
  * children of a path ending at blob b: gradient g at the blob below b, a = its post-ReLU
    activation, w_j = |mean_{y,x} a_j*g_j| (fc: |a_j*g_j|), top-k, ties -> lower index.

Implementation: the reference path is a custom autograd Function per ReLU (the rule in its
backward) plus segment-by-segment torch.autograd.grad between filter points. Cross-checks
(asserted, max relative error = max|ours - other| / max|other| printed):
  * root-only `guided` / `deconv` vs captum.attr.GuidedBackprop / Deconvolution, `gradient`
    vs plain autograd, on a wrapper whose output is the seeded pre-ReLU blob element times
    the seed value ([1,1] tensor, target=0; fc8-like logits: the logit times the seed);
  * multi-node (filtered) paths for guided / deconv / gradient: Captum (resp. plain autograd)
    with the filter applied by tensor hooks on the ReLU inputs.
`guided-neg` has no Captum twin; it (and its filtered paths) is computed only with the rule
Function above, which is the doc's table verbatim.

Note for consumers: with the `deconv` rule the result depends on which element a max pool
routes to when a window ties (typically all-zero windows after a ReLU): PyTorch CPU takes
the FIRST maximum in the window in row-major order (as Caffe does). Other rules zero those
contributions at the ReLU below, so ties do not matter for them.

Produced with: torch 2.15.0+cu132 (plain PyPI wheel, run on CPU only), captum 0.9.0,
safetensors 0.8.0, numpy 2.4.6, Python 3.11.7, torch.set_num_threads(2). All 35 cross-checks
agreed bit-exactly (relative error 0.0). In these fixtures many max-pool windows tie
(all-zero after a ReLU), e.g. caffenet pool1 2921 of 11664, so the deconv tie rule matters. The exact versions are also written to
each NAME.ref.json ("generator").

Rerun (from the repo root):
    python3 -m venv /work/venv && /work/venv/bin/pip install torch captum safetensors numpy
    /work/venv/bin/python tests/golden/make_golden.py
Fully deterministic (fixed seeds); bit-identical reruns are expected on the same
library versions / CPU, last-ulp differences are possible elsewhere.
"""

import json
import math
import os
import platform
import sys
import tomllib
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import captum
    from captum.attr import Deconvolution, GuidedBackprop
except ImportError:  # the bench can import this module without captum
    captum = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "tests", "golden")
RULES = ["gradient", "deconv", "guided", "guided-neg"]

warnings.filterwarnings("ignore", message=".*Setting backward hooks on ReLU.*")
warnings.filterwarnings("ignore", message=".*backward hooks.*")


# ----------------------------------------------------------------------------------------
# Model from spec
# ----------------------------------------------------------------------------------------

def load_spec(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


class SpecNet(nn.Module):
    """Sequential network built from a spec's `layers`. ReLUs are separate nn.ReLU modules
    (inplace=False) so Captum can hook them. `widths` overrides `out` per layer name."""

    def __init__(self, spec, widths=None, in_shape=(3, 227, 227)):
        super().__init__()
        widths = widths or {}
        self.spec = spec
        self.names, self.types = [], []
        self.mods = nn.ModuleList()
        x = torch.zeros(1, *in_shape)
        with torch.no_grad():
            for L in spec["layers"]:
                t, n = L["type"], L["name"]
                if t == "conv":
                    out = widths.get(n, L["out"])
                    m = nn.Conv2d(x.shape[1], out, L["kernel"], stride=L.get("stride", 1),
                                  padding=L.get("pad", 0), dilation=L.get("dilation", 1),
                                  groups=L.get("groups", 1), bias=True)
                elif t == "relu":
                    m = nn.ReLU(inplace=False)
                elif t == "maxpool":
                    m = nn.MaxPool2d(L["kernel"], stride=L.get("stride", L["kernel"]),
                                     padding=L.get("pad", 0), ceil_mode=L.get("ceil", False))
                elif t == "avgpool":
                    m = nn.AvgPool2d(L["kernel"], stride=L.get("stride", L["kernel"]),
                                     padding=L.get("pad", 0), ceil_mode=L.get("ceil", False),
                                     count_include_pad=True)
                elif t == "lrn":
                    m = nn.LocalResponseNorm(L["size"], alpha=L["alpha"], beta=L["beta"],
                                             k=L["k"])
                elif t == "adaptive_avgpool":
                    m = nn.AdaptiveAvgPool2d(_pair(L["output"]))
                elif t == "flatten":
                    m = nn.Flatten(1)
                elif t == "dropout":
                    m = nn.Dropout(0.5)
                elif t == "linear":
                    out = widths.get(n, L["out"])
                    m = nn.Linear(x.shape[1], out)
                elif t == "softmax":
                    m = nn.Softmax(dim=1)
                else:
                    raise ValueError(f"unknown layer type {t}")
                self.names.append(n)
                self.types.append(t)
                self.mods.append(m)
                x = m(x)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.blobs = spec["blobs"]
        self.blob = {b["name"]: b for b in self.blobs}
        self.eval()

    # --- blob helpers ---
    def blob_layer_idx(self, b):
        return self.index[self.blob[b]["layer"]]

    def blob_has_relu(self, b):
        return self.types[self.blob_layer_idx(b)] == "relu"

    def grad_idx(self, b):
        """Index into forward_all's `outs` of the tensor whose gradient is 'the gradient at
        blob b': the ReLU input (output of the layer before) or the layer output itself."""
        i = self.blob_layer_idx(b)
        return i - 1 if self.types[i] == "relu" else i

    def below(self, b):
        names = [bb["name"] for bb in self.blobs]
        return names[names.index(b) + 1]

    def mult(self, b):
        return float(self.blob[b]["mult"])

    # --- forward passes ---
    def forward_all(self, x, rule=None, upto=None):
        """Returns the list of every layer's output. rule=None: nn.ReLU modules (plain
        autograd / Captum-hookable); else RuleReLU with that rule."""
        outs = []
        n = len(self.mods) if upto is None else upto + 1
        for i in range(n):
            m = self.mods[i]
            if self.types[i] == "relu" and rule is not None:
                x = RuleReLU.apply(x, rule)
            else:
                x = m(x)
            outs.append(x)
        return outs

    def forward(self, x):
        return self.forward_all(x)[-1]

    def param_tensors(self):
        d = {}
        for n, t, m in zip(self.names, self.types, self.mods):
            if t in ("conv", "linear"):
                d[f"{n}.weight"] = m.weight.detach().contiguous().clone()
                d[f"{n}.bias"] = m.bias.detach().contiguous().clone()
        return d


class RuleReLU(torch.autograd.Function):
    """ReLU whose backward is the rule of reconstruction.md section 2."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        pos = x > 0
        if ctx.rule == "gradient":
            keep = pos
        elif ctx.rule == "deconv":
            keep = g > 0
        elif ctx.rule == "guided":
            keep = pos & (g > 0)
        elif ctx.rule == "guided-neg":
            keep = pos & (g < 0)
        else:
            raise ValueError(ctx.rule)
        return torch.where(keep, g, torch.zeros_like(g)), None


# ----------------------------------------------------------------------------------------
# Init and input
# ----------------------------------------------------------------------------------------

def init_weights(net, inp, gen):
    """Kaiming-normal (fan_in, incl. groups) weights; data-dependent small biases:
    bias = s * N(0.05, 0.15), s = std of the layer's bias-free output on `inp`
    (a few positive, so ReLUs are neither all dead nor all open)."""
    with torch.no_grad():
        for i, (t, m) in enumerate(zip(net.types, net.mods)):
            if t not in ("conv", "linear"):
                continue
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            m.bias.zero_()
            out = net.forward_all(inp, upto=i)[-1]
            s = float(out.std())
            m.bias.copy_(s * (0.05 + 0.15 * torch.randn(m.bias.shape, generator=gen)))


def smooth_noise(gen, shape, low, std=1.0, white=0.15):
    """Low-res normal noise upsampled bilinearly, renormalised to `std`, plus a little
    white noise. shape = (C, H, W)."""
    c, h, w = shape
    z = torch.randn(1, c, low, low, generator=gen)
    z = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    z = z / z.std()
    z = z + white * torch.randn(1, c, h, w, generator=gen)
    return (z / z.std() * std)[0]


# ----------------------------------------------------------------------------------------
# Reference reconstruction (rule Function + autograd.grad segments)
# ----------------------------------------------------------------------------------------

class Forward:
    """Forward state of one image for one rule (reused by many paths)."""

    def __init__(self, net, inp, rule):
        self.net, self.rule = net, rule
        self.x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
        self.outs = net.forward_all(self.x, rule)

    def gt(self, b):  # tensor carrying "the gradient at blob b"
        return self.outs[self.net.grad_idx(b)]

    def act(self, b):  # post-ReLU activation of blob b, [C,...]
        return self.outs[self.net.blob_layer_idx(b)].detach()[0]


def seed_for(fw, b0, c0):
    """Returns (index tuple into the [1,...] gradient tensor, seed value)."""
    net = fw.net
    a = fw.act(b0)
    if a.dim() == 3:
        ch = a[c0]
        flat = int(torch.argmax(ch.reshape(-1)))  # first max, row-major
        y, x = divmod(flat, ch.shape[1])
        idx = (0, c0, y, x)
        val = a[c0, y, x]
    else:
        idx = (0, c0)
        val = a[c0]
    return idx, float(net.mult(b0)) * float(val)


def filter_grad(g, ci, mode, mult):
    """Keep channel ci of g ([1,C,...]) and rescale. Returns (filtered, degenerate)."""
    f = torch.zeros_like(g)
    f[:, ci] = g[:, ci]
    if mode == "auto":
        den = g[:, ci].double().abs().sum().item()
        if den == 0.0:
            return torch.zeros_like(g), True
        s = g.double().abs().sum().item() / den
    elif mode == "manual":
        s = mult
    else:
        raise ValueError(mode)
    return f * torch.tensor(s, dtype=torch.float32), False


def backprop_path(fw, path, mode, to=None):
    """Backprop the path. Returns (gradient tensor at `to` (a blob name) or at the input,
    degenerate flag)."""
    net = fw.net
    b0, c0 = path[0]
    idx, val = seed_for(fw, b0, c0)
    cur = fw.gt(b0)
    g = torch.zeros_like(cur)
    g[idx] = val
    degenerate = False
    for bi, ci in path[1:]:
        ti = fw.gt(bi)
        (gi,) = torch.autograd.grad(cur, ti, g, retain_graph=True)
        g, deg = filter_grad(gi, ci, mode, net.mult(bi))
        degenerate |= deg
        cur = ti
    target = fw.x if to is None else fw.gt(to)
    (gout,) = torch.autograd.grad(cur, target, g, retain_graph=True)
    return gout, degenerate


def children_of(fw, path, mode, k=5):
    net = fw.net
    below = net.below(path[-1][0])
    g, deg = backprop_path(fw, path, mode, to=below)
    a = fw.act(below).double()
    g = g.detach()[0].double()
    prod = a * g
    w = prod.reshape(prod.shape[0], -1).mean(dim=1).abs() if prod.dim() == 3 else prod.abs()
    w = w.numpy()
    order = np.argsort(-w, kind="stable")  # ties -> lower channel index
    return below, [(int(j), float(w[j])) for j in order[:k]], deg


def recon(net, inp, path, rule, mode="auto"):
    fw = Forward(net, inp, rule)
    g, deg = backprop_path(fw, path, mode)
    return g.detach()[0], deg


# ----------------------------------------------------------------------------------------
# Cross-checks: Captum / plain autograd with tensor-hook filters
# ----------------------------------------------------------------------------------------

class SeedWrapper(nn.Module):
    """Runs the net with its nn.ReLU modules up to the pre-ReLU tensor of the root blob and
    returns (element * seed) as [1,1]. Filter points of a path are applied by tensor hooks
    on the ReLU inputs, registered after the ReLU module ran (so after Captum's own hook)."""

    def __init__(self, net, path, mode):
        super().__init__()
        self.net, self.path, self.mode = net, path, mode
        self.root = path[0]

    def forward(self, x):
        net = self.net
        b0, c0 = self.root
        stop = net.grad_idx(b0)
        filt = {net.grad_idx(b): (b, c) for b, c in self.path[1:]}
        outs = []
        h = x
        for i in range(stop + 1):
            h_in = h
            h = net.mods[i](h)
            outs.append(h)
            if net.types[i] == "relu" and (i - 1) in filt:
                b, c = filt[i - 1]
                mode, mult = self.mode, net.mult(b)
                h_in.register_hook(lambda g, c=c, mode=mode, mult=mult:
                                   filter_grad(g, c, mode, mult)[0])
        # seed position from the (post-ReLU) activation, as in seed_for
        a = h.detach()[0]
        if net.blob_has_relu(b0):
            a = a.clamp(min=0)
        if a.dim() == 3:
            flat = int(torch.argmax(a[c0].reshape(-1)))
            y, xx = divmod(flat, a.shape[2])
            el, val = h[:, c0, y, xx], a[c0, y, xx]
        else:
            el, val = h[:, c0], a[c0]
        return (el * (net.mult(b0) * float(val))).reshape(-1, 1)


def other_impl(net, inp, path, rule, mode="auto"):
    """Captum (guided, deconv) or plain autograd (gradient) for the same path."""
    w = SeedWrapper(net, path, mode)
    x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
    if rule == "gradient":
        y = w(x)
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
        return g.detach()[0]
    cls = {"guided": GuidedBackprop, "deconv": Deconvolution}[rule]
    return cls(w).attribute(x, target=0).detach()[0]


def rel_err(a, b):
    den = float(b.abs().max())
    return float((a - b).abs().max()) / (den if den > 0 else 1.0)


# ----------------------------------------------------------------------------------------
# Fixture generation
# ----------------------------------------------------------------------------------------

def path_str(path):
    return "/".join(f"{b}:{c}" for b, c in path)


def most_active(fw, b):
    a = fw.act(b)
    score = a.reshape(a.shape[0], -1).max(dim=1).values if a.dim() == 3 else a
    return int(torch.argmax(score))


def derive_path(net, inp, root_blob, picks, rule, mode="auto"):
    """Root = most active channel of root_blob; then for each pick p, child #p (children
    computed under `rule`) of the path so far."""
    fw = Forward(net, inp, rule)
    path = [(root_blob, most_active(fw, root_blob))]
    for p in picks:
        below, ch, _ = children_of(fw, path, mode, k=max(5, p + 1))
        assert ch[p][1] > 0, f"child #{p} of {path_str(path)} has zero weight"
        path.append((below, ch[p][0]))
    return path


def generator_string():
    return (f"make_golden.py; torch {torch.__version__}, "
            f"captum {captum.__version__ if captum else 'n/a'}, "
            f"numpy {np.__version__}, python {platform.python_version()}, "
            f"threads {torch.get_num_threads()}")


def make_net(name, spec_rel, widths, in_shape, seed, input_kind, case_plan, children_plan):
    from safetensors.torch import save_file

    print(f"\n=== {name} ({spec_rel}) input {list(in_shape)} ===")
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    spec = load_spec(os.path.join(REPO, spec_rel))
    net = SpecNet(spec, widths, in_shape)

    c, h, w = in_shape
    if input_kind == "bgr_meansub":
        # a smooth 0..255 BGR-ish image, minus the spec's BGR mean
        z = smooth_noise(gen, in_shape, low=12, std=1.0)
        img = (127.5 + 55.0 * z).clamp(0, 255)
        mean = torch.tensor(spec["input"]["mean"], dtype=torch.float32).view(3, 1, 1)
        inp = (img - mean).contiguous()
    else:
        inp = smooth_noise(gen, in_shape, low=max(4, h // 8), std=1.0).contiguous()

    init_weights(net, inp.unsqueeze(0), gen)

    # forward state (plain) for blobs/probs
    with torch.no_grad():
        outs = net.forward_all(inp.unsqueeze(0))
    tensors = {"input": inp.clone()}
    for b in net.blobs:
        a = outs[net.blob_layer_idx(b["name"])][0].contiguous().clone()
        tensors[f"blob/{b['name']}"] = a
        frac = float((a > 0).float().mean())
        print(f"  blob {b['name']:6s} {list(a.shape)} max {float(a.max()):10.4g} "
              f"active {frac:5.1%}")
    top = net.blobs[0]["name"]
    probs = F.softmax(outs[net.blob_layer_idx(top)], dim=1)[0].contiguous()
    tensors["probs"] = probs.clone()
    top5 = [int(i) for i in torch.argsort(probs, descending=True, stable=True)[:5]]

    # ---- cases ----
    cases, errs = [], []
    for (root, picks, modes, rules) in case_plan:
        base = derive_path(net, inp, root, picks, "guided")
        for mode in modes:
            for rule in rules:
                path = base
                g, deg = recon(net, inp, path, rule, mode)
                if deg or float(g.abs().max()) == 0.0:
                    # guided-derived path is degenerate under this rule: use the rule's own
                    # children instead
                    path = derive_path(net, inp, root, picks, rule, mode)
                    g, deg = recon(net, inp, path, rule, mode)
                assert not deg and float(g.abs().max()) > 0, \
                    f"degenerate {path_str(path)} {rule} {mode}"
                key = f"recon/{len(cases)}"
                tensors[key] = g.contiguous().clone()
                cases.append({"key": key, "path": path_str(path), "rule": rule,
                              "mult_mode": mode})
                note = ""
                if rule != "guided-neg":
                    o = other_impl(net, inp, path, rule, mode)
                    e = rel_err(g, o)
                    kind = ("plain autograd" if rule == "gradient" else "captum") + \
                        ("" if len(path) == 1 else " + filter hooks")
                    errs.append((name, key, path_str(path), rule, mode, kind, e))
                    note = f"vs {kind}: rel err {e:.2e}"
                    assert e < 1e-5, f"cross-check failed {e}"
                nz = float((g != 0).float().mean())
                print(f"  {key:9s} {rule:10s} {mode:6s} {path_str(path):32s} "
                      f"nonzero {nz:5.1%} {note}")

    # ---- children ----
    children = []
    for (root, picks, rules, mode, k) in children_plan:
        path = derive_path(net, inp, root, picks, "guided")
        for rule in rules:
            fw = Forward(net, inp, rule)
            below, ch, deg = children_of(fw, path, mode, k)
            assert not deg
            children.append({"path": path_str(path), "rule": rule, "mult_mode": mode, "k": k,
                             "children": [{"blob": below, "channel": j, "weight": wj}
                                          for j, wj in ch]})
            print(f"  children {rule:8s} {path_str(path):24s} -> "
                  + ", ".join(f"{below}:{j} ({wj:.4g})" for j, wj in ch))

    # ---- write ----
    wpath = os.path.join(OUT_DIR, f"{name}.weights.safetensors")
    rpath = os.path.join(OUT_DIR, f"{name}.ref.safetensors")
    jpath = os.path.join(OUT_DIR, f"{name}.ref.json")
    save_file(net.param_tensors(), wpath)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, rpath)
    with open(jpath, "w") as f:
        json.dump({"generator": generator_string(), "model": spec_rel, "cases": cases,
                   "children": children, "top5": top5}, f, indent=1)
        f.write("\n")
    return [wpath, rpath, jpath], errs


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    assert captum is not None, "captum is required"
    files, errs = [], []

    ALL = RULES
    # tiny: (root, child picks, modes, rules)
    tiny_cases = [
        ("fc6", [], ["auto"], ALL),
        ("fc5", [], ["auto"], ALL),
        ("conv4", [], ["auto"], ALL),
        ("conv2", [], ["auto"], ALL),
        ("conv1", [], ["auto"], ALL),
        ("conv4", [0, 1], ["auto"], ALL),          # conv4/conv3/conv2
        ("fc6", [0, 1, 2], ["auto"], ALL),         # fc6/fc5/conv4/conv3
        ("conv4", [0, 1], ["manual"], ["guided"]),
        ("fc6", [0, 1, 2], ["manual"], ["guided"]),
    ]
    gr = ["guided", "gradient"]
    tiny_children = [  # (root, picks, rules, mode, k)
        ("fc6", [], gr, "auto", 5),        # fc6 root -> fc5
        ("fc5", [], gr, "auto", 5),        # fc5 root -> conv4
        ("fc6", [0], gr, "auto", 5),       # fc6/fc5 -> conv4
        ("conv3", [], gr, "auto", 5),      # conv3 root -> conv2
        ("conv4", [1], gr, "auto", 5),     # conv4/conv3 -> conv2
    ]
    f, e = make_net("tiny", "models/tiny.toml", {}, (3, 39, 39), 1234, "normal",
                    tiny_cases, tiny_children)
    files += f
    errs += e

    caffe_w = {"conv1": 16, "conv2": 32, "conv3": 48, "conv4": 48, "conv5": 32,
               "fc6": 64, "fc7": 64, "fc8": 10}
    f, e = make_net("caffenet", "models/caffenet.toml", caffe_w, (3, 227, 227), 2345,
                    "bgr_meansub",
                    [("conv5", [], ["auto"], ALL), ("conv5", [0, 1], ["auto"], ALL)],
                    [("conv5", [], ["guided"], "auto", 5),
                     ("conv5", [0], ["guided"], "auto", 5)])
    files += f
    errs += e

    alex_w = {"features.0": 16, "features.3": 32, "features.6": 48, "features.8": 32,
              "features.10": 32, "classifier.1": 64, "classifier.4": 64, "classifier.6": 10}
    f, e = make_net("alexnet", "models/alexnet.toml", alex_w, (3, 127, 127), 3456, "normal",
                    [("fc7", [], ["auto"], ALL), ("conv5", [0, 1, 0], ["auto"], ALL)],
                    [("fc7", [], ["guided"], "auto", 5),
                     ("conv5", [0, 1], ["guided"], "auto", 5)])
    files += f
    errs += e

    print("\n=== cross-checks (max|ours-other| / max|other|) ===")
    for n, key, p, rule, mode, kind, err in errs:
        print(f"  {n:8s} {key:9s} {rule:8s} {mode:6s} {p:36s} vs {kind:30s} {err:.2e}")
    print(f"  worst: {max(x[-1] for x in errs):.2e} over {len(errs)} checks")

    print("\n=== files ===")
    total = 0
    for p in files:
        s = os.path.getsize(p)
        total += s
        print(f"  {os.path.relpath(p, REPO):40s} {s / 1024:9.1f} KiB")
    print(f"  total {total / 1024 / 1024:.2f} MiB")
    print(f"generator: {generator_string()}")


if __name__ == "__main__":
    main()
