"""Reference values for reading the hierarchy both ways (reconstruction.md section 9):
signed children and shares, parents, the per-edge terms of a residual block, and ablation
of a child channel, on the committed AlexNet and ResNet-18 fixtures (same weights, same
input). PyTorch autograd computes every gradient (the rule functions of make_golden.py and
make_golden_graph.py); ablation is a plain PyTorch forward of the model with the channel
zeroed by a forward hook (torchvision's ResNet itself for ResNet-18).

Writes tests/golden/hierarchy.ref.json. Run from the repository root with a venv holding
torch and torchvision (see make_golden.py's header):

    python tests/golden/make_golden_hierarchy.py
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_golden as chain  # noqa: E402
import make_golden_graph as graph  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
OPTS = [("guided", "auto"), ("gradient", "manual")]


def signed(prod):
    """s_j = mean over (y, x) of a_j g_j, as float64 numpy."""
    if prod.dim() == 3:
        return prod.reshape(prod.shape[0], -1).mean(dim=1).numpy()
    return prod.numpy()


def ranked(s, sign, k=5):
    if sign == "pos":
        order = [j for j in np.argsort(-s, kind="stable") if s[j] > 0]
    elif sign == "neg":
        order = [j for j in np.argsort(s, kind="stable") if s[j] < 0]
    else:
        order = list(np.argsort(-np.abs(s), kind="stable"))
    total = float(np.abs(s).sum())
    return [{"channel": int(j), "value": float(s[j]),
             "share": float(abs(s[j]) / total) if total > 0 else 0.0} for j in order[:k]]


def top_parents(w, k):
    """The k largest weights (ties: lower unit), those of weight 0 left out, with shares."""
    order = [p for p in np.argsort(-w, kind="stable") if w[p] > 0][:k]
    total = float(w.sum())
    return [{"channel": int(p), "weight": float(w[p]), "share": float(w[p] / total)}
            for p in order]


# ---------------------------------------------------------------------------------------
# AlexNet (a chain)
# ---------------------------------------------------------------------------------------

def alexnet():
    spec = chain.load_spec(os.path.join(REPO, "models/alexnet.toml"))
    widths = {"features.0": 16, "features.3": 32, "features.6": 48, "features.8": 32,
              "features.10": 32, "classifier.1": 64, "classifier.4": 64, "classifier.6": 10}
    net = chain.SpecNet(spec, widths, (3, 127, 127))
    w = load_file(os.path.join(HERE, "alexnet.weights.safetensors"))
    with torch.no_grad():
        for n, t, m in zip(net.names, net.types, net.mods):
            if t in ("conv", "linear"):
                m.weight.copy_(w[f"{n}.weight"])
                m.bias.copy_(w[f"{n}.bias"])
    inp = load_file(os.path.join(HERE, "alexnet.ref.safetensors"))["input"]
    return net, inp


def chain_signed(net, inp, path, rule, mode):
    fw = chain.Forward(net, inp, rule)
    below = net.below(path[-1][0])
    g, _ = chain.backprop_path(fw, path, mode, to=below)
    prod = fw.act(below).double() * g.detach()[0].double()
    return below, signed(prod)


def chain_parents(net, inp, b, c, rule, mode, k=5):
    names = [x["name"] for x in net.blobs]
    u = names[names.index(b) - 1]
    fw = chain.Forward(net, inp, rule)
    a = fw.act(b).double()[c]
    units = fw.act(u).shape[0]
    w = np.zeros(units)
    for p in range(units):
        g, _ = chain.backprop_path(fw, [(u, p)], mode, to=b)
        prod = a * g.detach()[0, c].double()
        w[p] = abs(float(prod.mean()))
    return u, top_parents(w, k)


def chain_ablate(net, inp, path, channels):
    """Plain forward with channel j of the child blob zeroed: parent activation drop."""
    b, c = path[-1]
    below = net.below(b)
    bi, pi = net.blob_layer_idx(below), net.blob_layer_idx(b)

    def run(zero):
        x = inp.unsqueeze(0)
        with torch.no_grad():
            for i in range(pi + 1):
                x = net.mods[i](x)
                if i == bi and zero is not None:
                    x = x.clone()
                    x[:, zero] = 0
        return x[0]

    base = run(None)
    idx, _ = graph.seed_of(base, c)
    return [float(base[idx[1:]] - run(j)[idx[1:]]) for j in channels]


# ---------------------------------------------------------------------------------------
# ResNet-18 (a graph)
# ---------------------------------------------------------------------------------------

def resnet18():
    gen = torch.Generator().manual_seed(graph.ResNet18Net.seed)
    net = graph.ResNet18Net(gen)
    sd = torch.load(os.path.join(HERE, "resnet18.pth"), map_location="cpu", weights_only=True)
    net.model.load_state_dict(sd)
    net.model.eval()
    inp = load_file(os.path.join(HERE, "resnet18.ref.safetensors"))["input"]
    return net, inp


def resnet_forward_split(net, x, act, split):
    """ResNet18Net.forward, with the blob `split` passed to its users through one fresh
    tensor per consumer edge: returns (gt, val, {edge: tensor})."""
    m = net.model
    F = torch.nn.functional
    gt, val, edges = {}, {}, {}
    h = graph._bn(graph._conv(x, m.conv1), m.bn1)
    gt["relu"] = h
    h = act(h, "relu")
    val["relu"] = h
    mp = m.maxpool
    h = F.max_pool2d(h, mp.kernel_size, mp.stride, mp.padding, mp.dilation, mp.ceil_mode)
    prev = "relu"
    for li in range(1, 5):
        for bi, blk in enumerate(getattr(m, f"layer{li}")):
            name = f"layer{li}.{bi}"
            hb, hs = h, h
            if prev == split:
                hb, hs = h * 1.0, h * 1.0
                edges["branch"] = hb
                edges["skip"] = hs
            o = act(graph._bn(graph._conv(hb, blk.conv1), blk.bn1), name + ".relu")
            o = graph._bn(graph._conv(o, blk.conv2), blk.bn2)
            idt = hs if blk.downsample is None else \
                graph._bn(graph._conv(hs, blk.downsample[0]), blk.downsample[1])
            s = o + idt
            gt[name] = s
            h = act(s, name + ".relu_1")
            val[name] = h
            prev = name
    h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
    logits = F.linear(h, m.fc.weight, m.fc.bias)
    gt["fc"] = logits
    val["fc"] = logits
    return gt, val, edges


def relu_phi(x, g, rule):
    """The factor the ReLU rule applies at the sign of g (probe +1 where g >= 0)."""
    p = torch.where(g >= 0, 1.0, -1.0)
    pos = x > 0
    keep = {"gradient": pos, "deconv": p > 0, "guided": pos & (p > 0),
            "guided-neg": pos & (p < 0)}[rule]
    return keep.double()


def resnet_signed(net, inp, path, rule, mode):
    """Signed weights of the children of `path` and, per consumer edge, their terms."""
    below = graph.below(net, path[-1][0])
    fw = graph.Forward(net, inp, rule)
    g, _ = graph.backprop_path(fw, path, mode, to=below)
    a = fw.act(below).double()
    s = signed(a * g.detach()[0].double())
    # the same path on a forward whose blob reaches each consumer through its own tensor
    x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
    gt, val, edges = resnet_forward_split(net, x, graph.rule_act(rule), below)

    class FW:
        pass
    f2 = FW()
    f2.net, f2.x, f2.gt, f2.val = net, x, gt, val
    f2.act = lambda b: val[b].detach()[0]
    # gradient at the parent's side, then autograd to each edge tensor
    b0, c0 = path[0]
    idx, a0 = graph.seed_of(f2.act(b0), c0)
    cur = gt[b0]
    gg = torch.zeros_like(cur)
    gg[idx] = graph.MULT * a0
    for bi, ci in path[1:]:
        (gi,) = torch.autograd.grad(cur, gt[bi], gg, retain_graph=True)
        gg, _ = graph.filter_grad(gi, ci, mode)
        cur = gt[bi]
    names = list(edges)
    got = torch.autograd.grad(cur, [edges[n] for n in names], gg, retain_graph=True)
    total = sum(gi for gi in got)
    phi = relu_phi(gt[below].detach(), total.detach(), rule)[0]
    terms = {n: signed(a * phi * gi.detach()[0].double()) for n, gi in zip(names, got)}
    assert np.abs(sum(terms.values()) - s).max() <= 1e-6 * max(1e-12, np.abs(s).max()), \
        "the edge terms do not add up to the signed weights"
    return below, s, terms


def resnet_parents(net, inp, b, c, rule, mode, k=5):
    u = net.blobs[net.blobs.index(b) - 1]
    fw = graph.Forward(net, inp, rule)
    a = fw.act(b).double()[c]
    units = fw.act(u).shape[0]
    w = np.zeros(units)
    for p in range(units):
        g, _ = graph.backprop_path(fw, [(u, p)], mode, to=b)
        w[p] = abs(float((a * g.detach()[0, c].double()).mean()))
    return u, top_parents(w, k)


def resnet_ablate(net, inp, path, channels):
    """torchvision's model itself, channel j of the child blob zeroed by a forward hook."""
    b, c = path[-1]
    below = graph.below(net, b)
    cmod, ckind = net.model_hook(below)
    pmod, pkind = net.model_hook(b)
    assert ckind == "out" and pkind == "out"

    def run(zero):
        got = {}

        def z(md, i, o):
            if zero is None:
                return o
            o = o.clone()
            o[:, zero] = 0
            return o
        h1 = cmod.register_forward_hook(z)
        h2 = pmod.register_forward_hook(lambda md, i, o: got.__setitem__("o", o.detach()))
        try:
            with torch.no_grad():
                net.model(inp.unsqueeze(0))
        finally:
            h1.remove()
            h2.remove()
        return got["o"][0]

    base = run(None)
    idx, _ = graph.seed_of(base, c)
    return [float(base[idx[1:]] - run(j)[idx[1:]]) for j in channels]


def cases_of(roots, signed, parents, ablate, ablates=lambda b: True):
    """Signed children (with per-edge terms where `signed` gives them), parents, and the
    ablation of the 8 strongest guided children, for each root."""
    cases = {"children": [], "parents": [], "ablate": []}
    for path in roots:
        b, c = path[-1]
        for rule, mode in OPTS:
            below, s, terms = signed(path, rule, mode)
            entry = {"path": pstr(path), "rule": rule, "mult_mode": mode, "blob": below,
                     **{sign: ranked(s, sign) for sign in ("abs", "pos", "neg")}}
            if terms is not None:
                for sign in ("abs", "pos", "neg"):
                    for d in entry[sign]:
                        d["via"] = {n: float(t[d["channel"]]) for n, t in terms.items()}
            cases["children"].append(entry)
            if (rule, mode) == ("guided", "auto") and ablates(b):
                chans = [d["channel"] for d in ranked(s, "abs", 8)]
                drops = ablate(path, chans)
                cases["ablate"].append({"path": pstr(path), "blob": below,
                                        "children": [{"channel": j, "drop": d}
                                                     for j, d in zip(chans, drops)]})
        for rule, mode in OPTS:
            u, ps = parents(b, c, rule, mode)
            cases["parents"].append({"path": pstr(path), "rule": rule, "mult_mode": mode,
                                     "blob": u, "parents": ps})
    print(json.dumps(cases)[:400])
    return cases


def pstr(path):
    return "/".join(f"{b}:{c}" for b, c in path)


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out = {"generator": "make_golden_hierarchy.py; " + graph.versions(), "nets": {}}

    net, inp = alexnet()
    fw = chain.Forward(net, inp, "guided")
    roots = [[(b, chain.most_active(fw, b))] for b in ("conv5", "conv4", "fc7")]
    out["nets"]["alexnet"] = cases_of(
        roots,
        lambda path, rule, mode: chain_signed(net, inp, path, rule, mode) + (None,),
        lambda b, c, rule, mode: chain_parents(net, inp, b, c, rule, mode),
        lambda path, chans: chain_ablate(net, inp, path, chans),
        ablates=lambda b: b != "fc7")

    net, inp = resnet18()
    fw = graph.Forward(net, inp, "guided")
    # layer2.1 -> layer2.0 (identity skip), layer3.0 -> layer2.1 (downsample skip),
    # layer4.1 -> layer4.0
    roots = [[(b, chain.most_active(fw, b))] for b in ("layer2.1", "layer3.0", "layer4.1")]
    out["nets"]["resnet18"] = cases_of(
        roots,
        lambda path, rule, mode: resnet_signed(net, inp, path, rule, mode),
        lambda b, c, rule, mode: resnet_parents(net, inp, b, c, rule, mode),
        lambda path, chans: resnet_ablate(net, inp, path, chans))

    with open(os.path.join(HERE, "hierarchy.ref.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
